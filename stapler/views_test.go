package stapler

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/staplerkit/ocsp/config"
	"github.com/staplerkit/ocsp/responder"
	"golang.org/x/crypto/ocsp"
)

// The Stapler keeps each listed certificate in its views only (no copy of
// the list beside them): these tests hold what that must not change.

// An application's GetCertificate that hands out different pointers to the
// same certificate (a copy per reload, say) is served from one view: no
// lock and no allocation per handshake, where a view per pointer would
// rebuild it on every switch.
func TestCopiesOfOneCertificateFromTheApplicationShareAView(t *testing.T) {
	e := newEnv(t, on)
	a, b := e.leaf.Certificate, e.leaf.Certificate
	flip := false
	cfg := e.s.Wrap(&tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		flip = !flip
		if flip {
			return &a, nil
		}
		return &b, nil
	}})
	e.mustGetStaple(e.serve(cfg), e.leaf, ocsp.Good)
	hello := helloFor()
	if n := testing.AllocsPerRun(1000, func() { cfg.GetCertificate(hello) }); n != 0 {
		t.Fatalf("%v allocations per handshake alternating between two copies, want 0", n)
	}
	// A copy with another key is another certificate: served with its key.
	other, err := e.srv.Issue(responder.LeafOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b.PrivateKey = other.Key
	for range 2 {
		c, err := cfg.GetCertificate(hello)
		if err != nil {
			t.Fatal(err)
		}
		want := a.PrivateKey
		if !flip {
			want = b.PrivateKey
		}
		if !sameInterface(c.PrivateKey, want) || c.OCSPStaple == nil {
			t.Fatalf("served key %T %p, want the key of the certificate returned, stapled", c.PrivateKey, c.PrivateKey)
		}
	}
}

// With OCSP off, a listed certificate is served as the application had it,
// the staple it set included; with OCSP on, the Stapler's verified staple
// replaces it.
func TestTurningOCSPOffServesTheApplicationsOwnStaple(t *testing.T) {
	e := newEnv(t, on)
	own := []byte("the application's own staple")
	c := e.leaf.Certificate
	c.OCSPStaple = own
	cfg := e.s.Wrap(&tls.Config{Certificates: []tls.Certificate{c}})
	e.mustGetStaple(e.serve(cfg), e.leaf, ocsp.Good)
	off, onAgain := false, true
	if _, err := e.s.Update(config.OCSPUpdate{OCSPFunctionality: &off}); err != nil {
		t.Fatal(err)
	}
	got, err := cfg.GetCertificate(helloFor())
	if err != nil || !bytes.Equal(got.OCSPStaple, own) {
		t.Fatalf("OCSP off: served staple %q (%v), want the application's", got.OCSPStaple, err)
	}
	if _, err := e.s.Update(config.OCSPUpdate{OCSPFunctionality: &onAgain}); err != nil {
		t.Fatal(err)
	}
	got, err = cfg.GetCertificate(helloFor())
	if err != nil || bytes.Equal(got.OCSPStaple, own) || got.OCSPStaple == nil {
		t.Fatalf("OCSP on again: served staple %q (%v), want the Stapler's", got.OCSPStaple, err)
	}
}

