package certselect

import (
	"crypto/tls"
	"testing"
)

// TestSupportCacheTellsNoCipherSuitesFromTheDefault: a config whose
// CipherSuites is empty but not nil allows no TLS 1.0-1.2 suite at all,
// where a nil CipherSuites allows crypto/tls's defaults. Hellos of the two
// configs (a Clone of a wrapped config shares its Index) that are otherwise
// alike are different kinds of hello: what one learns of a certificate
// must never answer for the other.
func TestSupportCacheTellsNoCipherSuitesFromTheDefault(t *testing.T) {
	certs := certList{issue(t, rsa2048, "other.test"), issue(t, p256, "a.test")}
	x := New[*value](certs, nil, nil)
	none := &tls.Config{CipherSuites: []uint16{}} // no TLS 1.2 suite
	dflt := &tls.Config{}                         // crypto/tls's defaults
	hello := func(cfg *tls.Config) *tls.ClientHelloInfo {
		h := &tls.ClientHelloInfo{
			ServerName:        "a.test",
			SupportedVersions: []uint16{tls.VersionTLS12},
			CipherSuites:      []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256},
			SignatureSchemes:  []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256, tls.PSSWithSHA256},
			SupportedCurves:   []tls.CurveID{tls.X25519, tls.CurveP256},
			SupportedPoints:   []uint8{0},
		}
		setHelloConfig(t, h, cfg)
		return h
	}
	for _, cfg := range []*tls.Config{none, dflt, none, dflt} {
		h := hello(cfg)
		want := cryptoTLSChoice(h, certs)
		if got, _, _ := x.Choose(h); got != want {
			t.Fatalf("config with CipherSuites %#v (nil: %v): chose certificate %d, crypto/tls chooses %d",
				cfg.CipherSuites, cfg.CipherSuites == nil, got, want)
		}
	}
}
