//lint:file-ignore SA1019 NameToCertificate is deprecated, but an application may still set it: it is honoured as crypto/tls honours it, and cleared from the wrapped config.

package stapler

import (
	"context"
	"crypto/tls"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/staplerkit/ocsp/internal/certselect"
	"github.com/staplerkit/ocsp/internal/weakcache"
)

// Wrap returns a clone of cfg that staples every certificate it serves,
// whichever way cfg selects them: the Certificates list (with crypto/tls's
// own SNI rules, NameToCertificate included), GetCertificate, or
// GetConfigForClient; on the client side, GetClientCertificate or the
// Certificates list (TLS 1.3 clients may staple too). The certificates in
// the Certificates list are queued for their first fetch at once (at the
// rate limit), and a handshake for one whose fetch is still queued moves
// it to the front and waits for it (see WithColdWait), so that the first
// handshake is stapled when the responder answers in time; Ready waits for
// them all. cfg and its certificates are never modified, and a wrapped
// config serves what cfg held when it was wrapped (each certificate is
// copied into the view it is served from, not kept twice): handshakes get
// stapled copies, swapped atomically when a staple changes.
//
// The returned config's Certificates and NameToCertificate are empty: the
// certificates of cfg are selected by its GetCertificate (and
// GetClientCertificate), with crypto/tls's rules, so that every handshake,
// with or without SNI, gets its staple and the policy's refusals. (crypto/tls
// consults GetCertificate only when Certificates is empty or the client sent
// a server name; a client dialling an IP address sends none.) cfg's own
// GetCertificate is called exactly when crypto/tls would have called it.
// For the same reason, give http.Server.ServeTLS and ListenAndServeTLS no
// certificate files with a wrapped config: they would be added to its
// copy's Certificates and served unstapled (a WARN says so, once, at the
// first handshake that asks the wrapped config). Load them before Wrap
// with LoadKeyPair:
//
//	cfg, err := stapler.LoadKeyPair(nil, "chain.pem", "key.pem")
//	srv.TLSConfig = s.Wrap(cfg)
//	srv.ListenAndServeTLS("", "")
//
// A wrapped config serves what cfg held when it was wrapped. To change it,
// change cfg (or a Clone of it) and wrap that again. The certificates'
// chains and bytes are shared with cfg, not copied: as crypto/tls asks of
// a config in use, do not write a renewed certificate into them. (If an
// application does, the new leaf is served with its own staple, never the
// old one's, but chosen by the names the old leaf had.) Selection also
// remembers crypto/tls's answers: GODEBUG settings that change them
// (tlssha1, tlsrsakex), changed while the program runs, apply to configs
// wrapped after the change. Wrap knows its own
// configs and keeps no list of them: a config it returned is returned as
// it is, and so is an unchanged Clone of one; a Clone whose Certificates
// were set is wrapped as the original would have been with those
// certificates (the application's callbacks, not the wrapped ones, so that
// nothing is stapled twice). The configs a wrapped GetConfigForClient
// returns are wrapped once each and remembered in a bounded cache that
// holds none of them alive.
func (s *Stapler) Wrap(cfg *tls.Config) *tls.Config {
	if w := s.wrapperOf(cfg); w != nil {
		if w.unchanged(cfg) {
			return cfg
		}
		// A Clone of a wrapped config, changed: its copy, sharing its
		// session ticket keys as crypto/tls's Clone shares them.
		return s.wrap(w.unwrap(cfg), w.tickets)
	}
	return s.wrap(cfg, nil)
}