// Once the staple has expired (the responder down), the certificate is
// served without it, as it was wrapped, and such handshakes allocate
// nothing after the first.
func TestAnExpiredStapleIsLeftOutWithoutAllocating(t *testing.T) {
	e := newEnv(t, config.OCSP{OCSPFunctionality: true, QueryFrequency: 600, RecoveryFrequency: 60, RecoveryMaxTries: 100})
	e.r.SetWindow(responder.Window{Lifetime: 2 * time.Hour})
	cfg := e.s.Wrap(tlsConfigFor(e.leaf))
	good := e.mustGetStaple(e.serve(cfg), e.leaf, ocsp.Good)
	e.r.SetFault(responder.Fault{Kind: responder.FaultHTTP500})
	e.clock.Advance(good.NextUpdate.Sub(e.clock.Now()) + time.Minute)
	hello := helloFor()
	got, err := cfg.GetCertificate(hello)
	if err != nil || got.OCSPStaple != nil {
		t.Fatalf("an expired staple was served (%v)", err)
	}
	if !sameCertificate(got, &e.leaf.Certificate) {
		t.Fatal("served something other than the certificate as it was wrapped")
	}
	if n := testing.AllocsPerRun(1000, func() { cfg.GetCertificate(hello) }); n != 0 {
		t.Fatalf("%v allocations per handshake without the expired staple, want 0", n)
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

// A config listing two certificates whose Leaf is nil (built by hand, or
// parsed with GODEBUG x509keypairleaf=0) serves, to a client asking for the
// second one's name, the second one, with its own staple: crypto/tls's
// rule, which Wrap promises to keep ("whichever way cfg selects them ...
// with crypto/tls's own SNI rules"). Found when (since 7e23a27) the name
// index skipped entries without a Leaf and selection fell back to the first
// certificate.
func TestSNISelectsTheNamedCertificateWithoutLeaf(t *testing.T) {
	e := newEnv(t, on)
	a, ca := issueTestLeaf(t, e, true, "a.test")
	b, cb := issueTestLeaf(t, e, true, "b.test")
	cfg := e.s.Wrap(&tls.Config{Certificates: []tls.Certificate{ca, cb}})
	addr := e.serve(cfg)
	for _, tc := range []struct {
		name string
		leaf *responder.Leaf
	}{{"a.test", a}, {"b.test", b}} {
		staple, st, err := e.handshake(addr, func(c *tls.Config) { c.ServerName = tc.name })
		if err != nil {
			t.Fatalf("SNI %s: handshake: %v", tc.name, err)
		}
		if got := st.PeerCertificates[0]; !got.Equal(tc.leaf.Cert) {
			t.Fatalf("SNI %s: served the certificate for %v", tc.name, got.DNSNames)
		}
		if _, err := ocsp.ParseResponseForCert(staple, tc.leaf.Cert, e.ca.Cert); err != nil {
			t.Fatalf("SNI %s: staple does not verify for the certificate served: %v", tc.name, err)
		}
	}
}

// issueEd25519Leaf issues an Ed25519 leaf for localhost from e's CA, known
// good to e's responder.
func issueEd25519Leaf(t *testing.T, e *env) (tls.Certificate, *x509.Certificate) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	now := e.clock.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: "ed25519.test"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(90 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		OCSPServer: []string{e.srv.URL},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, e.ca.Cert, pub, e.ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	e.r.SetStatus(serial, responder.Good())
	return tls.Certificate{Certificate: [][]byte{der, e.ca.Cert.Raw}, PrivateKey: priv}, leaf
}

// An Ed25519 key (a slice: uncomparable inside an interface) listed, listed
// twice under two configs, and returned by a GetCertificate that converts
// the key afresh on every call (a new interface data word each time): no
// panic, real TLS 1.3 and TLS 1.2 handshakes stapled, the key served always
// the one returned, and the listed certificate's hit allocates nothing.
func TestEd25519KeysAnyWay(t *testing.T) {
	e := newEnv(t, on)
	c, leaf := issueEd25519Leaf(t, e)
	priv := c.PrivateKey.(ed25519.PrivateKey)
	listed := e.s.Wrap(&tls.Config{Certificates: []tls.Certificate{c}})
	leafOnly := c
	leafOnly.Certificate = c.Certificate[:1:1]
	second := e.s.Wrap(&tls.Config{Certificates: []tls.Certificate{leafOnly, c}})
	var last atomic.Pointer[tls.Certificate]
	fresh := e.s.Wrap(&tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		x := &tls.Certificate{Certificate: c.Certificate, PrivateKey: slices.Clone(priv)}
		last.Store(x)
		return x, nil
	}})
	for _, cfg := range []*tls.Config{listed, second, fresh} {
		addr := e.serve(cfg)
		for _, v := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
			staple, st, err := e.handshake(addr, func(c *tls.Config) { c.MaxVersion = v })
			if err != nil {
				t.Fatalf("TLS %x: %v", v, err)
			}
			if !st.PeerCertificates[0].Equal(leaf) {
				t.Fatal("another leaf served")
			}
			if _, err := ocsp.ParseResponseForCert(staple, leaf, e.ca.Cert); err != nil {
				t.Fatalf("TLS %x: staple: %v", v, err)
			}
		}
	}
	hello := helloFor()
	for range 4 {
		got, err := fresh.GetCertificate(hello)
		if err != nil || !sameInterface(got.PrivateKey, last.Load().PrivateKey) || got.OCSPStaple == nil {
			t.Fatalf("served another key than the one returned (%v)", err)
		}
		if got, _ := listed.GetCertificate(hello); !sameInterface(got.PrivateKey, c.PrivateKey) || got.OCSPStaple == nil {
			t.Fatal("the listed config served another key")
		}
	}
	if n := testing.AllocsPerRun(1000, func() { listed.GetCertificate(hello); second.GetCertificate(hello) }); n != 0 {
		t.Fatalf("%v allocations per pair of handshakes, want 0", n)
	}
}

