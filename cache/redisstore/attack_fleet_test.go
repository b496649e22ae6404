package redisstore

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/staplerkit/ocsp/responder"
	"github.com/staplerkit/ocsp/stapler"
)

// AttackPlausibleStateOutlivesTheStaple: the fleet state is not signed, and
// a state passes as plausible when its next attempt is within one
// query_frequency (plus skew) of its last attempt. Written shortly before
// the regular refresh (here 40 minutes after a fetch of a response valid 90 minutes), a
// state claiming an attempt "now" and the next one query_frequency later
// is adopted by every node, and no node queries before it: the staple every
// node holds expires at cache_ttl and the whole fleet serves no staple for
// about 45 minutes (must-staple handshakes refused), with the responder
// healthy. Rewritten once an hour, it keeps the fleet unstapled. A node
// plans its own failures before the held staple expires (beforeExpiry); a
// state from the store must not plan past it either.
func TestAttackPlausibleStateOutlivesTheStaple(t *testing.T) {
	f := newFleet(t, 0, 1)
	// A responder whose responses are valid 90 minutes (thisUpdate a minute
	// back): the staple is planned for refresh at its half-life, 44 minutes
	// after the fetch, and expires 89 minutes after it.
	f.r.SetWindow(responder.Window{Backdate: time.Minute, Lifetime: 90 * time.Minute})
	f.addNode()
	f.addNode()
	f.settle("every node to staple", 500*time.Millisecond, func() bool { return f.allStapledSince(f.clock.Now().Add(-time.Hour)) })
	fetched := f.clock.Now()
	ctx := context.Background()
	raw := New(f.redis.Client(), "fleet:")
	id := stapler.CertificateID(f.leaves[0].Cert.Raw)

	f.clock.Advance(40 * time.Minute)
	now := f.clock.Now()
	forged := fmt.Appendf(nil, `{"tries": 0, "failed": false, "last_error": "tryLater", "last_attempt": %d, "next": %d}`,
		now.UnixNano(), now.Add(time.Hour+4*time.Minute).UnixNano())
	if err := raw.Put(ctx, id+".state", forged); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // the announcement reaches both nodes
	for i, s := range f.nodes {
		st, _ := s.StatusOf(id)
		t.Logf("after forging: node %d: state %s queries %d last error %q next refresh %v (now %v) staple expires %v", i, st.State, st.Queries, st.LastError, st.NextRefresh, f.clock.Now(), st.StapleExpires)
	}

	// Follow the clock to 1h40m after the fetch (11 minutes past the
	// staple's expiry, before the forged next attempt), letting planned
	// work run.
	end := fetched.Add(100 * time.Minute)
	for f.clock.Now().Before(end) {
		f.clock.Advance(30 * time.Second)
		time.Sleep(20 * time.Millisecond)
	}
	// No more clock: whatever was planned before now has run or is running.
	// Every node must hold a current staple.
	deadline := time.Now().Add(30 * time.Second)
	for {
		all := true
		for i := range f.nodes {
			if f.staple(i, 0) == nil {
				all = false
			}
		}
		if all {
			for i, s := range f.nodes {
				st, _ := s.StatusOf(id)
				t.Logf("end: node %d: state %s queries %d last error %q next refresh %v last success %v", i, st.State, st.Queries, st.LastError, st.NextRefresh, st.LastSuccess)
			}
			return
		}
		if time.Now().After(deadline) {
			for i, s := range f.nodes {
				st, _ := s.StatusOf(id)
				t.Logf("node %d: state %s stapled %v queries %d last error %q", i, st.State, st.Stapled, st.Queries, st.LastError)
			}
			t.Fatalf("%v after the fetch (the staple expired 89 minutes after it), with a healthy responder: the fleet serves no staple, because every node follows a forged fleet state that plans the next query past the staple's expiry", f.clock.Now().Sub(fetched))
		}
		time.Sleep(50 * time.Millisecond)
	}
}
