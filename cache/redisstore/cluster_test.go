package redisstore

import (
	"context"
	"crypto/tls"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/redis/go-redis/v9"
	"github.com/staplerkit/ocsp/cache/redisstore/redistest"
	"github.com/staplerkit/ocsp/responder"
	"github.com/staplerkit/ocsp/stapler"
)

// TestFleetOnARedisCluster: three servers sharing a real 3-master Redis
// Cluster, with certificates whose keys spread over the slots: one
// responder request per certificate per refresh, the fenced writes (a
// script over a certificate's lease and value) never cross slots, and a
// revocation reaches every server.
func TestFleetOnARedisCluster(t *testing.T) {
	cluster := redistest.StartCluster(t, 3)
	f := newFleet(t, 0, 12)
	for range 3 {
		s, err := stapler.New(fleetConfig,
			stapler.WithClock(f.clock),
			stapler.WithLogger(testLogger()),
			stapler.WithStore(New(cluster.Client(), "fleet:")),
			stapler.WithColdWait(10*time.Millisecond),
			stapler.WithRateLimit(0, 0))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		var certs []tls.Certificate
		for _, l := range f.leaves {
			certs = append(certs, l.Certificate)
		}
		f.nodes = append(f.nodes, s)
		f.cfgs = append(f.cfgs, s.Wrap(&tls.Config{Certificates: certs}))
	}
	// The certificates' keys are spread over the three masters.
	masters := map[int64]bool{}
	cc := cluster.Client()
	for _, l := range f.leaves {
		masters[redisSlot(t, cc, "fleet:{"+stapler.CertificateID(l.Cert.Raw)+"}")/5462] = true
	}
	if len(masters) < 2 {
		t.Fatalf("12 certificates on %d master(s) only", len(masters))
	}
	start := f.clock.Now().Add(-time.Hour)
	f.settle("every node to staple every certificate", 500*time.Millisecond, func() bool { return f.allStapledSince(start) })
	f.expectRequestsPerLeaf(1)
	before := f.clock.Now()
	f.clock.Advance(refreshDue)
	f.settle("the refresh", time.Second, func() bool { return f.allStapledSince(before) })
	f.expectRequestsPerLeaf(2)
	for i, s := range f.nodes {
		for _, st := range s.Status() {
			if st.StoreError != "" {
				t.Fatalf("node %d: store error %q", i, st.StoreError)
			}
		}
	}

	leaf := f.leaves[5]
	f.r.SetStatus(leaf.Cert.SerialNumber, responder.Revoked(f.clock.Now(), ocsp.KeyCompromise))
	if _, err := f.nodes[0].Test(context.Background(), stapler.CertificateID(leaf.Cert.Raw)); err != nil {
		t.Fatal(err)
	}
	f.settle("the revocation on every node", time.Millisecond, func() bool {
		for i := range f.nodes {
			resp, err := ocsp.ParseResponseForCert(f.staple(i, 5), leaf.Cert, f.ca.Cert)
			if err != nil || resp.Status != ocsp.Revoked {
				return false
			}
		}
		return true
	})
}

func redisSlot(t *testing.T, c *redis.ClusterClient, key string) int64 {
	t.Helper()
	slot, err := c.ClusterKeySlot(context.Background(), key).Result()
	if err != nil {
		t.Fatal(err)
	}
	return slot
}