// Once the staple has expired, the certificate is served without it and
// such handshakes allocate nothing after the first (the promise
// TestAnExpiredStapleIsLeftOutWithoutAllocating holds for one config), also
// for two configs listing the same leaf with different chains, and likewise
// with OCSP turned off. Found when the copy without the staple was cached
// in one slot per certificate, so each switch between the configs' views
// made a new copy.
func TestExpiredStapleTwoConfigsAllocateNothing(t *testing.T) {
	e := newEnv(t, config.OCSP{OCSPFunctionality: true, QueryFrequency: 600, RecoveryFrequency: 60, RecoveryMaxTries: 100})
	e.r.SetWindow(responder.Window{Lifetime: 2 * time.Hour})
	a := e.s.Wrap(tlsConfigFor(e.leaf))
	other := e.leaf.Certificate
	other.Certificate = slices.Clone(other.Certificate)
	b := e.s.Wrap(&tls.Config{Certificates: []tls.Certificate{other}})
	good := e.mustGetStaple(e.serve(a), e.leaf, ocsp.Good)
	hello := helloFor()
	pair := func() { a.GetCertificate(hello); b.GetCertificate(hello) }
	off := false
	for _, when := range []string{"expired", "OCSP off"} {
		if when == "expired" {
			e.r.SetFault(responder.Fault{Kind: responder.FaultHTTP500})
			e.clock.Advance(good.NextUpdate.Sub(e.clock.Now()) + time.Minute)
		} else if _, err := e.s.Update(config.OCSPUpdate{OCSPFunctionality: &off}); err != nil {
			t.Fatal(err)
		}
		ca, _ := a.GetCertificate(hello)
		cb, _ := b.GetCertificate(hello)
		if ca == nil || cb == nil || ca.OCSPStaple != nil || cb.OCSPStaple != nil || !sameSlice(cb.Certificate, other.Certificate) {
			t.Fatalf("%s: not served as wrapped, without a staple", when)
		}
		if n := testing.AllocsPerRun(100, pair); n != 0 {
			t.Fatalf("%s: %v allocations per pair of handshakes without the staple, want 0", when, n)
		}
	}
}

// Promises "no panic", "never another certificate's staple", "never past
// expiry". Three configs list one leaf (A, then B, then C: the
// certificate's view is made for C's entry, A's and B's keep their own). B
// and then C are dropped and their cleanups clear their entries' views
// while the certificate's view still points into C's list; A then keeps
// serving across a refresh, a Remove and re-registration, and a
// GetCertificate config serving the same certificate, each handshake with
// the leaf's own, current staple.
func TestDroppedConfigsCleanupThenServe(t *testing.T) {
	e := newEnv(t, on)
	leaf := e.leaf
	a := e.s.Wrap(tlsConfigFor(leaf))
	addrA := e.serve(a)
	e.waitStapled(leaf)
	e.mustGetStaple(addrA, leaf, ocsp.Good)
	drop := func() []listEntry {
		c := e.s.Wrap(tlsConfigFor(leaf))
		// Handshake-free use: one selection through the wrapper.
		if got, err := c.GetCertificate(helloFor()); err != nil || got.OCSPStaple == nil {
			t.Fatalf("dropped config served no staple (%v)", err)
		}
		return e.s.wrapperOf(c).list
	}
	listB := drop()
	listC := drop()
	// C's entry is the view's home; B's has its own view, cleared when B is
	// collected. Wait for both cleanups (C's entry gets an own view when the
	// view moves away from it, below, so wait for B's first).
	eventually(t, "B's cleanup", func() bool { runtime.GC(); return listB[0].own.Load() == nil })
	runtime.GC()
	runtime.GC()
	e.mustGetStaple(addrA, leaf, ocsp.Good)
	before := e.advanceToNextRefresh(leaf)
	e.waitQueries(leaf, before+1)
	for range 3 {
		e.mustGetStaple(addrA, leaf, ocsp.Good)
	}
	app := leaf.Certificate
	addrApp := e.serve(e.s.Wrap(&tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &app, nil }}))
	e.mustGetStaple(addrApp, leaf, ocsp.Good)
	e.mustGetStaple(addrA, leaf, ocsp.Good)
	if err := e.s.Remove(CertificateID(leaf.Cert.Raw)); err != nil {
		t.Fatal(err)
	}
	e.handshake(addrA)
	e.waitStapled(leaf)
	e.mustGetStaple(addrA, leaf, ocsp.Good)
	e.mustGetStaple(addrApp, leaf, ocsp.Good)
	runtime.KeepAlive(listC)
}

