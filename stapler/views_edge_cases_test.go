package stapler

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/staplerkit/ocsp/config"
	"github.com/staplerkit/ocsp/responder"
	"golang.org/x/crypto/ocsp"
)

// FINDING (fixed), REGRESSION (passes at a08ca52, before the views). TestSNISelectsTheNamedCertificateWithoutLeaf: a config
// listing two certificates whose Leaf is nil (built by hand, or parsed
// with GODEBUG x509keypairleaf=0) must serve, to a client asking for the
// second one's name, the second one: crypto/tls's rule, which Wrap
// promises to keep ("whichever way cfg selects them ... with crypto/tls's
// own SNI rules"). Since 7e23a27 a certificate seen for the first time
// gets its view made from the application's copy as it is (Leaf nil; only
// a certificate already known gets m.leaf filled in, in wrap's adopt
// branch), and newNameIndex skips entries whose base() has no Leaf ("not
// parsed: never valid for a name"): the name index is empty and
// firstSupported falls back to position 0, the wrong certificate.
func TestSNISelectsTheNamedCertificateWithoutLeaf(t *testing.T) {
	e := newEnv(t, on)
	a, ca := attack5Leaf(t, e, true, "a.test")
	b, cb := attack5Leaf(t, e, true, "b.test")
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

// attack5Ed25519 issues an Ed25519 leaf for localhost from e's CA, known
// good to e's responder.
func attack5Ed25519(t *testing.T, e *env) (tls.Certificate, *x509.Certificate) {
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

// PASSING PROBE. TestEd25519KeysAnyWay: an Ed25519 key (a slice:
// uncomparable inside an interface) listed, listed twice under two
// configs, and returned by a GetCertificate that converts the key afresh
// on every call (a new interface data word each time): no panic, real
// TLS 1.3 and TLS 1.2 handshakes stapled, the key served always the one
// returned, and the listed certificate's hit allocates nothing.
func TestEd25519KeysAnyWay(t *testing.T) {
	e := newEnv(t, on)
	c, leaf := attack5Ed25519(t, e)
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

// FINDING (fixed), REGRESSION (passes at a08ca52, before the views). TestExpiredStapleTwoConfigsAllocateNothing: the promise
// TestAnExpiredStapleIsLeftOutWithoutAllocating holds for one config
// (once the staple has expired, the certificate is served without it and
// such handshakes allocate nothing after the first) breaks for two configs
// listing the same leaf with different chains, and likewise with OCSP
// turned off: the copy without the staple is cached in one slot per
// certificate (managed.bare), so each switch between the configs' views
// makes a new copy (bareOf).
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
