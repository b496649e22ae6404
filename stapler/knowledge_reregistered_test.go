package stapler

import (
	"crypto/tls"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/staplerkit/ocsp/config"
	"github.com/staplerkit/ocsp/responder"
)

// What a Stapler knows of a certificate across its registrations: removed,
// served or added again, removed again, served with OCSP off. Each test goes
// through real handshakes on loopback, real signed responses and the fake
// clock; where a race decides the outcome, a blocking responder front or a
// blocking status hook (called synchronously, as an application's may block
// on a slow sink) makes the interleaving deterministic.

// stapleStatus names the status of staple for leaf ("none" when there is
// none, "invalid" when it does not verify).
func (e *env) stapleStatus(staple []byte, leaf *responder.Leaf) string {
	if len(staple) == 0 {
		return "none"
	}
	r, err := ocsp.ParseResponseForCert(staple, leaf.Cert, e.ca.Cert)
	if err != nil {
		return "invalid"
	}
	switch r.Status {
	case ocsp.Good:
		return "good"
	case ocsp.Revoked:
		return "revoked"
	}
	return "unknown"
}

// revokeNow has e's responder revoke leaf a minute ago, ten minutes after
// what was fetched so far (its answer is newer than every earlier one).
func (e *env) revokeNow(leaf *responder.Leaf) {
	e.clock.Advance(10 * time.Minute)
	e.r.SetStatus(leaf.Cert.SerialNumber, responder.Revoked(e.clock.Now().Add(-time.Minute), ocsp.KeyCompromise))
}

func (e *env) ocspOff() {
	e.t.Helper()
	off := false
	if _, err := e.s.Update(config.OCSPUpdate{OCSPFunctionality: &off}); err != nil {
		e.t.Fatal(err)
	}
}

// A leaf with the RFC 7633 must-staple extension is MustStaple whatever
// the Stapler's policy. Known revoked, removed, and served with OCSP off
// by the application's GetCertificate, it is refused, as it is when the
// wrapped config lists it.
func TestARemovedMustStapleLeafKnownRevokedIsRefusedWithOCSPOffThroughGetCertificate(t *testing.T) {
	e := newEnv(t, on) // Lenient: the leaf's extension alone makes it must-staple
	leaf, err := e.srv.Issue(responder.LeafOptions{MustStaple: true})
	if err != nil {
		t.Fatal(err)
	}
	id := CertificateID(leaf.Cert.Raw)
	viaGet := serveReporting(t, e.s.Wrap(&tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		return &leaf.Certificate, nil
	}}))
	viaList := serveReporting(t, e.s.Wrap(tlsConfigFor(leaf)))
	if c := viaGet.connect(e.clientConfig()); c.client != nil || c.server != nil || len(c.staple) == 0 {
		t.Fatalf("first handshake: client %v, server %v, staple %d bytes", c.client, c.server, len(c.staple))
	}

	e.revokeNow(leaf)
	if st, err := e.s.Test(t.Context(), id); err != nil || st.CertStatus != config.CertRevoked {
		t.Fatalf("the revocation: %v, %+v", err, st.Status)
	}
	if c := viaGet.connect(e.clientConfig()); c.client == nil || !errors.Is(c.server, ErrRevoked) {
		t.Fatalf("control: the must-staple leaf known revoked is served: client %v, server %v", c.client, c.server)
	}
	if err := e.s.Remove(id); err != nil {
		t.Fatal(err)
	}
	e.ocspOff()

	if c := viaList.connect(e.clientConfig()); c.client == nil || !errors.Is(c.server, ErrRevoked) {
		t.Errorf("control, the wrapped config's list: removed, OCSP off: client %v, server %v; want refused as revoked", c.client, c.server)
	}
	if c := viaGet.connect(e.clientConfig()); c.client == nil || !errors.Is(c.server, ErrRevoked) {
		t.Errorf("the application's GetCertificate: a must-staple leaf known revoked, removed, OCSP off, is served (client %v, server %v, staple %s); want refused as revoked",
			c.client, c.server, e.stapleStatus(c.staple, leaf))
	}
}