// Handshakes alternating between two wrapped configs that list the same
// leaf take no lock and allocate nothing, and both see a new staple at
// once.
func TestOneLeafInTwoConfigsAllocatesNothing(t *testing.T) {
	e := newEnv(t, on)
	a := e.s.Wrap(&tls.Config{Certificates: []tls.Certificate{e.leaf.Certificate}})
	b := e.s.Wrap(&tls.Config{Certificates: []tls.Certificate{e.leaf.Certificate}})
	hello := &tls.ClientHelloInfo{ServerName: "localhost"}
	for _, cfg := range []*tls.Config{a, b} {
		if c, err := cfg.GetCertificate(hello); err != nil || c.OCSPStaple == nil {
			t.Fatalf("not stapled: %v", err)
		}
	}
	if n := testing.AllocsPerRun(1000, func() { a.GetCertificate(hello); b.GetCertificate(hello) }); n != 0 {
		t.Fatalf("%v allocations per pair of handshakes, want 0", n)
	}
	e.r.SetStatus(e.leaf.Cert.SerialNumber, responder.Revoked(e.clock.Now(), 1))
	if _, err := e.s.Test(t.Context(), CertificateID(e.leaf.Cert.Raw)); err != nil {
		t.Fatal(err)
	}
	for name, cfg := range map[string]*tls.Config{"first": a, "second": b} {
		c, err := cfg.GetCertificate(hello)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := ocsp.ParseResponseForCert(c.OCSPStaple, e.leaf.Cert, e.ca.Cert)
		if err != nil || resp.Status != ocsp.Revoked {
			t.Fatalf("the %s config staples %v (%v), want the revocation", name, resp, err)
		}
	}
}

