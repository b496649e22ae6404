package stapler

import (
	"crypto/tls"
	"slices"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/staplerkit/ocsp/config"
	"github.com/staplerkit/ocsp/responder"
)

// PASSING PROBE. TestPolicyOnEveryView: one leaf served three ways
// at once (a config whose list entry keeps its own view, the config
// wrapped last holding the state's view, and an application's
// GetCertificate returning another chain, which takes the view while it
// is served): once the staple is revoked, or has expired with the
// responder down, each is handled per policy (Strict and MustStaple
// refuse; Lenient serves the revocation, or no staple at all once
// expired), whichever view it is served from.
func TestPolicyOnEveryView(t *testing.T) {
	for _, p := range []Policy{Lenient, Strict, MustStaple} {
		for _, what := range []string{"revoked", "expired"} {
			t.Run(p.String()+"/"+what, func(t *testing.T) {
				e := newEnv(t, config.OCSP{OCSPFunctionality: true, QueryFrequency: 600, RecoveryFrequency: 60, RecoveryMaxTries: 100}, WithPolicy(p))
				e.r.SetWindow(responder.Window{Lifetime: 2 * time.Hour})
				own := e.s.Wrap(tlsConfigFor(e.leaf))
				other := e.leaf.Certificate
				other.Certificate = slices.Clone(other.Certificate)
				home := e.s.Wrap(&tls.Config{Certificates: []tls.Certificate{other}})
				fromApp := e.leaf.Certificate
				fromApp.Certificate = slices.Clone(fromApp.Certificate)
				app := e.s.Wrap(&tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &fromApp, nil }})
				good := e.mustGetStaple(e.serve(own), e.leaf, ocsp.Good)
				hello := helloFor()
				for _, cfg := range []*tls.Config{own, home, app} {
					if c, err := cfg.GetCertificate(hello); err != nil || c.OCSPStaple == nil {
						t.Fatalf("good: not stapled (%v)", err)
					}
				}
				if what == "revoked" {
					e.r.SetStatus(e.leaf.Cert.SerialNumber, responder.Revoked(e.clock.Now().Add(-time.Minute), 1))
					before := e.advanceToNextRefresh(e.leaf)
					e.waitQueries(e.leaf, before+1)
					eventually(t, "the revocation", func() bool { return e.status(e.leaf).State == StateRevoked })
				} else {
					e.r.SetFault(responder.Fault{Kind: responder.FaultHTTP500})
					e.clock.Advance(good.NextUpdate.Sub(e.clock.Now()) + time.Minute)
				}
				for round := range 2 { // twice: the view moves between them as they are served
					for name, cfg := range map[string]*tls.Config{"own view": own, "home view": home, "application's": app} {
						c, err := cfg.GetCertificate(hello)
						switch {
						case p >= Strict:
							if err == nil {
								t.Fatalf("%s %s (round %d): served under %v", what, name, round, p)
							}
						case err != nil:
							t.Fatalf("%s %s: refused under Lenient: %v", what, name, err)
						case what == "expired" && c.OCSPStaple != nil:
							t.Fatalf("%s: served an expired staple", name)
						case what == "revoked":
							r, perr := ocsp.ParseResponseForCert(c.OCSPStaple, e.leaf.Cert, e.ca.Cert)
							if perr != nil || r.Status != ocsp.Revoked {
								t.Fatalf("%s: Lenient served no revocation (%v)", name, perr)
							}
						}
					}
				}
			})
		}
	}
}

// PASSING PROBE. TestRevokedCountFollowsTheViews: the count of
// certificates stapled revoked (which turns session resumption off) stays
// exact while the revoked staple's view moves between configs and an
// application's certificate, across Remove and serving again, and comes
// back to 0 once the certificate is removed.
func TestRevokedCountFollowsTheViews(t *testing.T) {
	e := newEnv(t, on)
	a := e.s.Wrap(tlsConfigFor(e.leaf))
	other := e.leaf.Certificate
	other.Certificate = slices.Clone(other.Certificate)
	b := e.s.Wrap(&tls.Config{Certificates: []tls.Certificate{other}})
	fromApp := e.leaf.Certificate
	fromApp.Certificate = slices.Clone(fromApp.Certificate)
	app := e.s.Wrap(&tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &fromApp, nil }})
	e.mustGetStaple(e.serve(a), e.leaf, ocsp.Good)
	e.r.SetStatus(e.leaf.Cert.SerialNumber, responder.Revoked(e.clock.Now().Add(-time.Minute), 1))
	before := e.advanceToNextRefresh(e.leaf)
	e.waitQueries(e.leaf, before+1)
	hello := helloFor()
	serveAll := func() {
		for range 3 {
			for _, cfg := range []*tls.Config{a, app, b} {
				cfg.GetCertificate(hello)
			}
			a2 := e.s.Wrap(tlsConfigFor(e.leaf)) // the view moves to a new entry
			a2.GetCertificate(hello)
		}
	}
	serveAll()
	if n := e.s.revokedCount.Load(); n != 1 {
		t.Fatalf("revoked count %d with one certificate stapled revoked, want 1", n)
	}
	id := CertificateID(e.leaf.Cert.Raw)
	if err := e.s.Remove(id); err != nil {
		t.Fatal(err)
	}
	// Removed, it is still known revoked (remembered), so it still counts:
	// a TLS 1.3 session on it would resume without selection otherwise.
	if n := e.s.revokedCount.Load(); n != 1 {
		t.Fatalf("revoked count %d after Remove, want 1 (remembered as revoked)", n)
	}
	serveAll() // served again: fetched afresh, revoked again
	eventually(t, "the revocation again", func() bool { return e.status(e.leaf).State == StateRevoked })
	serveAll()
	if n := e.s.revokedCount.Load(); n != 1 {
		t.Fatalf("revoked count %d after serving again, want 1", n)
	}
	if err := e.s.Remove(id); err != nil {
		t.Fatal(err)
	}
	if n := e.s.revokedCount.Load(); n != 1 {
		t.Fatalf("revoked count %d after the second Remove, want 1 (remembered as revoked)", n)
	}
}
