package redisstore

import (
	"context"
	"testing"
	"time"

	"github.com/staplerkit/ocsp/cache/redisstore/redistest"
)

// TestALeaseWithoutTTLIsCutToTheLeaseTTL: a lease key written by hand
// without a TTL, or with a longer one, is cut to the TTL asked for by the
// next Lease, which does not get it; a shorter one is left alone.
func TestALeaseWithoutTTLIsCutToTheLeaseTTL(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	s := New(srv.Client(), "fleet:")
	rc := srv.Client()
	const ttl = 5 * time.Second
	for _, forged := range []time.Duration{0, time.Hour} {
		rc.Set(ctx, s.leaseKey("c"), "forged", forged)
		if _, ok, err := s.Lease(ctx, "c", ttl); err != nil || ok {
			t.Fatalf("Lease over a forged lease: ok %v, err %v", ok, err)
		}
		if left := rc.PTTL(ctx, s.leaseKey("c")).Val(); left <= 0 || left > ttl {
			t.Fatalf("a forged lease (TTL %v) lives %v after Lease(%v)", forged, left, ttl)
		}
	}
	rc.Set(ctx, s.leaseKey("c"), "held", time.Second)
	s.Lease(ctx, "c", ttl)
	if left := rc.PTTL(ctx, s.leaseKey("c")).Val(); left > time.Second {
		t.Fatalf("a shorter lease was lengthened to %v", left)
	}
	rc.Del(ctx, s.leaseKey("c"))
	if _, ok, err := s.Lease(ctx, "c", ttl); err != nil || !ok {
		t.Fatalf("a free lease was not taken: ok %v, err %v", ok, err)
	}
}
