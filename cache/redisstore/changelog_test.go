package redisstore

import (
	"context"
	"testing"
	"time"

	"github.com/staplerkit/ocsp/cache/redisstore/redistest"
)

// TestALostSubscriptionCatchesUpFromTheLog: a change Put while a
// subscriber's subscription is down (Redis dropped it: CLIENT KILL) is
// passed on from the change log once the subscription is back, and no
// missed changes are reported; with the log gone (DEL), they are.
func TestALostSubscriptionCatchesUpFromTheLog(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	const prefix = "fleet:"
	b := New(srv.Client(), prefix)
	c := New(srv.Client(), prefix)
	r := subscribeRecorder(t, srv, b)
	admin := srv.Client()

	if err := admin.ClientKillByFilter(ctx, "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	// b is away for its resubscription pause.
	if err := c.Put(ctx, "during", []byte("v")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b hearing the change made while it was away", func() bool { return r.count("during") == 1 })
	if n := r.count(""); n > 0 {
		t.Fatalf("a subscription lost for a moment reported missed changes %d time(s)", n)
	}

	// The log wiped: the mark is gone, changes may have been missed.
	if err := admin.Del(ctx, prefix+"log").Err(); err != nil {
		t.Fatal(err)
	}
	if err := admin.ClientKillByFilter(ctx, "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b reporting missed changes", func() bool { return r.count("") == 1 })
}

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
