package redisstore

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/staplerkit/ocsp/config"
	"github.com/staplerkit/ocsp/internal/record"
	"github.com/staplerkit/ocsp/responder"
	"github.com/staplerkit/ocsp/stapler"
)

func TestTamperedValuesAreRejectedAndReplaced(t *testing.T) {
	f := newFleet(t, 3, 2)
	f.settle("every node to staple", 500*time.Millisecond, func() bool { return f.allStapledSince(f.clock.Now().Add(-time.Hour)) })
	ctx := context.Background()
	raw := New(f.redis.Client(), "fleet:")
	id0 := stapler.CertificateID(f.leaves[0].Cert.Raw)
	stateKey := id0 + ".state"
	other, _ := raw.Get(ctx, stapler.CertificateID(f.leaves[1].Cert.Raw))
	f.r.SetWindow(responder.Window{Backdate: 3 * time.Hour, Lifetime: time.Hour})
	expired, _, _ := fetchDirect(f, f.leaves[0])
	f.r.SetWindow(responder.Window{})
	value := func(v []byte) func() []byte { return func() []byte { return v } }
	// A state that claims the latest attempt, made when it is written.
	state := func(tries int, next func() time.Time) func() []byte {
		return func() []byte {
			return fmt.Appendf(nil, `{"tries": %d, "failed": true, "last_error": "tampered", "last_attempt": %d, "next": %d}`,
				tries, f.clock.Now().UnixNano(), next().UnixNano())
		}
	}
	// Values no server could have written, put there with Redis commands.
	wrongType := func(key string) func() {
		return func() {
			k := raw.redisKey(key)
			if err := f.redis.Client().Del(ctx, k).Err(); err != nil {
				t.Fatal(err)
			}
			if err := f.redis.Client().HSet(ctx, k, "field", "value").Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	oversized := func(key string) func() {
		return func() {
			if err := f.redis.Client().Set(ctx, raw.redisKey(key), bytes.Repeat([]byte("k"), 40<<10), 0).Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, tc := range []struct {
		name, key string
		value     func() []byte
		write     func() // instead of value
	}{
		{"a hash where the response belongs", id0, nil, wrongType(id0)},
		{"a hash where the state belongs", stateKey, nil, wrongType(stateKey)},
		{"a 40 KiB value", id0, nil, oversized(id0)},
		{"a 40 KiB state", stateKey, nil, oversized(stateKey)},
		{"garbage", id0, value([]byte("garbage")), nil},
		{"another certificate's response", id0, value(other), nil},
		{"an expired response", id0, value(record.Encode(expired, f.clock.Now().Add(-3*time.Hour))), nil},
		// The fleet state is not signed; one no server could have written
		// must not be adopted either.
		{"a garbage state", stateKey, value([]byte("{garbage")), nil},
		{"a state with the next query in the year 2200", stateKey, state(1, func() time.Time { return time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC) }), nil},
		{"a state with more tries than recovery_max_tries", stateKey, state(1000, func() time.Time { return f.clock.Now().Add(time.Minute) }), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.write != nil {
				tc.write()
			} else if err := raw.Put(ctx, tc.key, tc.value()); err != nil {
				t.Fatal(err)
			}
			// The tampered value is announced; no node adopts it.
			time.Sleep(100 * time.Millisecond)
			good := f.staple(0, 0)
			for i, s := range f.nodes {
				if !bytes.Equal(f.staple(i, 0), good) {
					t.Fatalf("node %d adopted the tampered value", i)
				}
				if st, _ := s.StatusOf(id0); st.State != stapler.StateGood || st.Tries != 0 || st.LastError != "" {
					t.Fatalf("node %d adopted the tampered state: %+v", i, st)
				}
			}
			// At the next refresh it is replaced by a fresh response and a
			// sound state, for one request, and no node calls it a store
			// outage.
			before := f.clock.Now()
			requests := f.r.CountFor(f.leaves[0].Cert.SerialNumber)
			f.clock.Advance(refreshDue)
			f.settle("the refresh", time.Second, func() bool { return f.allStapledSince(before) })
			if n := f.r.CountFor(f.leaves[0].Cert.SerialNumber) - requests; n != 1 {
				t.Fatalf("the refresh made %d requests, want 1", n)
			}
			for i, s := range f.nodes {
				if st, _ := s.StatusOf(id0); st.StoreError != "" {
					t.Fatalf("node %d calls the value a store outage: %s", i, st.StoreError)
				}
			}
			value, err := raw.Get(ctx, id0)
			if err != nil {
				t.Fatal(err)
			}
			stored, _, err := record.Decode(value)
			if err != nil {
				t.Fatalf("store not repaired: %v", err)
			}
			if _, err := ocsp.ParseResponseForCert(stored, f.leaves[0].Cert, f.ca.Cert); err != nil {
				t.Fatalf("store holds a bad response: %v", err)
			}
			// The holder writes the state after the response: wait for it.
			f.settle("the state to be repaired", 0, func() bool {
				value, err := raw.Get(ctx, stateKey)
				var repaired struct {
					Tries     int    `json:"tries"`
					Failed    bool   `json:"failed"`
					LastError string `json:"last_error"`
					Next      int64  `json:"next"`
				}
				f.why = fmt.Sprintf("%s (%v)", value, err)
				return err == nil && json.Unmarshal(value, &repaired) == nil &&
					repaired.Tries == 0 && !repaired.Failed && repaired.LastError == "" && repaired.Next == 0
			})
		})
	}
}

// TestAForgedLeaseStopsNoQuery: a server that does not get a
// certificate's lease (SET NX) waits leaseWait and looks again, forever:
// nothing bounds how long a lease may be held or checks its TTL. The store
// is "never trusted" (README), yet one lease key written without a TTL (or
// with a year's) by anyone who can write to Redis — or left behind by a
// restore that dropped TTLs — stops every server from querying that
// certificate: its staple expires on every server (refused under
// must-staple), while the responder answers. (Control: the same test with
// the forged lease given a 1 ms TTL passes in 0.3 s.)
func TestAForgedLeaseStopsNoQuery(t *testing.T) {
	f := newFleet(t, 2, 2)
	f.settle("every node to staple", 500*time.Millisecond, func() bool { return f.allStapledSince(f.clock.Now().Add(-time.Hour)) })
	orig, err := ocsp.ParseResponseForCert(f.staple(0, 0), f.leaves[0].Cert, f.ca.Cert)
	if err != nil {
		t.Fatal(err)
	}
	id := stapler.CertificateID(f.leaves[0].Cert.Raw)
	attacker := f.redis.Client()
	if err := attacker.Set(context.Background(), "fleet:{"+id+"}:lease", "forged", 0).Err(); err != nil {
		t.Fatal(err)
	}
	fresh := func() bool {
		for i := range f.nodes {
			resp, err := ocsp.ParseResponseForCert(f.staple(i, 0), f.leaves[0].Cert, f.ca.Cert)
			if err != nil || !resp.ThisUpdate.After(orig.ThisUpdate) {
				return false
			}
		}
		return true
	}
	// The clock runs on, in small steps, past the staple's expiry.
	step := orig.NextUpdate.Sub(f.clock.Now()) / 400
	for f.clock.Now().Before(orig.NextUpdate.Add(time.Minute)) && !fresh() {
		f.clock.Advance(step)
		time.Sleep(10 * time.Millisecond)
	}
	f.waitFor("a fresh staple for c0 on every node, its old one expired", fresh)
}

// TestAWrongTypeLeaseKeyDelaysAPushedRevocationAtMostOneLeaseTTL: someone
// writes a hash, with no expiry, where a certificate's lease belongs. The
// lease script cuts it to the lease TTL, so a revocation pushed to one node
// reaches the other within about one lease TTL (6 s here), with the clock
// standing still, and the pushing node reports no store error.
func TestAWrongTypeLeaseKeyDelaysAPushedRevocationAtMostOneLeaseTTL(t *testing.T) {
	cfg := fleetConfig
	cfg.ResponseTimeout = 2
	f := newFleet(t, 0, 1)
	f.addNodeWith(cfg)
	f.addNodeWith(cfg)
	f.settle("every node to staple", 500*time.Millisecond, func() bool { return f.allStapledSince(f.clock.Now().Add(-time.Hour)) })
	f.waitFor("no lease held", func() bool {
		return f.redis.Client().Exists(context.Background(), f.leafKey(0)+":lease").Val() == 0
	})
	ctx := context.Background()
	if err := f.redis.Client().HSet(ctx, f.leafKey(0)+":lease", "x", "y").Err(); err != nil {
		t.Fatal(err)
	}
	leaf := f.leaves[0]
	f.clock.Advance(time.Minute)
	f.r.SetStatus(leaf.Cert.SerialNumber, responder.Revoked(f.clock.Now(), ocsp.KeyCompromise))
	revoked, _, err := fetchDirect(f, leaf)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := f.nodes[0].Push(ctx, stapler.CertificateID(leaf.Cert.Raw), revoked); err != nil {
		t.Fatal(err)
	}
	f.waitFor("the revocation on node 1", func() bool { return f.revokedEverywhere(0) })
	if took := time.Since(start); took > 20*time.Second {
		t.Fatalf("the pushed revocation took %v to reach node 1 (lease TTL 6 s)", took)
	}
	if st, _ := f.nodes[0].StatusOf(stapler.CertificateID(leaf.Cert.Raw)); st.StoreError != "" {
		t.Fatalf("store_error %q after the forged lease expired", st.StoreError)
	}
}

// TestAForgedStateHidesNoRevocation: the fleet's state is "clamped"
// (plausible: last_attempt at most now+skew, next at most last_attempt +
// the query interval + skew), but nothing stops it being written again and
// again: a writer that keeps the state's next attempt an interval ahead
// makes every server skip every refresh (the fleet "tried" and plans
// later), so no server asks the responder until the staple nears expiry
// (here 24 h). A revocation is stapled as good on every server for six
// refresh intervals and more (README: the store is "never trusted").
// (Control: without the forger the revocation is stapled within the first
// hour; the test then passes in 1.3 s.)
func TestAForgedStateHidesNoRevocation(t *testing.T) {
	f := newFleet(t, 2, 1)
	f.settle("every node to staple", 500*time.Millisecond, func() bool { return f.allStapledSince(f.clock.Now().Add(-time.Hour)) })
	leaf := f.leaves[0]
	id := stapler.CertificateID(leaf.Cert.Raw)
	attacker := f.redis.Client()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	forge := func() {
		last := f.clock.Now().Add(4 * time.Minute)
		v, _ := json.Marshal(map[string]any{"tries": 0, "failed": false, "last_attempt": last.UnixNano(), "next": last.Add(time.Hour + 4*time.Minute).UnixNano()})
		attacker.Set(ctx, "fleet:{"+id+"}.state", v, 0)
	}
	forge()
	wg.Go(func() {
		for ctx.Err() == nil {
			forge()
			time.Sleep(2 * time.Millisecond)
		}
	})
	f.r.SetStatus(leaf.Cert.SerialNumber, responder.Revoked(f.clock.Now(), ocsp.KeyCompromise))
	revoked := func() bool {
		for i := range f.nodes {
			resp, err := ocsp.ParseResponseForCert(f.staple(i, 0), leaf.Cert, f.ca.Cert)
			if err == nil && resp.Status == ocsp.Revoked {
				return true
			}
		}
		return false
	}
	start := f.clock.Now()
	for f.clock.Now().Sub(start) < 6*time.Hour && !revoked() {
		f.clock.Advance(time.Minute)
		time.Sleep(20 * time.Millisecond)
	}
	if !revoked() {
		t.Fatalf("no server learned the revocation in %v of refreshes every hour: a forged fleet state, rewritten, holds every query off", f.clock.Now().Sub(start))
	}
}

// A fleet state from the store (unsigned: anyone who can write to Redis can
// write one) never plans a node's next query past the expiry of the staple
// it holds, as a node's own failures never do (beforeExpiry). Found when a
// state claiming an attempt "now" and the next one query_frequency later,
// written shortly before the regular refresh (here 40 minutes after a
// fetch of a response valid 90 minutes), passed as plausible and was
// adopted by every node: no node queried, every staple expired at
// cache_ttl, and the fleet served no staple for about 45 minutes
// (must-staple handshakes refused) with the responder healthy; rewritten
// once an hour, it kept the fleet unstapled.
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

// A fetch time in the store (metadata: anyone who can write to Redis can
// set it) never moves a node's next query later than its own fetch of the
// same response would, so a revocation is stapled within about cache_ttl
// (3600 s here), which is what an operator sets cache_ttl for. Found when a
// node adopted the very response it held again when the store said it was
// fetched later, and planned from that time: re-announcing the current good
// response with "fetched: now" every 20 minutes kept every node from
// querying before the response's half-life (12 h for a one-day response).
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
