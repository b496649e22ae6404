package stapler

import (
	"crypto/tls"
	"testing"
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
	if _, known := supports13(hello, c, class); known {
		t.Fatal("a hello with 2001 schemes was answered by the per-scheme shortcut")
	}
	hello.SignatureSchemes = append(schemes[:10:10], tls.ECDSAWithP256AndSHA256)
	before := 0
	for _, s := range schemes[:10] {
		if _, known := schemeKnown(class, s); known {
			before++
		}
	}
	supported, known := supports13(hello, c, class)
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
