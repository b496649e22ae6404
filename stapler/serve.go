package stapler

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"time"
)

// Serving a chosen certificate: the staple of its current view, or the
// policy's refusal, after the cold wait for a first staple.

// serve is the handshake path: it returns c with its staple. On a cache hit
// it takes no lock and allocates nothing.
func (s *Stapler) serve(ctx context.Context, c *tls.Certificate) (*tls.Certificate, error) {
	if c == nil || len(c.Certificate) == 0 {
		return c, nil
	}
	if !s.cfg.Load().OCSPFunctionality {
		// Nothing is stapled or registered; a certificate known revoked
		// is still refused under Strict (see serveManaged).
		if s.revokedCount.Load() > 0 {
			if m := s.index.get(c.Certificate[0]); m != nil && !m.removed.Load() {
				return s.serveManaged(ctx, m, c, nil, 0)
			}
			if s.removedRevoked(c.Certificate[0]) && s.policyOf(c) >= Strict {
				s.counters.refused.Add(1)
				return nil, fmt.Errorf("stapler: refusing certificate (id %s): %w", CertificateID(c.Certificate[0]), ErrRevoked)
			}
		}
		return c, nil
	}
	m := s.index.get(c.Certificate[0])
	if m == nil {
		m = s.add(c)
	} else if v := m.view.Load(); sameCertificate(&v.cert, c) {
		if hit := s.hitView(m, v); hit != nil {
			return hit, nil
		}
	}
	return s.serveManaged(ctx, m, c, nil, 0)
}

// serveManaged is serve once the certificate's state m is known: the
// certificate is c, one an application's GetCertificate returned, or else
// (c nil) the one at position i of w's list.
func (s *Stapler) serveManaged(ctx context.Context, m *managed, c *tls.Certificate, w *wrapper, i int) (*tls.Certificate, error) {
	if m.removed.Load() { // served again after Remove: managed afresh, whatever its settings were
		if !s.cfg.Load().OCSPFunctionality {
			if revoked, _ := s.revocationOf(m); revoked && m.policy(s.opts.policy) >= Strict {
				return nil, s.refuse(m, ErrRevoked)
			}
			if c == nil {
				return w.asWrapped(i), nil
			}
			return c, nil
		}
		var again *managed
		if c == nil {
			again = w.readd(i)
		} else {
			again = s.add(c)
		}
		if again.removed.Load() { // removed again at once: served bare, never a loop
			s.counters.unstapled.Add(1)
			if c == nil {
				return w.asWrapped(i), nil
			}
			return c, nil
		}
		m = again
	}
	s.markServed(m)
	if !s.cfg.Load().OCSPFunctionality || m.leaf == nil || !m.settings.Load().stapling.Enabled {
		if m.view.Load().revoked && m.policy(s.opts.policy) >= Strict {
			// Stapling off drops the staple, not what is known.
			return nil, s.refuse(m, ErrRevoked)
		}
		s.counters.unstapled.Add(1)
		if c == nil {
			return w.asWrapped(i), nil
		}
		return c, nil
	}
	v := viewOf(m, c, w, i)
	if c == nil && v.leafMoved() {
		// The application wrote another leaf into the chain it listed:
		// that leaf is served, with its own staple, as if its
		// GetCertificate had returned it.
		return s.serve(ctx, m.bareOf(v))
	}
	if !v.hasStaple {
		if g := m.pending.Load(); g != nil {
			if g.until.Load() == 0 { // not started: this certificate goes first
				s.sched.Hurry(m)
			}
			s.waitCold(ctx, g)
			v = viewOf(m, c, w, i)
		}
	}
	return s.decide(m, v, m.policy(s.opts.policy))
}

// viewOf is the view to serve: of c, a certificate an application's
// GetCertificate returned, or else of the one at position i of w's list.
func viewOf(m *managed, c *tls.Certificate, w *wrapper, i int) *view {
	if c != nil {
		return m.viewFor(c)
	}
	return w.list[i].viewWith(m)
}

// asWrapped is the certificate at position i of the list as the
// application had it, its own staple included, for a handshake the
// Stapler does not staple.
func (w *wrapper) asWrapped(i int) *tls.Certificate {
	l := &w.list[i]
	m := l.m.Load()
	if c, ok := w.asWrappedAt[int32(i)]; ok {
		// The application's own staple, unless a revocation of the
		// certificate was verified: it may be older than that.
		if m == nil {
			return c
		}
		if _, ever := w.s.revocationOf(m); !ever {
			return c
		}
		bare := *c
		bare.OCSPStaple = nil
		return &bare
	}
	if m == nil {
		return l.base()
	}
	return m.bareOf(l.viewWith(m))
}