// A wrapped config lists a certificate with a staple of the application's
// own. The certificate is removed and registered again elsewhere (Add)
// before any handshake on the first config serves it again, and the new
// registration verifies a revocation. With OCSP then off, the first
// config's handshakes (whose list entry still points at the removed state)
// refuse the certificate under Strict and never serve the application's
// own, older, good staple: what is known is read from the certificate's
// registration now.
func TestAListedCertificateRegisteredAgainElsewhereAndRevokedIsRefusedWithOCSPOff(t *testing.T) {
	e := newEnv(t, on, WithPolicy(Strict))
	id := CertificateID(e.leaf.Cert.Raw)
	own := e.leaf.Certificate
	own.OCSPStaple = mustFetchRaw(t, e, e.leaf) // good, signed now
	srv := serveReporting(t, e.s.Wrap(&tls.Config{Certificates: []tls.Certificate{own}}))
	e.waitStapled(e.leaf)
	if c := srv.connect(e.clientConfig()); c.client != nil || c.server != nil {
		t.Fatalf("first handshake: client %v, server %v", c.client, c.server)
	}

	if err := e.s.Remove(id); err != nil {
		t.Fatal(err)
	}
	if _, err := e.s.Add(&e.leaf.Certificate); err != nil { // managed again, from elsewhere
		t.Fatal(err)
	}
	e.waitStapled(e.leaf)
	e.revokeNow(e.leaf)
	if st, err := e.s.Test(t.Context(), id); err != nil || st.CertStatus != config.CertRevoked {
		t.Fatalf("the revocation: %v, %+v", err, st.Status)
	}
	e.ocspOff()

	c := srv.connect(e.clientConfig())
	if c.client == nil || !errors.Is(c.server, ErrRevoked) {
		t.Errorf("Strict, OCSP off: the listed certificate known revoked is served (client %v, server %v, staple %s); want refused as revoked",
			c.client, c.server, e.stapleStatus(c.staple, e.leaf))
	}
	if e.stapleStatus(c.staple, e.leaf) == "good" {
		t.Errorf("the application's own good staple, older than the verified revocation, is served")
	}
}

// hookGate blocks the status hook once, on the first change of id to state
// to after it is armed, until released.
type hookGate struct {
	armed   atomic.Bool
	id      string
	to      State
	entered chan struct{}
	release chan struct{}
}

func newHookGate(id string, to State) *hookGate {
	return &hookGate{id: id, to: to, entered: make(chan struct{}), release: make(chan struct{})}
}

func (g *hookGate) hook(c StatusChange) {
	if c.ID == g.id && c.To == g.to && g.armed.CompareAndSwap(true, false) {
		close(g.entered)
		<-g.release
	}
}

func waitFor(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(hangLimit):
		t.Fatalf("timed out waiting for %s", what)
	}
}

// A test query is in flight when the certificate is removed, and it
// verifies a revocation. A handshake serves the certificate again after that
// query's answer is in, but before the removed state's knowledge is kept (the
// status hook of the revocation runs in between, and may be slow). The new
// registration takes the revocation: Test reported it, so a good answer
// signed before it (replayed) is never stapled and Strict refuses the
// certificate.
func TestARevocationLearnedByAQueryInFlightAtRemoveSurvivesARegistrationBeforeItIsRemembered(t *testing.T) {
	var gateP atomic.Pointer[hookGate]
	e := newEnv(t, on, WithPolicy(Strict), WithStatusHook(func(c StatusChange) {
		if g := gateP.Load(); g != nil {
			g.hook(c)
		}
	}))
	front := newGatedFront(t, e.r)
	leaf, err := e.ca.Issue(responder.LeafOptions{OCSPServer: []string{front.srv.URL}})
	if err != nil {
		t.Fatal(err)
	}
	e.r.SetStatus(leaf.Cert.SerialNumber, responder.Good())
	id := CertificateID(leaf.Cert.Raw)
	gate := newHookGate(id, StateRevoked)
	gateP.Store(gate)
	srv := serveReporting(t, e.s.Wrap(tlsConfigFor(leaf)))
	e.waitStapled(leaf)
	good, err := e.r.Respond(leaf.Cert) // signed before the revocation
	if err != nil {
		t.Fatal(err)
	}

	e.revokeNow(leaf)
	front.hold.Store(true)
	type result struct {
		st  CertificateStatus
		err error
	}
	tested := make(chan result, 1)
	go func() {
		st, err := e.s.Test(t.Context(), id)
		tested <- result{st, err}
	}()
	waitFor(t, front.arrived, "the test query to reach the responder")
	if err := e.s.Remove(id); err != nil {
		t.Fatal(err)
	}
	gate.armed.Store(true)
	front.hold.Store(false)
	close(front.release)
	waitFor(t, gate.entered, "the late revocation's status hook")

	// The revocation is verified and installed on the removed state; from
	// here on, whatever stands between the server and the responder
	// replays the good answer from before it.
	front.replay(good)
	first := srv.connect(e.clientConfig()) // registers the certificate again
	close(gate.release)
	r := <-tested
	if r.err != nil || r.st.CertStatus != config.CertRevoked {
		t.Fatalf("the test query in flight at Remove: %v, %+v; want revoked", r.err, r.st.Status)
	}
	if first.client == nil || !errors.Is(first.server, ErrRevoked) {
		t.Logf("the handshake that registered the certificate again: client %v, server %v, staple %s", first.client, first.server, e.stapleStatus(first.staple, leaf))
	}

	c := srv.connect(e.clientConfig())
	if c.client == nil || !errors.Is(c.server, ErrRevoked) {
		t.Errorf("after Test reported the revocation: client %v, server %v, staple %s; want refused as revoked",
			c.client, c.server, e.stapleStatus(c.staple, leaf))
	}
	if st := e.status(leaf); st.CertStatus != config.CertRevoked {
		t.Errorf("Status after Test reported the revocation: cert_status %q, stapled %v; want %s", st.CertStatus, st.Stapled, config.CertRevoked)
	}
	if n := e.s.revokedCount.Load(); n == 0 {
		t.Errorf("the revoked count is 0 with a revocation verified: sessions resume")
	}
}

