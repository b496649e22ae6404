package redisstore

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/staplerkit/ocsp/cache"
	"github.com/staplerkit/ocsp/cache/redisstore/redistest"
)

func TestStoreGetPutDelete(t *testing.T) {
	r := redistest.Start(t)
	ctx := context.Background()
	s := New(r.Client(), "test:")
	if _, err := s.Get(ctx, "k"); !errors.Is(err, cache.ErrCacheMiss) {
		t.Fatalf("miss: %v", err)
	}
	if err := s.Put(ctx, "k", []byte("v1")); err != nil {
		t.Fatal(err)
	}
	if v, err := s.Get(ctx, "k"); err != nil || string(v) != "v1" {
		t.Fatalf("got %q %v", v, err)
	}
	if v, _ := r.Client().Get(ctx, "test:{k}").Result(); v != "v1" {
		t.Fatalf("not under the prefix: %q", v)
	}
	if err := s.Delete(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "k"); !errors.Is(err, cache.ErrCacheMiss) {
		t.Fatalf("after delete: %v", err)
	}
}

func TestLease(t *testing.T) {
	r := redistest.Start(t)
	ctx := context.Background()
	a, b := New(r.Client(), "test:"), New(r.Client(), "test:")
	// Leases meant to be held are long (a busy machine may stall for a
	// while between two calls); the one meant to run out is short, and the
	// test sleeps past it.
	tokenA, ok, err := a.Lease(ctx, "k", time.Minute)
	if err != nil || !ok {
		t.Fatalf("first lease: %v %v", ok, err)
	}
	if _, ok, _ := b.Lease(ctx, "k", time.Minute); ok {
		t.Fatal("a second holder got the lease")
	}
	if err := b.Release(ctx, "k", "not-the-token"); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := b.Lease(ctx, "k", time.Minute); ok {
		t.Fatal("a release with the wrong token freed the lease")
	}
	if err := a.Release(ctx, "k", tokenA); err != nil {
		t.Fatal(err)
	}
	tokenB, ok, _ := b.Lease(ctx, "k", 200*time.Millisecond)
	if !ok {
		t.Fatal("the lease was not released")
	}
	// The holder dies: the lease runs out by itself.
	time.Sleep(300 * time.Millisecond)
	if _, ok, _ := a.Lease(ctx, "k", time.Minute); !ok {
		t.Fatal("an expired lease is still held")
	}
	// The dead holder's late release does not free the new holder's lease.
	b.Release(ctx, "k", tokenB)
	if _, ok, _ := b.Lease(ctx, "k", time.Minute); ok {
		t.Fatal("a stale token released another holder's lease")
	}
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

// TestHugeValuesAreNotRead: a 32 MiB value written by anyone is refused
// after reading at most cache.MaxValueBytes+1 bytes of it.
func TestHugeValuesAreNotRead(t *testing.T) {
	r := redistest.Start(t)
	ctx := context.Background()
	s := New(r.Client(), "test:")
	if err := r.Client().SetRange(ctx, "test:{huge}", 32<<20, "x").Err(); err != nil {
		t.Fatal(err)
	}
	before := r.Client().InfoMap(ctx, "stats").Item("Stats", "total_net_output_bytes")
	if _, err := s.Get(ctx, "huge"); !errors.Is(err, cache.ErrValueTooLarge) {
		t.Fatalf("Get of a 32 MiB value: %v, want ErrValueTooLarge", err)
	}
	after := r.Client().InfoMap(ctx, "stats").Item("Stats", "total_net_output_bytes")
	var b, a int
	fmt.Sscan(before, &b)
	fmt.Sscan(after, &a)
	if b == 0 || a <= b {
		t.Fatalf("no byte count from INFO stats (%q, %q)", before, after)
	}
	if sent := a - b; sent > 4*cache.MaxValueBytes {
		t.Fatalf("Redis sent %d bytes for one refused Get", sent)
	}
	if err := s.Put(ctx, "big", make([]byte, cache.MaxValueBytes+1)); !errors.Is(err, cache.ErrValueTooLarge) {
		t.Fatalf("Put over the cap: %v", err)
	}
}
