package stapler

import (
	"crypto/tls"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/staplerkit/ocsp/config"
	"github.com/staplerkit/ocsp/responder"
)

// What is known of a certificate outlives its removal, its retirement
// and stapling turned off: tests of knowledge across a certificate's
// management.

// gatedFront is a responder front that can hold its answers (a query kept
// in flight for as long as a test needs: the answer is the responder's as
// of the request, sent when released) and replace the bodies it answers (a
// replaying network position).
type gatedFront struct {
	srv     *httptest.Server
	hold    atomic.Bool
	arrived chan struct{}
	release chan struct{}
	tamper  atomic.Pointer[func([]byte) []byte]
}

func newGatedFront(t testing.TB, r *responder.Responder) *gatedFront {
	g := &gatedFront{arrived: make(chan struct{}, 16), release: make(chan struct{})}
	tampering := tamperingHandler(r, &g.tamper)
	g.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		rec := httptest.NewRecorder()
		tampering(rec, req)
		if g.hold.Load() {
			g.arrived <- struct{}{}
			<-g.release
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		w.Write(rec.Body.Bytes())
	}))
	t.Cleanup(func() {
		if g.hold.Swap(false) {
			close(g.release)
		}
		g.srv.Close()
	})
	return g
}

// replay makes the front answer raw, whatever the responder says.
func (g *gatedFront) replay(raw []byte) {
	f := func([]byte) []byte { return raw }
	g.tamper.Store(&f)
}

// knowledgeFixture: a leaf behind a gated front, wrapped and stapled good,
// and a good response signed then (what a replay serves later).
type knowledgeFixture struct {
	e     *env
	front *gatedFront
	leaf  *responder.Leaf
	id    string
	srv   *reportingServer
	good  []byte
}

func newKnowledgeFixture(t *testing.T, opts ...Option) *knowledgeFixture {
	t.Helper()
	return newKnowledgeFixtureWith(t, on, opts...)
}

func newKnowledgeFixtureWith(t *testing.T, cfg config.OCSP, opts ...Option) *knowledgeFixture {
	t.Helper()
	e := newEnv(t, cfg, opts...)
	front := newGatedFront(t, e.r)
	leaf, err := e.ca.Issue(responder.LeafOptions{OCSPServer: []string{front.srv.URL}})
	if err != nil {
		t.Fatal(err)
	}
	e.r.SetStatus(leaf.Cert.SerialNumber, responder.Good())
	f := &knowledgeFixture{e: e, front: front, leaf: leaf, id: CertificateID(leaf.Cert.Raw)}
	f.srv = serveReporting(t, e.s.Wrap(tlsConfigFor(leaf)))
	e.waitStapled(leaf)
	if f.good, err = e.r.Respond(leaf.Cert); err != nil {
		t.Fatal(err)
	}
	return f
}

// revoke has the responder revoke the leaf ten minutes on (newer than
// f.good) and a test query install the revocation.
func (f *knowledgeFixture) revoke(t *testing.T) {
	t.Helper()
	e := f.e
	e.clock.Advance(10 * time.Minute)
	e.r.SetStatus(f.leaf.Cert.SerialNumber, responder.Revoked(e.clock.Now().Add(-time.Minute), ocsp.KeyCompromise))
	if st, err := e.s.Test(t.Context(), f.id); err != nil || st.CertStatus != config.CertRevoked {
		t.Fatalf("the revocation: %v, %+v", err, st.Status)
	}
}

// A revocation verified by a query in flight when the certificate is
// removed (Test, or a scheduled refresh, started before Remove and answered
// after it) is remembered: served again, the certificate is still revoked,
// and a good response signed before the revocation, replayed to its first
// query, is not stapled.
func TestARevocationVerifiedAfterRemoveIsRememberedWhenServedAgain(t *testing.T) {
	f := newKnowledgeFixture(t)
	e := f.e
	e.clock.Advance(10 * time.Minute)
	e.r.SetStatus(f.leaf.Cert.SerialNumber, responder.Revoked(e.clock.Now().Add(-time.Minute), ocsp.KeyCompromise))

	// A test query in flight when the certificate is removed.
	f.front.hold.Store(true)
	type result struct {
		st  CertificateStatus
		err error
	}
	done := make(chan result, 1)
	go func() {
		st, err := e.s.Test(t.Context(), f.id)
		done <- result{st, err}
	}()
	select {
	case <-f.front.arrived:
	case <-time.After(hangLimit):
		t.Fatal("the test query never reached the responder")
	}
	if err := e.s.Remove(f.id); err != nil {
		t.Fatal(err)
	}
	f.front.hold.Store(false)
	close(f.front.release)
	r := <-done
	if r.err != nil || r.st.CertStatus != config.CertRevoked {
		t.Fatalf("precondition: the in-flight test query did not verify the revocation: %v, %q", r.err, r.st.CertStatus)
	}

	// The Stapler has verified REVOKED. A replay of the older good answer
	// must not be stapled now.
	f.front.replay(f.good)
	c := f.srv.connect(e.clientConfig())
	if c.client != nil || c.server != nil {
		t.Fatalf("handshake: client %v, server %v", c.client, c.server)
	}
	if e.stapleStatus(c.staple, f.leaf) == "good" {
		t.Errorf("served again after Remove, the certificate is stapled GOOD from a replay older than the revocation the Stapler verified (and reported) after Remove")
	}
	if st := e.status(f.leaf); st.CertStatus != config.CertRevoked {
		t.Errorf("served again after Remove: cert_status %q, state %s; want %s (verified before it was served again)", st.CertStatus, st.State, config.CertRevoked)
	}
}

