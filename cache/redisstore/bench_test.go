package redisstore

import (
	"crypto/tls"
	"fmt"
	"testing"
	"time"

	"github.com/staplerkit/ocsp/cache/redisstore/redistest"
	"github.com/staplerkit/ocsp/config"
	"github.com/staplerkit/ocsp/responder"
	"github.com/staplerkit/ocsp/stapler"
)

// BenchmarkFleetRequestsPerRefresh measures responder requests per
// certificate per refresh for fleets of 1, 3 and 10 servers sharing one
// Redis (must be 1 whatever the size).
func BenchmarkFleetRequestsPerRefresh(b *testing.B) {
	for _, nodes := range []int{1, 3, 10} {
		b.Run(fmt.Sprintf("nodes=%d", nodes), func(b *testing.B) {
			const certs = 20
			f := newFleet(b, nodes, certs)
			f.settle("every node to staple", 500*time.Millisecond, func() bool { return f.allStapledSince(f.clock.Now().Add(-time.Hour)) })
			refreshes := 0
			for b.Loop() {
				f.r.ResetRequests()
				before := f.clock.Now()
				f.clock.Advance(refreshDue)
				f.settle("the refresh", time.Second, func() bool { return f.allStapledSince(before) })
				refreshes++
				b.ReportMetric(float64(f.r.RequestCount())/certs, "requests/cert/refresh")
			}
		})
	}
}

// BenchmarkHandshakeWithRedisStore is GetCertificate on a cache hit for a
// Stapler whose store is Redis, against one with no store: the store is
// never on the handshake path, so the two must cost the same.
func BenchmarkHandshakeWithRedisStore(b *testing.B) {
	redis := redistest.Start(b)
	ca, _ := responder.NewCA(responder.CAOptions{})
	srv := responder.NewServer(responder.New(ca))
	defer srv.Close()
	leaf, _ := srv.Issue(responder.LeafOptions{})
	for _, tc := range []struct {
		name string
		opts []stapler.Option
	}{
		{"redis-store", []stapler.Option{stapler.WithStore(New(redis.Client(), "bench:"))}},
		{"no-store", nil},
	} {
		b.Run(tc.name, func(b *testing.B) {
			s, err := stapler.New(config.OCSP{OCSPFunctionality: true}, append(tc.opts, stapler.WithLogger(testLogger()), stapler.WithColdWait(5*time.Second))...)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			cfg := s.Wrap(&tls.Config{Certificates: []tls.Certificate{leaf.Certificate}})
			hello := &tls.ClientHelloInfo{ServerName: "localhost"}
			if c, err := cfg.GetCertificate(hello); err != nil || c.OCSPStaple == nil {
				b.Fatal("not stapled")
			}
			b.ReportAllocs()
			for b.Loop() {
				cfg.GetCertificate(hello)
			}
		})
	}
}
