package certselect

import (
	"crypto/tls"
	"testing"
)

// TestANameIsValidOnlyWhereX509FoldsItsCase: x509's VerifyHostname folds
// ASCII case only, so a leaf name with a character whose Unicode lower
// case is ASCII (U+212A KELVIN SIGN, whose lower case is 'k') is valid
// for no plain server name: "\u212a.test" is not "k.test", nor is
// "*.\u212a.test" a wildcard of "a.k.test". Such a name cannot come from a
// parsed certificate (x509 refuses a dNSName that is not IA5), but it can
// from a Leaf an application set itself, which crypto/tls reads as it is:
// the certificate must never be chosen for the name crypto/tls does not
// find valid.
func TestANameIsValidOnlyWhereX509FoldsItsCase(t *testing.T) {
	withNames := func(names ...string) tls.Certificate {
		c := issue(t, p256, "zz.test")
		leaf := *c.Leaf
		leaf.DNSNames = names
		c.Leaf = &leaf
		return c
	}
	certs := certList{
		issue(t, p256, "other.test"),
		withNames("\u212a.test"),
		withNames("*.\u212a.test"),
	}
	x := New[*value](certs, nil, nil)
	for _, name := range []string{"k.test", "a.k.test"} {
		for _, v := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
			h := &tls.ClientHelloInfo{
				ServerName:        name,
				SupportedVersions: []uint16{v},
				CipherSuites:      []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256},
				SignatureSchemes:  []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256},
				SupportedCurves:   []tls.CurveID{tls.CurveP256},
				SupportedPoints:   []uint8{0},
			}
			want := cryptoTLSChoice(h, certs)
			if got, _, _ := x.Choose(h); got != want {
				var err error
				if got > 0 {
					err = certs[got].Leaf.VerifyHostname(name)
				}
				t.Errorf("%q (version %#x): chose certificate %d (%q; x509: %v), crypto/tls chooses %d",
					name, v, got, certs[got].Leaf.DNSNames, err, want)
			}
		}
	}
}