// No session begun before a revocation resumes after the certificate is
// removed: a removed certificate remembered as revoked stays in the revoked
// count (a full handshake serving it again refuses it under Strict, but a
// TLS 1.3 resumption skips certificate selection).
func TestNoSessionResumesWhileARemovedCertificateIsKnownRevoked(t *testing.T) {
	for _, v := range tlsVersions {
		t.Run(v.name, func(t *testing.T) {
			f := newKnowledgeFixture(t, WithPolicy(Strict))
			e := f.e
			session := func() *tls.Config {
				return e.clientConfig(func(c *tls.Config) {
					c.ClientSessionCache = tls.NewLRUClientSessionCache(8)
					c.MinVersion, c.MaxVersion = v.version, v.version
				})
			}
			before, after := session(), session()
			for _, cfg := range []*tls.Config{before, after} {
				if c := f.srv.connect(cfg); c.client != nil || c.server != nil {
					t.Fatalf("first connection: %+v", c)
				}
			}
			f.revoke(t)
			if c := f.srv.connect(before); c.resumed || !errors.Is(c.server, ErrRevoked) {
				t.Fatalf("control: while known revoked: resumed %v, server %v; want refused", c.resumed, c.server)
			}
			if err := e.s.Remove(f.id); err != nil {
				t.Fatal(err)
			}
			c := f.srv.connect(after)
			if c.client == nil && c.resumed {
				t.Errorf("a session begun before the revocation resumed once the revoked certificate was removed (revoked count %d)", e.s.revokedCount.Load())
			}
			if c := f.srv.connect(e.clientConfig()); !errors.Is(c.server, ErrRevoked) {
				t.Errorf("a full handshake after Remove: server %v; want refused as revoked", c.server)
			}
		})
	}
}

// Strict refuses a certificate known revoked whether or not it is
// managed: with OCSP off, after Remove, and removed with OCSP off (the
// knowledge of removed certificates is kept).
func TestStrictRefusesARemovedKnownRevokedCertificateWithOCSPOff(t *testing.T) {
	f := newKnowledgeFixture(t, WithPolicy(Strict))
	e := f.e
	f.revoke(t)
	off := false
	if _, err := e.s.Update(config.OCSPUpdate{OCSPFunctionality: &off}); err != nil {
		t.Fatal(err)
	}
	if c := f.srv.connect(e.clientConfig()); !errors.Is(c.server, ErrRevoked) {
		t.Fatalf("control: OCSP off, not removed: server %v; want refused as revoked", c.server)
	}
	if err := e.s.Remove(f.id); err != nil {
		t.Fatal(err)
	}
	if c := f.srv.connect(e.clientConfig()); !errors.Is(c.server, ErrRevoked) {
		t.Errorf("OCSP off, removed: client %v, server %v; want refused as revoked (what was verified is kept across Remove)", c.client, c.server)
	}
	// The same through an application's GetCertificate.
	app := serveReporting(t, e.s.Wrap(&tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		return &f.leaf.Certificate, nil
	}}))
	if c := app.connect(e.clientConfig()); !errors.Is(c.server, ErrRevoked) {
		t.Errorf("OCSP off, removed, from GetCertificate: client %v, server %v; want refused as revoked", c.client, c.server)
	}
}

