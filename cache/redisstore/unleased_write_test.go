package redisstore

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/staplerkit/ocsp/internal/record"
	"github.com/staplerkit/ocsp/stapler"
)

// A server that shares a response outside a refresh (a pushed one here;
// a Test's result, or one fetched while the store was away, go the same
// way) does not overwrite a newer response in the store: the store holds
// the newest answer any server got, and a server that starts later
// adopts that one. The sharing server adopts the newer one instead.
func TestASharedResponseNeverReplacesANewerOneInTheStore(t *testing.T) {
	f := newFleet(t, 1, 1)
	f.settle("the node to staple", 100*time.Millisecond, func() bool { return f.staple(0, 0) != nil })
	ctx := context.Background()
	leaf := f.leaves[0]
	id := stapler.CertificateID(leaf.Cert.Raw)
	raw := New(f.redis.Client(), "fleet:")

	f.clock.Advance(10 * time.Minute)
	middle, _, err := fetchDirect(f, leaf)
	if err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(10 * time.Minute)
	newest, _, err := fetchDirect(f, leaf)
	if err != nil {
		t.Fatal(err)
	}
	// Another server stored the newest answer; this node missed its
	// announcement (a plain SET).
	if err := f.redis.Client().Set(ctx, raw.redisKey(id), record.Encode(newest, f.clock.Now()), 0).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.nodes[0].Push(ctx, id, middle); err != nil {
		t.Fatalf("Push of a response newer than the staple: %v", err)
	}
	waitFor(t, "the node to adopt the store's newer response", func() bool {
		return bytes.Equal(f.staple(0, 0), newest)
	})
	value, err := f.redis.Client().Get(ctx, raw.redisKey(id)).Bytes()
	if err != nil {
		t.Fatal(err)
	}
	stored, _, err := record.Decode(value)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(stored, newest) {
		t.Fatal("the pushed response, older than the store's, replaced it")
	}
}
