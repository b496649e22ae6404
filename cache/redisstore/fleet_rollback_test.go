package redisstore

import (
	"context"
	"crypto/tls"
	"fmt"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/staplerkit/ocsp/config"
	"github.com/staplerkit/ocsp/internal/record"
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
func TestAPlausibleStateNeverOutlivesTheStaple(t *testing.T) {
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

// AttackFreshFetchTimeDefeatsCacheTTL: the record's fetch time is store
// metadata, yet a node adopts the very response it holds again when the
// store says it was fetched later, and plans its next query (and the
// staple's cache_ttl expiry) from that time. Anyone who can write to Redis
// re-announces the current good response with "fetched: now" every 20
// minutes: no node ever queries again before the response's half-life
// (12 h for a one-day response; 3.5 days for a 7-day one), so a revocation
// is not picked up within cache_ttl (3600 s here), which is what an
// operator sets cache_ttl for. Expected: a store's fetch time never moves a
// node's refresh later than its own fetch of the same response would (or a
// later fetch time alone is no news), so the revocation is stapled within
// about cache_ttl.
func TestAFreshFetchTimeNeverExtendsCacheTTL(t *testing.T) {
	f := newFleet(t, 0, 1)
	for range 2 {
		s, err := stapler.New(fleetConfig,
			stapler.WithClock(f.clock), stapler.WithLogger(testLogger()),
			stapler.WithStore(New(f.redis.Client(), "fleet:")),
			stapler.WithColdWait(10*time.Millisecond), stapler.WithRateLimit(0, 0),
			stapler.WithDefaultStapling(config.Stapling{Enabled: true, CacheTTL: 3600}))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		f.nodes = append(f.nodes, s)
		f.cfgs = append(f.cfgs, s.Wrap(&tls.Config{Certificates: []tls.Certificate{f.leaves[0].Certificate}}))
	}
	f.settle("every node to staple", 500*time.Millisecond, func() bool { return f.allStapledSince(f.clock.Now().Add(-time.Hour)) })
	ctx := context.Background()
	raw := New(f.redis.Client(), "fleet:")
	id := stapler.CertificateID(f.leaves[0].Cert.Raw)
	value, err := raw.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	current, _, err := record.Decode(value)
	if err != nil {
		t.Fatal(err)
	}
	start := f.clock.Now()
	f.clock.Advance(5 * time.Minute)
	f.r.SetStatus(f.leaves[0].Cert.SerialNumber, responder.Revoked(f.clock.Now(), ocsp.KeyCompromise))

	// Three hours, the good response re-announced as fetched "now" every
	// 20 minutes.
	for step := 1; f.clock.Now().Before(start.Add(3 * time.Hour)); step++ {
		f.clock.Advance(time.Minute)
		time.Sleep(20 * time.Millisecond)
		if step%20 == 0 {
			if err := raw.Put(ctx, id, record.Encode(current, f.clock.Now())); err != nil {
				t.Fatal(err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	isRevoked := func(i int) bool {
		resp, err := ocsp.ParseResponseForCert(f.staple(i, 0), f.leaves[0].Cert, f.ca.Cert)
		return err == nil && resp.Status == ocsp.Revoked
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		all := true
		for i := range f.nodes {
			all = all && isRevoked(i)
		}
		if all {
			return
		}
		if time.Now().After(deadline) {
			for i, s := range f.nodes {
				st, _ := s.StatusOf(id)
				t.Logf("node %d: state %s queries %d next refresh %v staple expires %v", i, st.State, st.Queries, st.NextRefresh, st.StapleExpires)
			}
			t.Fatalf("3 h after a revocation, with cache_ttl 3600 s: %d responder requests in all, and the fleet still staples good, kept fresh by re-announced fetch times", len(f.r.Requests()))
		}
		time.Sleep(50 * time.Millisecond)
	}
}