// After a revocation, an UNKNOWN answer signed before it (a replay) does
// not become the certificate's status: Status and the status hook go on
// saying revoked, since an older answer must not hide a revocation from the
// operator.
func TestAnOlderUnknownReplayDoesNotHideARevocationFromStatus(t *testing.T) {
	e := newEnv(t, on, WithPolicy(Strict))
	front := newGatedFront(t, e.r)
	leaf, err := e.ca.Issue(responder.LeafOptions{OCSPServer: []string{front.srv.URL}})
	if err != nil {
		t.Fatal(err)
	}
	// Signed before the certificate was registered with the responder.
	unknown, err := e.r.Respond(leaf.Cert)
	if err != nil {
		t.Fatal(err)
	}
	if r, err := ocsp.ParseResponseForCert(unknown, leaf.Cert, e.ca.Cert); err != nil || r.Status != ocsp.Unknown {
		t.Fatalf("precondition: an unknown answer: %v", err)
	}
	e.r.SetStatus(leaf.Cert.SerialNumber, responder.Good())
	f := &knowledgeFixture{e: e, front: front, leaf: leaf, id: CertificateID(leaf.Cert.Raw)}
	f.srv = serveReporting(t, e.s.Wrap(tlsConfigFor(leaf)))
	e.waitStapled(leaf)
	f.revoke(t)
	for len(e.events) > 0 {
		<-e.events
	}

	front.replay(unknown)
	e.s.Test(t.Context(), f.id) // the replay, as a test query gets it
	st := e.status(leaf)
	if st.State != StateRevoked || st.CertStatus != config.CertRevoked {
		t.Errorf("after an unknown answer older than the revocation: state %s, cert_status %q; want %s and %s", st.State, st.CertStatus, StateRevoked, config.CertRevoked)
	}
	for len(e.events) > 0 {
		if ev := <-e.events; ev.From == StateRevoked {
			t.Errorf("the status hook reported %s -> %s for a replay older than the revocation", ev.From, ev.To)
		}
	}
	if c := f.srv.connect(e.clientConfig()); !errors.Is(c.server, ErrRevoked) {
		t.Errorf("Strict handshake: server %v; want refused as revoked", c.server)
	}
}

// A certificate known revoked that a strictly newer verified answer says
// good again leaves the revoked count: sessions resume again, on every
// wrapped config, including a second config listing the same leaf.
func TestRevokedCountReturnsToZeroWhenARevokedCertificateTurnsGood(t *testing.T) {
	f := newKnowledgeFixture(t)
	e := f.e
	second := serveReporting(t, e.s.Wrap(tlsConfigFor(f.leaf)))
	f.revoke(t)
	if n := e.s.revokedCount.Load(); n != 1 {
		t.Fatalf("revoked count %d after the revocation, want 1", n)
	}
	e.clock.Advance(10 * time.Minute)
	e.r.SetStatus(f.leaf.Cert.SerialNumber, responder.Good())
	if st, err := e.s.Test(t.Context(), f.id); err != nil || st.CertStatus != config.CertGood {
		t.Fatalf("good again: %v, %q", err, st.CertStatus)
	}
	if n := e.s.revokedCount.Load(); n != 0 {
		t.Fatalf("revoked count %d once the certificate is good again, want 0", n)
	}
	client := e.clientConfig(func(c *tls.Config) { c.ClientSessionCache = tls.NewLRUClientSessionCache(8) })
	second.connect(client)
	if c := second.connect(client); !c.resumed {
		t.Errorf("sessions do not resume once the revoked certificate is good again: %+v", c)
	}
	// Remove, serve again, and the count follows.
	if err := e.s.Remove(f.id); err != nil {
		t.Fatal(err)
	}
	f.srv.connect(e.clientConfig())
	if n := e.s.revokedCount.Load(); n != 0 {
		t.Errorf("revoked count %d after Remove and re-registration of a good certificate, want 0", n)
	}
}

// A certificate listed with a staple of the application's own is served
// with that staple while the Stapler staples nothing (stapling disabled for
// it, or OCSP off), but not once the Stapler has verified a revocation: that
// staple may be from before it, and nothing GOOD from before a verified
// revocation is stapled.
func TestStaplingOffNeverServesAnOlderGoodStapleForAKnownRevokedCertificate(t *testing.T) {
	for _, how := range []string{"stapling disabled", "OCSP off"} {
		t.Run(how, func(t *testing.T) {
			e := newEnv(t, on)
			front := newGatedFront(t, e.r)
			leaf, err := e.ca.Issue(responder.LeafOptions{OCSPServer: []string{front.srv.URL}})
			if err != nil {
				t.Fatal(err)
			}
			e.r.SetStatus(leaf.Cert.SerialNumber, responder.Good())
			own, err := e.r.Respond(leaf.Cert) // the application's own staple
			if err != nil {
				t.Fatal(err)
			}
			cert := leaf.Certificate
			cert.OCSPStaple = own
			f := &knowledgeFixture{e: e, front: front, leaf: leaf, id: CertificateID(leaf.Cert.Raw)}
			f.srv = serveReporting(t, e.s.Wrap(&tls.Config{Certificates: []tls.Certificate{cert}}))
			e.waitStapled(leaf)
			f.revoke(t)
			if c := f.srv.connect(e.clientConfig()); c.client != nil || e.stapleStatus(c.staple, leaf) == "good" {
				t.Fatalf("control: stapling on after the revocation: client %v, stapled good %v", c.client, e.stapleStatus(c.staple, leaf) == "good")
			}

			switch how {
			case "stapling disabled":
				if err := e.s.SetStapling(f.id, config.Stapling{Enabled: false, CacheTTL: 3600}); err != nil {
					t.Fatal(err)
				}
			default:
				off := false
				if _, err := e.s.Update(config.OCSPUpdate{OCSPFunctionality: &off}); err != nil {
					t.Fatal(err)
				}
			}
			c := f.srv.connect(e.clientConfig())
			if c.client != nil {
				t.Fatalf("handshake: %v", c.client)
			}
			if e.stapleStatus(c.staple, leaf) == "good" {
				t.Errorf("%s: a GOOD staple signed before the verified revocation is served (the application's own)", how)
			}
		})
	}
}

