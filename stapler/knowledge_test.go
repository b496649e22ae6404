package stapler

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/staplerkit/ocsp/config"
	"github.com/staplerkit/ocsp/internal/record"
	"github.com/staplerkit/ocsp/responder"
	"golang.org/x/crypto/ocsp"
)

// What a Stapler has verified of a certificate is kept apart from what it
// serves: a staple dropped, withdrawn or forgotten (WithDropOnFailure,
// skip_verify turned off, Remove) does not make a revoked certificate
// good, an older response replayed afterwards is not installed, nothing
// unverified is served once verification is on, and session tickets are
// not shared between unrelated wrapped configs. Every test here goes
// through real handshakes on loopback, real signed responses, and the fake
// clock.

// A certificate known revoked, removed with Remove and then served again
// by a handshake (which registers it again), is still known revoked:
// Strict refuses it, and a good response signed before the revocation,
// replayed to the new registration's first query, is not installed.
func TestARemovedRevokedCertificateIsStillRevokedWhenServedAgain(t *testing.T) {
	e := newEnv(t, on, WithPolicy(Strict))
	front, tamper := tamperingResponder(t, e.r)
	leaf, err := e.ca.Issue(responder.LeafOptions{OCSPServer: []string{front.URL}})
	if err != nil {
		t.Fatal(err)
	}
	e.r.SetStatus(leaf.Cert.SerialNumber, responder.Good())
	id := CertificateID(leaf.Cert.Raw)
	srv := serveReporting(t, e.s.Wrap(tlsConfigFor(leaf)))
	e.waitStapled(leaf)
	good, err := e.r.Respond(leaf.Cert)
	if err != nil {
		t.Fatal(err)
	}

	e.clock.Advance(10 * time.Minute)
	e.r.SetStatus(leaf.Cert.SerialNumber, responder.Revoked(e.clock.Now().Add(-time.Minute), ocsp.KeyCompromise))
	if st, err := e.s.Test(t.Context(), id); err != nil || st.CertStatus != config.CertRevoked {
		t.Fatalf("the revocation: %v, %+v", err, st.Status)
	}
	if c := srv.connect(e.clientConfig()); c.client == nil || !errors.Is(c.server, ErrRevoked) {
		t.Fatalf("before Remove: client %v, server %v; want refused as revoked", c.client, c.server)
	}

	replay := func([]byte) []byte { return good }
	tamper.Store(&replay)
	if err := e.s.Remove(id); err != nil {
		t.Fatal(err)
	}
	c := srv.connect(e.clientConfig())
	if c.client == nil || !errors.Is(c.server, ErrRevoked) {
		good := false
		if r, err := ocsp.ParseResponseForCert(c.staple, leaf.Cert, e.ca.Cert); err == nil && r.Status == ocsp.Good {
			good = true
		}
		t.Fatalf("served again after Remove: client %v, server %v, stapled good %v; want refused as revoked", c.client, c.server, good)
	}
	if st := e.status(leaf); st.Stapled || st.CertStatus != config.CertRevoked {
		t.Errorf("served again after Remove: stapled %v, cert_status %q; want no staple and %s", st.Stapled, st.CertStatus, config.CertRevoked)
	}
	if _, err := e.s.Test(t.Context(), id); !errors.Is(err, ErrOlderResponse) {
		t.Errorf("a test query answered with the replay after Remove: %v, want ErrOlderResponse", err)
	}
	if c := srv.connect(e.clientConfig()); c.client == nil || !errors.Is(c.server, ErrRevoked) {
		t.Errorf("after the replay: client %v, server %v; want refused as revoked", c.client, c.server)
	}
}

// The knowledge of removed certificates is bounded (rememberedLimit, the
// oldest forgotten first), and a remembered revocation counts in the
// revoked count exactly while it is remembered.
func TestRemovedKnowledgeIsBoundedAndCountedWhileRemembered(t *testing.T) {
	var r remembered
	var count atomic.Int64
	revoked := &record.Entry{Status: record.Revoked, ThisUpdate: 1}
	good := &record.Entry{Status: record.Good, ThisUpdate: 2}
	certs := make([]*managed, rememberedLimit+1)
	for i := range certs {
		m := &managed{der: []byte(fmt.Sprint("certificate ", i)), known: good}
		if i == 0 {
			m.known, m.revokedFloor = revoked, revoked.ThisUpdate
		}
		certs[i] = m
		r.keep(m, &count)
	}
	if len(r.byKey) != rememberedLimit || len(r.order) != rememberedLimit {
		t.Fatalf("%d remembered (%d in order), bound %d", len(r.byKey), len(r.order), rememberedLimit)
	}
	if _, kept := r.byKey[certs[0].key()]; kept {
		t.Fatal("the oldest certificate removed is still remembered past the bound")
	}
	if n := count.Load(); n != 0 {
		t.Fatalf("revoked count %d once the only revocation was forgotten, want 0", n)
	}
	// Remembered revoked, then served again: the count moves to the
	// certificate's own state (restore), and back when it is forgotten.
	last := certs[rememberedLimit]
	later := &record.Entry{Status: record.Revoked, ThisUpdate: 3} // newer than its good answer
	last.known, last.revokedFloor = later, later.ThisUpdate
	r.keep(last, &count)
	if n := count.Load(); n != 1 || !r.of(last.key()).revoked() {
		t.Fatalf("revoked count %d with one revocation remembered, want 1", n)
	}
	// What is kept again is merged with what is remembered: an older
	// answer learnt late does not replace the newer revocation.
	r.keep(&managed{der: last.der, known: good}, &count)
	if n := count.Load(); n != 1 || !r.of(last.key()).revoked() {
		t.Fatalf("an older answer kept late replaced a remembered revocation (count %d)", n)
	}
	again := &managed{der: last.der}
	r.restore(again, last.key(), &count)
	if n := count.Load(); n != 0 || again.known != later || r.of(last.key()).revoked() {
		t.Fatalf("after restore: count %d, known %v", n, again.known)
	}
}

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