// Two listeners, each with its own wrapped config of the same leaf:
// their handshakes alternate, and a hit is still lock- and allocation-free.
func TestAlternatingWrappedConfigsOfOneLeafKeepTheirOwnKeys(t *testing.T) {
	e := newEnv(t, on)
	a := e.s.Wrap(tlsConfigFor(e.leaf))
	b := e.s.Wrap(tlsConfigFor(e.leaf))
	e.mustGetStaple(e.serve(a), e.leaf, ocsp.Good)
	e.mustGetStaple(e.serve(b), e.leaf, ocsp.Good)
	hello := helloFor()
	if n := testing.AllocsPerRun(1000, func() { a.GetCertificate(hello); b.GetCertificate(hello) }); n != 0 {
		t.Fatalf("%v allocations per pair of alternating hits, want 0", n)
	}
	// A different key for the same leaf is not the same certificate.
	other, err := e.srv.Issue(responder.LeafOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mixed := e.leaf.Certificate
	mixed.PrivateKey = other.Key
	c := e.s.Wrap(&tls.Config{Certificates: []tls.Certificate{mixed}})
	got, err := c.GetCertificate(hello)
	if k, ok := got.PrivateKey.(interface{ Equal(crypto.PrivateKey) bool }); err != nil || !ok || !k.Equal(other.Key) {
		t.Fatalf("a config served another config's key: %v", err)
	}
}

func TestMustStaplePolicies(t *testing.T) {
	e := newEnv(t, config.OCSP{OCSPFunctionality: true, RecoveryMaxTries: 100}, WithColdWait(100*time.Millisecond))
	ms, err := e.srv.Issue(responder.LeafOptions{MustStaple: true})
	if err != nil {
		t.Fatal(err)
	}
	e.r.SetSerialFault(ms.Cert.SerialNumber, responder.Fault{Kind: responder.FaultHTTP503HTML})
	addr := e.wrapAndServe(ms.Certificate)
	if _, _, err := e.handshake(addr); err == nil {
		t.Fatal("must-staple certificate served without a staple")
	}
	if st := e.status(ms); st.Policy != "must-staple" {
		t.Fatalf("policy %s", st.Policy)
	}
	e.r.SetSerialFault(ms.Cert.SerialNumber, responder.Fault{})
	if _, err := e.s.Test(context.Background(), CertificateID(ms.Cert.Raw)); err != nil {
		t.Fatal(err)
	}
	e.mustGetStaple(addr, ms, ocsp.Good)
	// Past the staple's expiry with the responder down: refused again.
	e.srv.Close()
	e.clock.Advance(25 * time.Hour)
	if _, _, err := e.handshake(addr); err == nil {
		t.Fatal("must-staple certificate served with an expired staple")
	}
}

func TestStrictPolicyRefusesRevoked(t *testing.T) {
	e := newEnv(t, on, WithPolicy(Strict))
	addr := e.wrapAndServe(e.leaf.Certificate)
	e.mustGetStaple(addr, e.leaf, ocsp.Good)
	e.r.SetStatus(e.leaf.Cert.SerialNumber, responder.Revoked(e.clock.Now(), ocsp.Superseded))
	id := CertificateID(e.leaf.Cert.Raw)
	if _, err := e.s.Test(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.handshake(addr); err == nil {
		t.Fatal("strict served a revoked certificate")
	}
	// A per-certificate override back to lenient staples the revoked response.
	if err := e.s.SetPolicy(id, Lenient); err != nil {
		t.Fatal(err)
	}
	e.mustGetStaple(addr, e.leaf, ocsp.Revoked)
}

func TestCacheHitAllocatesNothing(t *testing.T) {
	e := newEnv(t, on)
	cfg := e.s.Wrap(&tls.Config{Certificates: []tls.Certificate{e.leaf.Certificate}})
	hello := &tls.ClientHelloInfo{ServerName: "localhost"}
	if c, err := cfg.GetCertificate(hello); err != nil || c.OCSPStaple == nil {
		t.Fatalf("not stapled: %v", err)
	}
	if n := testing.AllocsPerRun(1000, func() { cfg.GetCertificate(hello) }); n != 0 {
		t.Fatalf("%v allocations per cache hit, want 0", n)
	}
}

// With the certificate's lock and the Stapler's lock held, stapled
// handshakes still complete from the config holding the state's view, from
// a config whose entry has its own view (after a refresh: rebuilt once,
// then a hit), and from an application's GetCertificate returning a copy of
// the listed certificate. (A handshake that took either lock would hang
// here until hangLimit.)
func TestHitsTakeNoLock(t *testing.T) {
	e := newEnv(t, on)
	first := e.s.Wrap(tlsConfigFor(e.leaf))
	other := e.leaf.Certificate
	other.Certificate = slices.Clone(other.Certificate)
	second := e.s.Wrap(&tls.Config{Certificates: []tls.Certificate{other}})
	appCopy := other
	app := e.s.Wrap(&tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &appCopy, nil }})
	e.mustGetStaple(e.serve(first), e.leaf, 0)
	before := e.advanceToNextRefresh(e.leaf)
	e.waitQueries(e.leaf, before+1)
	hello := helloFor()
	for _, cfg := range []*tls.Config{first, second, app} {
		if c, err := cfg.GetCertificate(hello); err != nil || c.OCSPStaple == nil {
			t.Fatalf("not stapled (%v)", err)
		}
	}
	m, err := e.s.lookup(CertificateID(e.leaf.Cert.Raw))
	if err != nil {
		t.Fatal(err)
	}
	e.s.mu.Lock()
	m.mu.Lock()
	done := make(chan string, 1)
	go func() {
		for _, cfg := range []*tls.Config{first, second, app, first} {
			if c, err := cfg.GetCertificate(hello); err != nil || c.OCSPStaple == nil {
				done <- "not stapled"
				return
			}
		}
		done <- ""
	}()
	select {
	case msg := <-done:
		m.mu.Unlock()
		e.s.mu.Unlock()
		if msg != "" {
			t.Fatal(msg)
		}
	case <-time.After(hangLimit):
		m.mu.Unlock()
		e.s.mu.Unlock()
		t.Fatal("a stapled handshake waited for a lock")
	}
}

// One leaf served three ways at once (a config whose list entry keeps its
// own view, the config wrapped last holding the state's view, and an
// application's GetCertificate returning another chain, which takes the
// view while it is served): once the staple is revoked, or has expired with
// the responder down, each is handled per policy (Strict and MustStaple
// refuse; Lenient serves the revocation, or no staple at all once expired),
// whichever view it is served from.
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

// The count of certificates stapled revoked (which turns session resumption
// off) stays exact while the revoked staple's view moves between configs
// and an application's certificate, across Remove and serving again, and
// comes back to 0 once the certificate is removed.
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
