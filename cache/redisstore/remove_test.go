package redisstore

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/staplerkit/ocsp/cache"
	"github.com/staplerkit/ocsp/stapler"
)

// TestRemoveDeletesTheSharedValues: Remove means forget, in a fleet too:
// the certificate's shared response and fleet state are deleted before
// Remove returns; the other certificates' values stay, and a node still
// serving the removed certificate keeps its staple.
func TestRemoveDeletesTheSharedValues(t *testing.T) {
	f := newFleet(t, 2, 2)
	f.settle("every node to staple", 500*time.Millisecond, func() bool { return f.allStapledSince(f.clock.Now().Add(-time.Hour)) })
	ctx := context.Background()
	raw := New(f.redis.Client(), "fleet:")
	id0, id1 := stapler.CertificateID(f.leaves[0].Cert.Raw), stapler.CertificateID(f.leaves[1].Cert.Raw)
	keys := []string{id0, id0 + ".state", id1, id1 + ".state"}
	for _, key := range keys {
		if _, err := raw.Get(ctx, key); err != nil {
			t.Fatalf("%s before Remove: %v", key, err)
		}
	}
	if err := f.nodes[0].Remove(id0); err != nil {
		t.Fatal(err)
	}
	for _, key := range keys[:2] {
		if _, err := raw.Get(ctx, key); !errors.Is(err, cache.ErrCacheMiss) {
			t.Errorf("%s after Remove: %v, want ErrCacheMiss", key, err)
		}
	}
	for _, key := range keys[2:] {
		if _, err := raw.Get(ctx, key); err != nil {
			t.Errorf("%s, another certificate's, after Remove: %v", key, err)
		}
	}
	if f.staple(1, 0) == nil {
		t.Fatal("the other node stopped stapling the removed certificate")
	}
}