// A test query is in flight when the certificate is removed, knowing it
// good; it comes back unknown (nothing learned). Meanwhile (its status hook
// running) the certificate is served again, its new registration verifies a
// revocation, and it is removed again: the revocation is remembered, and
// counts. What the first state knew, kept late, is merged with what is
// remembered, never put in its place: the revocation stays, the revoked
// count stays 1, no session begun before the revocation resumes, and served
// again the certificate staples nothing good from before the revocation.
func TestALateQueryOnARemovedCertificateDoesNotOverwriteANewerRememberedRevocation(t *testing.T) {
	var gateP atomic.Pointer[hookGate]
	e := newEnv(t, on, WithPolicy(Strict), WithStatusHook(func(c StatusChange) {
		if g := gateP.Load(); g != nil {
			g.hook(c)
		}
	}))
	front := newGatedFront(t, e.r)
	leaf, err := e.ca.Issue(responder.LeafOptions{OCSPServer: []string{front.srv.URL}})
	if err != nil {
		t.Fatal(err)
	}
	e.r.SetStatus(leaf.Cert.SerialNumber, responder.Good())
	id := CertificateID(leaf.Cert.Raw)
	gate := newHookGate(id, StateUnknown)
	gateP.Store(gate)
	srv := serveReporting(t, e.s.Wrap(tlsConfigFor(leaf)))
	e.waitStapled(leaf)
	good, err := e.r.Respond(leaf.Cert) // signed before the revocation
	if err != nil {
		t.Fatal(err)
	}
	resumer := e.clientConfig(func(c *tls.Config) { c.ClientSessionCache = tls.NewLRUClientSessionCache(8) })
	if c := srv.connect(resumer); c.client != nil || c.server != nil {
		t.Fatalf("first connection: client %v, server %v", c.client, c.server)
	}
	if c := srv.connect(resumer); c.client != nil || !c.resumed {
		t.Fatalf("control: the session does not resume while the certificate is good: %+v", c)
	}

	// A test query, in flight at Remove, that the responder answers unknown.
	e.r.Forget(leaf.Cert.SerialNumber)
	front.hold.Store(true)
	tested := make(chan error, 1)
	go func() {
		_, err := e.s.Test(t.Context(), id)
		tested <- err
	}()
	waitFor(t, front.arrived, "the test query to reach the responder")
	if err := e.s.Remove(id); err != nil {
		t.Fatal(err)
	}
	e.revokeNow(leaf)
	gate.armed.Store(true)
	front.hold.Store(false)
	close(front.release)
	waitFor(t, gate.entered, "the late unknown answer's status hook")

	// Served again, verified revoked, removed again: remembered revoked.
	if c := srv.connect(e.clientConfig()); c.client == nil || !errors.Is(c.server, ErrRevoked) {
		t.Fatalf("served again after the revocation: client %v, server %v, staple %s; want refused as revoked", c.client, c.server, e.stapleStatus(c.staple, leaf))
	}
	if err := e.s.Remove(id); err != nil {
		t.Fatal(err)
	}
	if n := e.s.revokedCount.Load(); n != 1 {
		t.Fatalf("control: revoked count %d with the removed certificate remembered revoked, want 1", n)
	}
	close(gate.release)
	<-tested

	if n := e.s.revokedCount.Load(); n != 1 {
		t.Errorf("revoked count %d after the late query on the first registration, want 1 (the revocation is still what is known)", n)
	}
	if c := srv.connect(resumer); c.client == nil && c.resumed {
		t.Errorf("a session begun before the revocation resumed")
	}
	front.replay(good)
	if c := srv.connect(e.clientConfig()); c.client == nil || !errors.Is(c.server, ErrRevoked) {
		t.Errorf("served again, the responder's path replaying a good answer from before the revocation: client %v, server %v, staple %s; want refused as revoked",
			c.client, c.server, e.stapleStatus(c.staple, leaf))
	}
}