// wrapper is what Wrap keeps of one application config: the certificates
// it captured, their state, and the application's callbacks, which the
// wrapped config's callbacks (its methods) call.
type wrapper struct {
	s *Stapler
	// list has an entry for each certificate of the application's
	// Certificates, as it was when wrapped: its state, found once at Wrap
	// so that the handshake path goes straight from the chosen position to
	// its staple, and the certificate itself, kept in views (see
	// listEntry): there is no copy of the list beside them.
	list []listEntry
	// asWrappedAt holds the entries that carried a staple of the
	// application's own, as they were: served as they are while the
	// Stapler staples nothing (the Stapler's views hold no such staple).
	asWrappedAt map[int32]*tls.Certificate
	// byName is the application's NameToCertificate: a position in list,
	// or a certificate outside it.
	byName map[string]certselect.Target
	// sel chooses from list as crypto/tls would, handing back the chosen
	// certificate's state (list[i].m as it was at Wrap) when it has it at
	// hand.
	sel *certselect.Index[*managed]

	getCertificate       func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	getConfigForClient   func(*tls.ClientHelloInfo) (*tls.Config, error)
	getClientCertificate func(*tls.CertificateRequestInfo) (*tls.Certificate, error)
	appUnwrapSession     func([]byte, tls.ConnectionState) (*tls.SessionState, error)
	appWrapSession       func(tls.ConnectionState, *tls.SessionState) ([]byte, error)

	probe *wrapperProbe // the answer to a probe, made once
	// warnedEmpty: a handshake reached this wrapper, which has no
	// certificate of its own, and the WARN naming the fix was logged.
	warnedEmpty atomic.Bool

	// tickets are the session ticket keys of the wrapped config and its
	// copies (see tickets.go): never shared with an unrelated config.
	tickets *ticketKeys
	// inner remembers the wrapped clones of the configs the application's
	// GetConfigForClient returns (nil without one): they seal tickets
	// with this config's keys, as crypto/tls's configs for a client use
	// the original config's.
	inner *weakcache.Cache[tls.Config, tls.Config]
}

// wrap makes the wrapped clone of cfg, an application config.
func (s *Stapler) wrap(cfg *tls.Config, tickets *ticketKeys) *tls.Config {
	// What cfg holds now: the application may change its own slice later.
	captured := cfg.Certificates
	if tickets == nil {
		tickets = new(ticketKeys)
	}
	w := &wrapper{
		s:                    s,
		list:                 make([]listEntry, len(captured)),
		getCertificate:       cfg.GetCertificate,
		getConfigForClient:   cfg.GetConfigForClient,
		getClientCertificate: cfg.GetClientCertificate,
		tickets:              tickets,
	}
	if w.getConfigForClient != nil {
		w.inner = weakcache.New[tls.Config, tls.Config]()
	}
	w.probe = &wrapperProbe{w}
	var listed []*tls.Certificate
	var homes []*listEntry
	for i := range captured {
		c := &captured[i]
		if c.OCSPStaple != nil {
			if w.asWrappedAt == nil {
				w.asWrappedAt = map[int32]*tls.Certificate{}
			}
			kept := *c
			w.asWrappedAt[int32(i)] = &kept
		}
		if len(c.Certificate) > 0 {
			listed = append(listed, c)
			homes = append(homes, &w.list[i])
		} else {
			l := &w.list[i]
			l.own.Store(&view{cert: *c, home: l})
		}
	}
	for j, m := range s.addAll(listed, homes) {
		l := homes[j]
		l.m.Store(m)
		if m.view.Load().home != l { // known already: listed elsewhere, or served
			s.learnIssuer(m, listed[j])
			m.adopt(l, listed[j])
		}
	}
	if cfg.NameToCertificate != nil { // honoured as crypto/tls does
		w.byName = make(map[string]certselect.Target, len(cfg.NameToCertificate))
		for name, p := range cfg.NameToCertificate {
			t := certselect.Target{Pos: -1, Cert: p}
			for i := range captured {
				if p == &captured[i] {
					t = certselect.Target{Pos: int32(i)}
				}
			}
			w.byName[name] = t
		}
	}
	var states []*managed // the name table keeps each name's first state at hand
	if len(w.list) > 1 {
		states = make([]*managed, len(w.list))
		for i := range w.list {
			states[i] = w.list[i].m.Load()
		}
	}
	w.sel = certselect.New(listedCerts(w.list), states, w.byName)
	// Once the wrapped config is dropped, its entries' own views go too:
	// the list itself may outlive it (a certificate's view made for one
	// of its entries points into it until a later config wraps that
	// certificate, or it is removed).
	runtime.AddCleanup(w, func(list []listEntry) {
		for i := range list {
			list[i].own.Store(nil)
			list[i].bare.Store(nil)
		}
	}, w.list)
	c := cfg.Clone()
	// No certificate of its own: crypto/tls would serve one without asking
	// GetCertificate when the client sends no SNI.
	c.Certificates = nil
	c.NameToCertificate = nil // cleared with Certificates
	c.GetCertificate = w.serverCertificate
	w.appUnwrapSession, w.appWrapSession = cfg.UnwrapSession, cfg.WrapSession
	if cfg.WrapSession == nil && cfg.UnwrapSession == nil {
		c.WrapSession, c.UnwrapSession = w.sealSession, w.openSession
	} else {
		c.UnwrapSession = w.unwrapSession(c, cfg.UnwrapSession)
	}
	if w.getConfigForClient != nil {
		c.GetConfigForClient = w.configForClient
	}
	if w.clientSide() {
		c.GetClientCertificate = w.clientCertificate
	}
	return c
}

