package stapler

import (
	"crypto/tls"
	"testing"
	"time"

	"github.com/staplerkit/ocsp/config"
	"github.com/staplerkit/ocsp/responder"
)

// benchStapler is a Stapler on the system clock (as in production) with a
// stapled certificate, and the wrapped config that serves it.
func benchStapler(b *testing.B) (*responder.Leaf, *tls.Config) {
	b.Helper()
	ca, err := responder.NewCA(responder.CAOptions{})
	if err != nil {
		b.Fatal(err)
	}
	srv := responder.NewServer(responder.New(ca))
	b.Cleanup(srv.Close)
	leaf, err := srv.Issue(responder.LeafOptions{})
	if err != nil {
		b.Fatal(err)
	}
	s, err := New(config.OCSP{OCSPFunctionality: true}, WithLogger(quietLogger()), WithColdWait(5*time.Second))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	cfg := s.Wrap(&tls.Config{Certificates: []tls.Certificate{leaf.Certificate}})
	if c, err := cfg.GetCertificate(helloFor()); err != nil || c.OCSPStaple == nil {
		b.Fatalf("not stapled: %v", err)
	}
	return leaf, cfg
}

// BenchmarkGetCertificateHit measures the handshake path on a cache hit
// through Wrap, against a baseline that returns a pre-stapled certificate
// from a map keyed by server name.
func BenchmarkGetCertificateHit(b *testing.B) {
	leaf, cfg := benchStapler(b)
	hello := helloFor()
	b.Run("wrap", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			cfg.GetCertificate(hello)
		}
	})
	stapled := leaf.Certificate
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

// BenchmarkGetConfigForClientHit measures a wrapped GetConfigForClient that
// returns a config it returned before (its remembered wrapped clone),
// then the handshake's GetCertificate on that clone.
func BenchmarkGetConfigForClientHit(b *testing.B) {
	leaf, _ := benchStapler(b)
	s, err := New(config.OCSP{OCSPFunctionality: true}, WithLogger(quietLogger()), WithColdWait(5*time.Second))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	stable := &tls.Config{Certificates: []tls.Certificate{leaf.Certificate}}
	cfg := s.Wrap(&tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) { return stable, nil }})
	hello := helloFor()
	inner, _ := cfg.GetConfigForClient(hello)
	if c, err := inner.GetCertificate(hello); err != nil || c.OCSPStaple == nil {
		b.Fatalf("not stapled: %v", err)
	}
	b.Run("config", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			cfg.GetConfigForClient(hello)
		}
	})
	b.Run("config+certificate", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			inner, _ := cfg.GetConfigForClient(hello)
			inner.GetCertificate(hello)
		}
	})
}