// removedRevoked reports whether the removed certificate with leaf der is
// remembered as known revoked.
func (s *Stapler) removedRevoked(der []byte) bool {
	key := sha256.Sum256(der)
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.remembered.of(key).revoked()
}

// revocationOf reports whether m's certificate is known revoked now, and
// whether a revocation of it was ever verified, wherever that knowledge is:
// in m, in the certificate's registration now when m was removed since
// (a list entry may still point to m), or remembered (plus what m learnt
// that is not remembered yet).
func (s *Stapler) revocationOf(m *managed) (revoked, ever bool) {
	if m.removed.Load() {
		s.mu.Lock()
		cur := s.index.get(m.der)
		var k knowledge
		if cur == nil {
			k = s.remembered.of(m.key())
		}
		s.mu.Unlock()
		if cur == nil {
			m.mu.Lock()
			k = k.merge(m.knowledgeLocked())
			m.mu.Unlock()
			return k.revoked(), k.revokedFloor != 0
		}
		m = cur
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.revokedLocked(), m.revokedFloor != 0
}

// policyOf is the policy for c, a certificate the Stapler does not manage
// now: the Stapler's, or MustStaple for a must-staple leaf.
func (s *Stapler) policyOf(c *tls.Certificate) Policy {
	leaf := c.Leaf
	if leaf == nil {
		var err error
		if leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return s.opts.policy
		}
	}
	if hasMustStaple(leaf) {
		return MustStaple
	}
	return s.opts.policy
}

// decide is what a handshake gets from v under policy: the staple, or the
// certificate without one, or a refusal; each outcome counted.
func (s *Stapler) decide(m *managed, v *view, policy Policy) (*tls.Certificate, error) {
	if v.revoked && policy >= Strict {
		// Known revoked (verified), whatever is served: a staple dropped
		// or expired since does not make the certificate good.
		return nil, s.refuse(m, ErrRevoked)
	}
	if v.hasStaple && s.usable(v) {
		s.counters.stapled.Add(1)
		return &v.cert, nil
	}
	switch {
	case policy >= MustStaple:
		if v.hasStaple {
			return nil, s.refuse(m, ErrStapleExpired)
		}
		return nil, s.refuse(m, ErrNoStaple)
	case policy == Strict && v.hasStaple:
		return nil, s.refuse(m, ErrStapleExpired)
	}
	s.counters.unstapled.Add(1)
	return m.bareOf(v), nil
}

// refuse counts a refused handshake and says why.
func (s *Stapler) refuse(m *managed, err error) error {
	s.counters.refused.Add(1)
	return m.refusal(err)
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

// waitCold waits for the first fetch of a certificate that has no staple
// yet: up to the cold wait, and then on while the fetch's query to the
// responder is under way, until that query's deadline (response_timeout
// from its start) and a cold wait more for its verification. A fetch still
// waiting for its turn (the rate limit, the workers) is not waited for
// past the cold wait; a query under way is, so that a herd of handshakes
// which slows the machine down does not give up on the one query that
// would staple them all.
func (s *Stapler) waitCold(ctx context.Context, g *coldGate) {
	wait := s.coldWait()
	var done <-chan struct{}
	if ctx != nil {
		done = ctx.Done()
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		select {
		case <-g.done:
			return
		case <-done:
			return
		case <-t.C:
		}
		until := g.until.Load()
		if until == 0 {
			return
		}
		left := time.Until(time.Unix(0, until).Add(wait))
		if left <= 0 {
			return
		}
		t.Reset(left)
	}
}

// usable reports whether v's staple may still be served. With the system
// clock it reads the coarse clock (an atomic load, where time.Now costs tens
// of nanoseconds) and withdraws a staple coarseMargin early, so that it is
// never served past its expiry; with an injected clock it is exact.
func (s *Stapler) usable(v *view) bool {
	if now := s.coarseNow(); now != 0 {
		return now+int64(coarseMargin) < v.expires
	}
	return s.clock.Now().UnixNano() < v.expires
}

// servedUntil is when handshakes stop serving v's staple: its expiry, or
// coarseMargin before it with the system clock (see usable).
func (s *Stapler) servedUntil(v *view) time.Time {
	until := time.Unix(0, v.expires).UTC()
	if s.coarse != nil {
		until = until.Add(-coarseMargin)
	}
	return until
}

// coarseNow is the coarse clock's time, or 0 when there is none (an
// injected clock, or the Stapler closed: the coarse clock stopped).
func (s *Stapler) coarseNow() int64 {
	if s.coarse != nil {
		return s.coarse.now()
	}
	return 0
}
