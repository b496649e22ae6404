package stapler

import (
	"crypto/tls"
	"testing"

	"github.com/staplerkit/ocsp/config"
)

// BenchmarkGetCertificateHit measures the handshake path on a cache hit
// through Wrap, against a baseline that returns a pre-stapled certificate
// from a map keyed by server name.
func BenchmarkGetCertificateHit(b *testing.B) {
	e := newEnv(b, config.OCSP{OCSPFunctionality: true})
	cfg := e.s.Wrap(&tls.Config{Certificates: []tls.Certificate{e.leaf.Certificate}})
	hello := &tls.ClientHelloInfo{ServerName: "localhost"}
	if c, err := cfg.GetCertificate(hello); err != nil || c.OCSPStaple == nil {
		b.Fatalf("not stapled: %v", err)
	}
	b.Run("wrap", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			cfg.GetCertificate(hello)
		}
	})
	stapled := e.leaf.Certificate
	stapled.OCSPStaple = []byte("pre-stapled")
	byName := map[string]*tls.Certificate{"localhost": &stapled}
	baseline := func(h *tls.ClientHelloInfo) (*tls.Certificate, error) { return byName[h.ServerName], nil }
	b.Run("baseline-map", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			baseline(hello)
		}
	})
}
