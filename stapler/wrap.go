package stapler

import (
	"context"
	"crypto/tls"
	"fmt"
	"slices"
	"strings"
	"time"
)

// maxRememberedConfigs bounds how many configs returned by an application's
// GetConfigForClient the Stapler remembers wrapped; past it, each is wrapped
// afresh per handshake.
const maxRememberedConfigs = 1024

// Wrap returns a clone of cfg that staples every certificate it serves,
// whichever way cfg selects them: the Certificates list (with crypto/tls's
// own SNI rules, NameToCertificate included), GetCertificate, or
// GetConfigForClient; on the client side, GetClientCertificate or the
// Certificates list (TLS 1.3 clients may staple too). The certificates in
// the Certificates list are fetched at once, so the first handshake is
// stapled. cfg and its certificates are never modified: handshakes get
// stapled copies, swapped atomically when a staple changes.
func (s *Stapler) Wrap(cfg *tls.Config) *tls.Config {
	if _, ok := s.ours.Load(cfg); ok {
		return cfg
	}
	c := s.wrap(cfg)
	s.ours.Store(c, struct{}{})
	return c
}

// wrap is Wrap without remembering the result.
func (s *Stapler) wrap(cfg *tls.Config) *tls.Config {
	c := cfg.Clone()
	certs := slices.Clone(cfg.Certificates)
	// The state of each listed certificate, found once here so that the
	// handshake path goes straight from the chosen index to its staple.
	var listed []*tls.Certificate
	for i := range certs {
		if len(certs[i].Certificate) > 0 {
			listed = append(listed, &certs[i])
		}
	}
	added := s.addAll(listed)
	managedAt := make([]*managed, len(certs))
	for i, j := 0, 0; i < len(certs); i++ {
		if len(certs[i].Certificate) > 0 {
			managedAt[i] = added[j]
			j++
		}
	}
	c.Certificates = certs
	var byName map[string]*tls.Certificate
	if cfg.NameToCertificate != nil { //nolint:staticcheck // honoured as crypto/tls does
		byName = make(map[string]*tls.Certificate, len(cfg.NameToCertificate))
		for name, p := range cfg.NameToCertificate {
			byName[name] = p
			for i := range cfg.Certificates {
				if p == &cfg.Certificates[i] {
					byName[name] = &certs[i]
				}
			}
		}
	}
	userGetCertificate := cfg.GetCertificate
	c.GetCertificate = func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		if userGetCertificate != nil {
			cert, err := userGetCertificate(hello)
			if err != nil || cert != nil {
				if err != nil {
					return cert, err
				}
				return s.serve(hello.Context(), cert)
			}
		}
		if len(certs) == 0 {
			return nil, nil // crypto/tls reports that no certificate is configured
		}
		i, cert := selectCertificate(certs, byName, hello)
		if i >= 0 && managedAt[i] != nil {
			return s.serveManaged(hello.Context(), managedAt[i], cert)
		}
		return s.serve(hello.Context(), cert)
	}
	if userGetConfig := cfg.GetConfigForClient; userGetConfig != nil {
		c.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			inner, err := userGetConfig(hello)
			if err != nil || inner == nil {
				return inner, err
			}
			return s.wrapInner(inner), nil
		}
	}
	userGetClientCertificate := cfg.GetClientCertificate
	if userGetClientCertificate != nil || len(certs) > 0 {
		c.GetClientCertificate = func(cri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
			if userGetClientCertificate != nil {
				cert, err := userGetClientCertificate(cri)
				if err != nil || cert == nil || len(cert.Certificate) == 0 {
					return cert, err
				}
				return s.serve(cri.Context(), cert)
			}
			for i := range certs {
				if cri.SupportsCertificate(&certs[i]) == nil {
					if managedAt[i] != nil {
						return s.serveManaged(cri.Context(), managedAt[i], &certs[i])
					}
					return s.serve(cri.Context(), &certs[i])
				}
			}
			return new(tls.Certificate), nil // send no certificate, as crypto/tls does
		}
	}
	return c
}

// wrapInner wraps a config returned by GetConfigForClient, remembering up
// to maxRememberedConfigs of them so that a config returned again is not
// cloned again; past that, configs are wrapped afresh and forgotten.
func (s *Stapler) wrapInner(inner *tls.Config) *tls.Config {
	if w, ok := s.wrapped.Load(inner); ok {
		return w.(*tls.Config)
	}
	if _, ok := s.ours.Load(inner); ok {
		return inner
	}
	w := s.wrap(inner)
	if s.wrappedCount.Add(1) <= maxRememberedConfigs {
		if prev, loaded := s.wrapped.LoadOrStore(inner, w); loaded {
			return prev.(*tls.Config)
		}
	}
	return w
}