// certAt is the certificate at position i of the list, as it was wrapped
// (with whatever staple its view holds).
func (w *wrapper) certAt(i int) *tls.Certificate { return w.list[i].base() }

// listedCerts is a wrapper's list as selection reads it (a
// certselect.List): the certificates as they were wrapped, each read from
// its entry's view, so that selection keeps no copy of them.
type listedCerts []listEntry

func (l listedCerts) Len() int                  { return len(l) }
func (l listedCerts) At(i int) *tls.Certificate { return l[i].base() }

// captured is the list as it was wrapped: copies, staples as the
// application set them.
func (w *wrapper) captured() []tls.Certificate {
	if len(w.list) == 0 {
		return nil
	}
	certs := make([]tls.Certificate, len(w.list))
	for i := range w.list {
		if c, ok := w.asWrappedAt[int32(i)]; ok {
			certs[i] = *c
			continue
		}
		certs[i] = *w.certAt(i)
		certs[i].OCSPStaple = nil
	}
	return certs
}

// clientSide reports whether the wrapped config selects client certificates.
func (w *wrapper) clientSide() bool { return w.getClientCertificate != nil || len(w.list) > 0 }

// serverCertificate is the wrapped config's GetCertificate: it selects as
// crypto/tls would have with the application's config, and staples.
func (w *wrapper) serverCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if hello == probeHello {
		return nil, w.probe
	}
	if w.getCertificate != nil && (len(w.list) == 0 || hello.ServerName != "") {
		cert, err := w.getCertificate(hello)
		if err != nil {
			return cert, err
		}
		if cert != nil {
			return w.s.serve(hello.Context(), cert)
		}
	}
	if len(w.list) == 0 {
		if w.getCertificate == nil && w.getConfigForClient == nil && !w.warnedEmpty.Swap(true) {
			// Nothing of its own to serve, yet asked: certificates were
			// added to a copy after Wrap, as net/http's
			// ListenAndServeTLS(certFile, keyFile) does. They are served
			// unstapled: say so once, and how to fix it.
			w.s.log.Warn("ocsp: a handshake reached a wrapped config that has no certificates of its own: " +
				"certificates added after Wrap (as http.Server's ListenAndServeTLS(certFile, keyFile) adds them) are served without a staple; " +
				"load them before Wrap (stapler.LoadKeyPair) and call ListenAndServeTLS(\"\", \"\")")
		}
		return nil, nil // crypto/tls reports that no certificate is configured
	}
	i, m, outside := w.sel.Choose(hello)
	if outside != nil {
		return w.s.serve(hello.Context(), outside)
	}
	if m == nil || m.removed.Load() { // the index's state may be one removed since
		if m = w.list[i].m.Load(); m == nil {
			return w.s.serve(hello.Context(), w.list[i].base())
		}
	}
	if c := w.s.hit(m, &w.list[i]); c != nil {
		return c, nil
	}
	return w.s.serveManaged(hello.Context(), m, nil, w, i)
}

// serveAt serves the certificate at position i of the list.
func (w *wrapper) serveAt(ctx context.Context, i int) (*tls.Certificate, error) {
	l := &w.list[i]
	m := l.m.Load()
	if m == nil {
		return w.s.serve(ctx, l.base())
	}
	return w.s.serveManaged(ctx, m, nil, w, i)
}

// readd registers the certificate at position i of the list again, its
// state having been removed, as on first sight (as a listed certificate,
// which never retires, with the chain the entry holds), and returns its
// new state.
func (w *wrapper) readd(i int) *managed {
	l := &w.list[i]
	c := *l.base()
	c.OCSPStaple = nil
	m := w.s.addAll([]*tls.Certificate{&c}, []*listEntry{l})[0]
	if m.view.Load().home != l { // registered again by another entry first
		w.s.learnIssuer(m, &c)
		m.adopt(l, &c)
	}
	l.m.Store(m)
	return m
}

