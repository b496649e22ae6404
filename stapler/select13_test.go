package stapler

import (
	"math/rand/v2"

	"crypto/tls"
	"testing"

	"github.com/staplerkit/ocsp/responder"
)

// A hello full of made-up signature schemes must not cost a call into
// crypto/tls per scheme (a handshake made to do thousands of them): the
// TLS 1.3 shortcut asks about at most maxAsks13 new schemes per hello, then
// leaves the hello to the fingerprinted cache, and still answers as
// crypto/tls does.
func TestManyUnknownSchemesCostABoundedNumberOfCalls(t *testing.T) {
	c := ecdsaProbeCertificate()
	class := keyClass(&tls.Certificate{PrivateKey: c.PrivateKey, Leaf: nil})
	if class == 0 {
		class = 1 // keyClass wants a leaf; P-256's class
	}
	schemes := make([]tls.SignatureScheme, 0, 2001)
	for i := range 2000 {
		schemes = append(schemes, tls.SignatureScheme(0x8000+i))
	}
	schemes = append(schemes, tls.ECDSAWithP256AndSHA256)
	hello := &tls.ClientHelloInfo{SupportedVersions: []uint16{tls.VersionTLS13}, SignatureSchemes: schemes}
	w := listOf(c)
	if _, known := supports13(hello, w, 0, class); known {
		t.Fatal("a hello with 2001 schemes was answered by the per-scheme shortcut")
	}
	hello.SignatureSchemes = append(schemes[:10:10], tls.ECDSAWithP256AndSHA256)
	before := 0
	for _, s := range schemes[:10] {
		if _, known := schemeKnown(class, s); known {
			before++
		}
	}
	supported, known := supports13(hello, w, 0, class)
	after := 0
	for _, s := range schemes[:10] {
		if _, known := schemeKnown(class, s); known {
			after++
		}
	}
	if after-before > 4 {
		t.Fatalf("%d new schemes asked of crypto/tls for one hello; the bound is 4", after-before)
	}
	want := hello.SupportsCertificate(c) == nil
	if known && supported != want {
		t.Fatalf("shortcut says %v, crypto/tls %v", supported, want)
	}
}

// TestSelectionMatchesCryptoTLSOnRandomHellos compares the wrapped config's
// choice with crypto/tls's rule (the first certificate the hello supports,
// else the first) over thousands of random hellos: versions (TLS 1.0 to
// 1.3, GREASE, unknown, in any order), signature schemes, curves, points
// and suites, drawn from real and made-up values, against a list of ECDSA
// and RSA certificates for overlapping names. The TLS 1.3 shortcut and the
// support cache must never change the answer.
func TestSelectionMatchesCryptoTLSOnRandomHellos(t *testing.T) {
	e := newEnv(t, on)
	issue := func(kt responder.KeyType, names ...string) tls.Certificate {
		l, err := e.srv.Issue(responder.LeafOptions{KeyType: kt, DNSNames: names})
		if err != nil {
			t.Fatal(err)
		}
		return l.Certificate
	}
	certs := []tls.Certificate{
		issue(responder.ECDSA, "other.test"),
		issue(responder.RSA, "a.test"),
		issue(responder.ECDSA, "a.test"),
		issue(responder.ECDSA, "*.b.test"),
		issue(responder.RSA, "x.b.test"),
		issue(responder.RSA, "c.test"),
	}
	w := e.s.wrapperOf(e.s.Wrap(&tls.Config{Certificates: certs}))
	if w == nil {
		t.Fatal("no wrapper")
	}
	rng := rand.New(rand.NewPCG(1, 2))
	pick := func(pool []uint16, max int) []uint16 {
		n := rng.IntN(max + 1)
		out := make([]uint16, n)
		for i := range out {
			out[i] = pool[rng.IntN(len(pool))]
		}
		return out
	}
	versions := []uint16{tls.VersionTLS10, tls.VersionTLS11, tls.VersionTLS12, tls.VersionTLS13, 0x0a0a, 0x7a7a, 0x0305}
	schemes := []uint16{0x0403, 0x0503, 0x0603, 0x0804, 0x0805, 0x0806, 0x0401, 0x0501, 0x0601, 0x0807, 0x0201, 0x0203, 0x1234}
	curves := []uint16{29, 23, 24, 25, 0x11ec, 0x2a2a}
	suites := []uint16{0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013, 0x009c, 0x002f, 0x0a0a}
	names := []string{"a.test", "x.b.test", "y.b.test", "c.test", "other.test", "none.test", ""}
	for i := range 5000 {
		h := &tls.ClientHelloInfo{
			ServerName:        names[rng.IntN(len(names))],
			SupportedVersions: pick(versions, 4),
			CipherSuites:      pick(suites, 6),
			SupportedPoints:   []uint8{0},
		}
		if rng.IntN(4) == 0 {
			h.SupportedVersions = pick(versions, 6) // more than the shortcut takes
		}
		for _, s := range pick(schemes, 5) {
			h.SignatureSchemes = append(h.SignatureSchemes, tls.SignatureScheme(s))
		}
		for _, c := range pick(curves, 3) {
			h.SupportedCurves = append(h.SupportedCurves, tls.CurveID(c))
		}
		want := 0
		for j := range certs {
			if h.SupportsCertificate(w.certAt(j)) == nil {
				want = j
				break
			}
		}
		if got, _ := w.selectCertificate(h); got != want {
			t.Fatalf("hello %d (%+v): chose certificate %d, crypto/tls %d", i, h, got, want)
		}
	}
}

// listOf is a wrapper whose list holds certs and nothing else: enough for
// selection's helpers.
func listOf(certs ...*tls.Certificate) *wrapper {
	w := &wrapper{list: make([]listEntry, len(certs))}
	for i, c := range certs {
		w.list[i].own.Store(&view{cert: *c, home: &w.list[i]})
	}
	return w
}

// TestTheTLS13ShortcutIsOn: the checks of the decomposition pass with this
// crypto/tls. Were one of them wrong, every TLS 1.3 hello would silently
// take the slower fingerprinted path (selection still exact).
func TestTheTLS13ShortcutIsOn(t *testing.T) {
	if !tls13Checked {
		t.Fatal("checkTLS13Decomposition disagrees with crypto/tls: the TLS 1.3 shortcut is off")
	}
	hello := &tls.ClientHelloInfo{SupportedVersions: []uint16{tls.VersionTLS12, 0x0a0a, tls.VersionTLS13}, SignatureSchemes: []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256}}
	w := listOf(ecdsaProbeCertificate())
	if supported, known := supports13(hello, w, 0, 1); !known || !supported {
		t.Fatalf("a TLS 1.3 hello listing TLS 1.2 first: supported %v, answered by the shortcut %v", supported, known)
	}
}