// selectCertificate picks from certs as crypto/tls does when a config has no
// GetCertificate: the only one, else by NameToCertificate, else the first
// the client supports, else the first. It returns the index in certs, or
// -1 for a NameToCertificate entry outside the list.
func selectCertificate(certs []tls.Certificate, byName map[string]*tls.Certificate, hello *tls.ClientHelloInfo) (int, *tls.Certificate) {
	if len(certs) == 1 {
		return 0, &certs[0]
	}
	if byName != nil {
		name := strings.ToLower(hello.ServerName)
		cert, ok := byName[name]
		if !ok && len(name) > 0 {
			labels := strings.Split(name, ".")
			labels[0] = "*"
			cert, ok = byName[strings.Join(labels, ".")]
		}
		if ok {
			for i := range certs {
				if cert == &certs[i] {
					return i, cert
				}
			}
			return -1, cert
		}
	}
	for i := range certs {
		if hello.SupportsCertificate(&certs[i]) == nil {
			return i, &certs[i]
		}
	}
	return 0, &certs[0]
}

// serve is the handshake path: it returns c with its staple. On a cache hit
// it takes no lock and allocates nothing.
func (s *Stapler) serve(ctx context.Context, c *tls.Certificate) (*tls.Certificate, error) {
	if c == nil || len(c.Certificate) == 0 || !s.cfg.Load().OCSPFunctionality {
		return c, nil
	}
	m := s.index.get(c.Certificate[0])
	if m == nil {
		m = s.add(c)
	}
	return s.serveManaged(ctx, m, c)
}

// serveManaged is serve once c's state m is known.
func (s *Stapler) serveManaged(ctx context.Context, m *managed, c *tls.Certificate) (*tls.Certificate, error) {
	if m.removed.Load() { // served again after Remove: managed afresh, whatever its settings were
		return s.serve(ctx, c)
	}
	if !s.cfg.Load().OCSPFunctionality || m.leaf == nil || !m.settings.Load().stapling.Enabled {
		return c, nil
	}
	v := m.view.Load()
	if v.orig != c {
		v = m.rebase(c)
	}
	policy := m.policy(s.opts.policy)
	if v.stapled != nil && s.usable(v) {
		if v.revoked && policy >= Strict {
			return nil, m.refusal(ErrRevoked)
		}
		return v.stapled, nil
	}
	if v.stapled == nil {
		if p := m.pending.Load(); p != nil {
			s.waitCold(ctx, *p)
			return s.serveAfterWait(m, c, policy)
		}
	}
	return m.noStaple(v, policy)
}

// serveAfterWait is serve's decision once the cold wait is over.
func (s *Stapler) serveAfterWait(m *managed, c *tls.Certificate, policy Policy) (*tls.Certificate, error) {
	v := m.view.Load()
	if v.orig != c {
		v = m.rebase(c)
	}
	if v.stapled != nil && s.usable(v) {
		if v.revoked && policy >= Strict {
			return nil, m.refusal(ErrRevoked)
		}
		return v.stapled, nil
	}
	return m.noStaple(v, policy)
}

// noStaple is what a handshake gets when no usable staple is at hand.
func (m *managed) noStaple(v *view, policy Policy) (*tls.Certificate, error) {
	switch {
	case policy >= MustStaple:
		if v.stapled != nil {
			return nil, m.refusal(ErrStapleExpired)
		}
		return nil, m.refusal(ErrNoStaple)
	case policy == Strict && v.stapled != nil:
		return nil, m.refusal(ErrStapleExpired)
	}
	return v.bare, nil
}

func (m *managed) refusal(err error) error {
	return fmt.Errorf("stapler: refusing certificate %q (id %s): %w", m.leaf.Subject.String(), m.ID(), err)
}

// coldWait is how long a handshake waits for the first fetch of a
// certificate that has no staple yet (see WithColdWait).
func (s *Stapler) coldWait() time.Duration {
	if s.opts.coldWait > 0 {
		return s.opts.coldWait
	}
	return s.cfg.Load().Timeout() / 4
}

// waitCold waits, for a bounded time, for the first fetch of a certificate
// that has no staple yet.
func (s *Stapler) waitCold(ctx context.Context, pending <-chan struct{}) {
	wait := s.coldWait()
	var done <-chan struct{}
	if ctx != nil {
		done = ctx.Done()
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-pending:
	case <-t.C:
	case <-done:
	}
}

// usable reports whether v's staple may still be served. With the system
// clock it reads the coarse clock (an atomic load, where time.Now costs tens
// of nanoseconds) and withdraws a staple coarseMargin early, so that it is
// never served past its expiry; with an injected clock it is exact.
func (s *Stapler) usable(v *view) bool {
	if s.coarse != nil && !s.closed.Load() {
		return s.coarse.Load()+int64(coarseMargin) < v.expires
	}
	return s.clock.Now().UnixNano() < v.expires
}