// Two unrelated configs whose GetConfigForClient return the same
// application config do not resume each other's sessions through it: the
// config each returns seals with its own outer config's keys.
func TestASharedInnerConfigDoesNotJoinTheSessionsOfUnrelatedOuterConfigs(t *testing.T) {
	for _, v := range tlsVersions {
		t.Run(v.name, func(t *testing.T) {
			e := newEnv(t, on)
			inner := tlsConfigFor(e.leaf)
			outer := func() *tls.Config {
				return e.s.Wrap(&tls.Config{
					Certificates:       []tls.Certificate{e.leaf.Certificate},
					GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) { return inner, nil },
				})
			}
			a, b := serveReporting(t, outer()), serveReporting(t, outer())
			e.waitStapled(e.leaf)
			client := e.clientConfig(func(c *tls.Config) {
				c.ClientSessionCache = tls.NewLRUClientSessionCache(8)
				c.MinVersion, c.MaxVersion = v.version, v.version
			})
			if c := a.connect(client); c.client != nil || c.server != nil {
				t.Fatalf("A: %+v", c)
			}
			if c := a.connect(client); !c.resumed {
				t.Fatalf("control: A does not resume its own session: %+v", c)
			}
			if c := b.connect(client); c.resumed {
				t.Errorf("B resumed a session begun on A through the inner config both return")
			}
		})
	}
}

// A certificate known revoked stays in the revoked count when a bound on
// the certificates managed retires it (a client asking for another name is
// enough): a TLS 1.3 session begun before the revocation does not resume.
func TestRetiringARevokedCertificateDoesNotReenableResumption(t *testing.T) {
	e := newEnv(t, on, WithPolicy(Strict), WithMaxCertificates(1))
	other := e.mustIssue(responder.ECDSA, "other.test")
	app := &tls.Config{GetCertificate: func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
		if h.ServerName == "other.test" {
			return &other.Certificate, nil
		}
		return &e.leaf.Certificate, nil
	}}
	srv := serveReporting(t, e.s.Wrap(app))
	session := func() *tls.Config {
		return e.clientConfig(func(c *tls.Config) {
			c.ClientSessionCache = tls.NewLRUClientSessionCache(8)
			c.MinVersion = tls.VersionTLS13
		})
	}
	before, after := session(), session()
	for _, cfg := range []*tls.Config{before, after} {
		if c := srv.connect(cfg); c.client != nil || c.server != nil {
			t.Fatalf("first connection: %+v", c)
		}
	}
	e.clock.Advance(10 * time.Minute)
	e.r.SetStatus(e.leaf.Cert.SerialNumber, responder.Revoked(e.clock.Now().Add(-time.Minute), ocsp.KeyCompromise))
	if st, err := e.s.Test(t.Context(), CertificateID(e.leaf.Cert.Raw)); err != nil || st.CertStatus != config.CertRevoked {
		t.Fatalf("the revocation: %v, %+v", err, st.Status)
	}
	if c := srv.connect(before); c.resumed || !errors.Is(c.server, ErrRevoked) {
		t.Fatalf("control: while known revoked: resumed %v, server %v; want refused", c.resumed, c.server)
	}
	// Anyone can ask for another name.
	srv.connect(e.clientConfig(func(c *tls.Config) { c.ServerName = "other.test" }))
	if c := srv.connect(after); c.client == nil && c.resumed {
		t.Errorf("a session begun before the revocation resumed once a handshake for another name retired the revoked certificate (revoked count %d)", e.s.revokedCount.Load())
	}
	if c := srv.connect(e.clientConfig()); !errors.Is(c.server, ErrRevoked) {
		t.Errorf("a full handshake after the retirement: server %v; want refused as revoked", c.server)
	}
}
