package redisstore

import (
	"context"
	"testing"
	"time"

	"github.com/staplerkit/ocsp/internal/record"
	"github.com/staplerkit/ocsp/stapler"
)

// Whoever can write Redis writes the response every node holds back, again
// and again, each time with a later fetch time (store metadata: "another
// server just fetched it"), and announces it. Each node takes that for
// another server's query at first, but no longer than the bound the fleet
// state has: two query_frequency intervals since it last queried or saw a
// newer response; then it asks the responder. A revocation is never held
// back longer than that. Found by TestFleetFaultLoop (sentinel, seed 101).
// (Each announcement is given 300 ms to arrive: a slower arrival only
// weakens the attack.)
func TestARewrittenFetchTimeDefersTheFleetsQueriesAtMostTwoIntervals(t *testing.T) {
	f := newFleet(t, 3, 1)
	f.settle("every node to staple", 500*time.Millisecond, func() bool { return f.allStapledSince(f.clock.Now().Add(-time.Hour)) })
	ctx := context.Background()
	id := stapler.CertificateID(f.leaves[0].Cert.Raw)
	raw := New(f.redis.Client(), "fleet:")
	value, err := raw.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	current, _, err := record.Decode(value)
	if err != nil {
		t.Fatal(err)
	}
	f.r.ResetRequests()
	start := f.clock.Now()
	bound := start.Add(2*time.Duration(fleetConfig.QueryFrequency)*time.Second + refreshDue)
	for f.r.RequestCount() == 0 {
		if f.clock.Now().After(bound) {
			t.Fatalf("no responder request in %v while the fetch time was rewritten: the fleet's queries were deferred past two query intervals", f.clock.Now().Sub(start))
		}
		if err := raw.Put(ctx, id, record.Encode(current, f.clock.Now().Add(time.Hour))); err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond)
		f.clock.Advance(10 * time.Minute)
		time.Sleep(50 * time.Millisecond)
	}
}