// hit is the handshake path's usual case, all in one place, for the
// certificate at l whose state is m: see hitView.
func (s *Stapler) hit(m *managed, l *listEntry) *tls.Certificate {
	if v := m.view.Load(); v.home == l {
		return s.hitView(m, v)
	}
	return nil
}

// hitView returns v's certificate when v, m's view of the certificate to
// serve, has a usable staple that is not a revocation, OCSP is on and
// stapling enabled: what serveManaged would return then, whatever the
// policy. Otherwise nil, and serveManaged decides.
func (s *Stapler) hitView(m *managed, v *view) *tls.Certificate {
	now := s.coarseNow() // 0 (no coarse clock): serveManaged decides, on the exact clock
	if now == 0 || now+int64(coarseMargin) >= v.expires || !v.hasStaple || v.revoked || m.removed.Load() ||
		v.leafMoved() || !m.settings.Load().stapling.Enabled || !s.cfg.Load().OCSPFunctionality {
		return nil
	}
	markServedAt(m, now/int64(time.Second))
	s.counters.stapled.Add(1)
	return &v.cert
}

// unwrapSession is the wrapped config's UnwrapSession when the
// application has session hooks of its own: while any certificate the
// Stapler manages is known revoked, no session is resumed (see
// tickets.go); otherwise the application's UnwrapSession, or crypto/tls's
// own ticket decryption, decides.
func (w *wrapper) unwrapSession(c *tls.Config, user func([]byte, tls.ConnectionState) (*tls.SessionState, error)) func([]byte, tls.ConnectionState) (*tls.SessionState, error) {
	return func(identity []byte, cs tls.ConnectionState) (*tls.SessionState, error) {
		if w.s.revokedCount.Load() > 0 {
			return nil, nil
		}
		if user != nil {
			return user(identity, cs)
		}
		return c.DecryptTicket(identity, cs)
	}
}

// configForClient is the wrapped config's GetConfigForClient: the config
// the application returns is wrapped too.
func (w *wrapper) configForClient(hello *tls.ClientHelloInfo) (*tls.Config, error) {
	if hello == probeHello {
		return nil, w.probe
	}
	inner, err := w.getConfigForClient(hello)
	if err != nil || inner == nil {
		return inner, err
	}
	return w.wrapInner(inner), nil
}

// clientCertificate is the wrapped config's GetClientCertificate, selecting
// as crypto/tls does on the client side.
func (w *wrapper) clientCertificate(cri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
	if cri == probeRequest {
		return nil, w.probe
	}
	if w.getClientCertificate != nil {
		cert, err := w.getClientCertificate(cri)
		if err != nil || cert == nil || len(cert.Certificate) == 0 {
			return cert, err
		}
		return w.s.serve(cri.Context(), cert)
	}
	for i := range w.list {
		if c := w.certAt(i); len(c.Certificate) > 0 && cri.SupportsCertificate(c) == nil { // no certificate: crypto/tls's client side would panic
			return w.serveAt(cri.Context(), i)
		}
	}
	return new(tls.Certificate), nil // send no certificate, as crypto/tls does
}

// wrapInner wraps a config returned by GetConfigForClient, remembering it
// so that a config returned again is not cloned again.
func (w *wrapper) wrapInner(inner *tls.Config) *tls.Config {
	if c := w.inner.Get(inner); c != nil {
		return c
	}
	s := w.s
	var c *tls.Config
	if iw := s.wrapperOf(inner); iw != nil {
		c = s.Wrap(inner) // one of ours already (or a copy): its own keys
		if c == inner {
			return c
		}
	} else {
		c = s.wrap(inner, w.tickets)
	}
	return w.inner.Put(inner, c)
}

// LoadKeyPair returns a clone of cfg (a new config when cfg is nil) with
// the key pair in certFile and keyFile (PEM; the chain, leaf first) added
// to its Certificates: what http.Server's ListenAndServeTLS(certFile,
// keyFile) does to its copy of the config, done before Wrap, so that the
// certificate is stapled. Serve the wrapped config with
// ListenAndServeTLS("", "").
func LoadKeyPair(cfg *tls.Config, certFile, keyFile string) (*tls.Config, error) {
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	if cfg == nil {
		cfg = &tls.Config{}
	} else {
		cfg = cfg.Clone()
	}
	cfg.Certificates = append(cfg.Certificates[:len(cfg.Certificates):len(cfg.Certificates)], pair)
	return cfg, nil
}
