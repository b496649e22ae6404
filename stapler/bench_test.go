package stapler

import (
	"crypto/tls"
	"fmt"
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

// BenchmarkGetCertificateHitMany is the cache hit with 10,000 managed
// certificates behind the application's own GetCertificate (a map by server
// name), so that the Stapler finds each certificate's state in its index,
// against the same map returning pre-stapled certificates.
func BenchmarkGetCertificateHitMany(b *testing.B) {
	const n = 10_000
	ca, err := responder.NewCA(responder.CAOptions{})
	if err != nil {
		b.Fatal(err)
	}
	srv := responder.NewServer(responder.New(ca))
	b.Cleanup(srv.Close)
	certs := mintLeaves(b, ca, n, srv.URL)
	store := signedStore(b, ca, certs)
	hook, done := countStapled(n)
	s, err := New(config.OCSP{OCSPFunctionality: true}, WithLogger(quietLogger()), WithStore(store), hook)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	byName := make(map[string]*tls.Certificate, n)
	stapled := make(map[string]*tls.Certificate, n)
	hellos := make([]*tls.ClientHelloInfo, n)
	for i := range certs {
		name := fmt.Sprintf("c%d.test", i)
		byName[name] = &certs[i]
		c := certs[i]
		c.OCSPStaple = []byte("pre-stapled")
		stapled[name] = &c
		hellos[i] = &tls.ClientHelloInfo{ServerName: name}
		if _, err := s.Add(&certs[i]); err != nil {
			b.Fatal(err)
		}
	}
	<-done
	cfg := s.Wrap(&tls.Config{GetCertificate: func(h *tls.ClientHelloInfo) (*tls.Certificate, error) { return byName[h.ServerName], nil }})
	if c, err := cfg.GetCertificate(hellos[0]); err != nil || c.OCSPStaple == nil {
		b.Fatalf("not stapled: %v", err)
	}
	b.Run("wrap", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			cfg.GetCertificate(hellos[i%n])
			i++
		}
	})
	baseline := func(h *tls.ClientHelloInfo) (*tls.Certificate, error) { return stapled[h.ServerName], nil }
	b.Run("baseline-map", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			baseline(hellos[i%n])
			i++
		}
	})
}
