package stapler

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"math/big"
	"testing"
	"time"

	"github.com/staplerkit/ocsp/config"
	"github.com/staplerkit/ocsp/responder"
	"golang.org/x/crypto/ocsp"
)

// The Stapler keeps each listed certificate in its views only (no copy of
// the list beside them): these tests hold what that must not change.

// TestCopiesOfOneCertificateFromTheApplicationShareAView: an application's
// GetCertificate that hands out different pointers to the same certificate
// (a copy per reload, say) is served from one view: no lock and no
// allocation per handshake, where a view per pointer would rebuild it on
// every switch.
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

// TestTurningOCSPOffServesTheApplicationsOwnStaple: with OCSP off, a
// listed certificate is served as the application had it, the staple it
// set included; with OCSP on, the Stapler's verified staple replaces it.
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

// TestAnExpiredStapleIsLeftOutWithoutAllocating: once the staple has
// expired (the responder down), the certificate is served without it,
// as it was wrapped, and such handshakes allocate nothing after the first.
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

// TestAReWrappedConfigTakesOverAndTheOldKeepsItsChain: a config wrapped
// again with another chain for the same leaf serves its chain, and the
// config wrapped first keeps serving the chain it held; both get the
// next staple.
func TestAReWrappedConfigTakesOverAndTheOldKeepsItsChain(t *testing.T) {
	e := newEnv(t, on)
	first := e.s.Wrap(tlsConfigFor(e.leaf))
	e.mustGetStaple(e.serve(first), e.leaf, ocsp.Good)
	leafOnly := e.leaf.Certificate
	leafOnly.Certificate = leafOnly.Certificate[:1:1]
	second := e.s.Wrap(&tls.Config{Certificates: []tls.Certificate{leafOnly}})
	hello := helloFor()
	check := func(when string) {
		t.Helper()
		for name, want := range map[*tls.Config]int{first: len(e.leaf.Certificate.Certificate), second: 1} {
			c, err := name.GetCertificate(hello)
			if err != nil || len(c.Certificate) != want || c.OCSPStaple == nil {
				t.Fatalf("%s: served a chain of %d, want %d, stapled (%v)", when, len(c.Certificate), want, err)
			}
		}
	}
	check("after the second Wrap")
	before := e.advanceToNextRefresh(e.leaf)
	e.waitQueries(e.leaf, before+1)
	check("after a refresh")
	if n := testing.AllocsPerRun(1000, func() { first.GetCertificate(hello); second.GetCertificate(hello) }); n != 0 {
		t.Fatalf("%v allocations per pair of handshakes, want 0", n)
	}
}

// TestAnInPlaceLeafSwapStaysCaughtAfterARefresh: a leaf the application
// writes into its chain in place is served with its own staple, also after
// the old certificate's next refresh (a new view of the old certificate
// must keep where the old leaf was, not take the chain's new one).
func TestAnInPlaceLeafSwapStaysCaughtAfterARefresh(t *testing.T) {
	e := newEnv(t, on)
	app := tlsConfigFor(e.leaf)
	app.Certificates[0].Certificate = [][]byte{e.leaf.Cert.Raw, e.ca.Cert.Raw} // the application's own chain slice
	addr := e.serve(e.s.Wrap(app))
	e.mustGetStaple(addr, e.leaf, ocsp.Good)
	tmpl := *e.leaf.Cert // renewed with the same key
	tmpl.SerialNumber = new(big.Int).Add(e.leaf.Cert.SerialNumber, big.NewInt(1))
	der, err := x509.CreateCertificate(rand.Reader, &tmpl, e.ca.Cert, e.leaf.Key.Public(), e.ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	e.r.SetStatus(tmpl.SerialNumber, responder.Good())
	app.Certificates[0].Certificate[0] = der // in place
	before := e.advanceToNextRefresh(e.leaf)
	e.waitQueries(e.leaf, before+1)
	staple, st, err := e.handshake(addr, func(c *tls.Config) { c.InsecureSkipVerify = true })
	if err != nil {
		t.Fatal(err)
	}
	if staple == nil {
		return // served without a staple: not another certificate's
	}
	resp, err := ocsp.ParseResponse(staple, e.ca.Cert)
	if err != nil {
		t.Fatal(err)
	}
	if served := st.PeerCertificates[0]; resp.SerialNumber.Cmp(served.SerialNumber) != 0 {
		t.Fatalf("after a refresh, leaf serial %v served with the staple for serial %v", served.SerialNumber, resp.SerialNumber)
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
