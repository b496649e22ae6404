package redisstore

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/crypto/ocsp"

	"github.com/staplerkit/ocsp/responder"
	"github.com/staplerkit/ocsp/stapler"
)

// TestAPushedRevocationIsSharedEvenWhenTheNodeClosesRightAfter protects
// "a response a node got outside a refresh (Push) is shared with the
// fleet" (docs/fleets.md, 7731d7e/bc20fdc) against Close.
//
// An operator's tooling pushes a revocation to one node and then restarts
// or stops it (a deploy, a scale-down): Push returned nil, so the
// revocation is taken as delivered. Sharing runs in the background
// (recorded queues a notice); Close cancels s.ctx, the notice workers
// exit, and the share in flight (or still queued) is dropped without a
// word: no other node learns the revocation before its own next refresh
// (up to query_frequency later; never, with the clock standing still, as
// here). Close should finish (bounded, like the lease release it already
// waits for) the shares queued before it, or at least log that a pushed
// response was not shared.
func TestAPushedRevocationIsSharedEvenWhenTheNodeClosesRightAfter(t *testing.T) {
	f := newFleet(t, 2, 1)
	f.settle("every node to staple", 500*time.Millisecond, func() bool { return f.allStapledSince(f.clock.Now().Add(-time.Hour)) })
	leaf := f.leaves[0]
	id := stapler.CertificateID(leaf.Cert.Raw)
	f.clock.Advance(time.Minute)
	f.r.SetStatus(leaf.Cert.SerialNumber, responder.Revoked(f.clock.Now(), ocsp.KeyCompromise))
	revoked, _, err := fetchDirect(f, leaf)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.nodes[0].Push(context.Background(), id, revoked); err != nil {
		t.Fatal(err)
	}
	f.nodes[0].Close()
	deadline := time.Now().Add(15 * time.Second)
	for !f.revokedOn(1, 0) {
		if time.Now().After(deadline) {
			st, _ := f.storedStatus(0)
			t.Fatalf("a revocation pushed to node 0 (Push returned nil) right before node 0 closed never reached the fleet: 15 s later Redis holds status %d and node 1 staples good", st)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// revokedOn reports whether node i staples leaf j revoked.
func (f *fleet) revokedOn(i, j int) bool {
	resp, err := ocsp.ParseResponseForCert(f.staple(i, j), f.leaves[j].Cert, f.ca.Cert)
	return err == nil && resp.Status == ocsp.Revoked
}

// TestSharesWaitingForADeadRedisBackOff protects "retries 1 s doubling to
// 1 min" (bc20fdc, docs/fleets.md: a response waiting to be shared is
// tried again every storeRetryInterval doubling up to maxShareRetry) and
// "no retry loop hammers Redis".
//
// Redis is killed (connection refused: fast failures, so the hung-store
// breaker never trips); 50 certificates each get a Test's response, which
// waits to be shared. Every retry is a notice, whose store read comes
// first: a read that fails must requeue the notice at the share's doubled
// wait (noticeRetry), not at storeRetryInterval, or each waiting
// certificate dials Redis every second for as long as it is down (with a
// thousand certificates, a thousand dials a second).
func TestSharesWaitingForADeadRedisBackOff(t *testing.T) {
	const certs = 50
	f := newFleet(t, 1, certs)
	f.settle("the node to staple", 500*time.Millisecond, func() bool { return f.allStapledSince(f.clock.Now().Add(-time.Hour)) })
	f.clock.Advance(10 * time.Minute)
	f.redis.Kill()
	s := f.nodes[0]
	for _, l := range f.leaves {
		if _, err := s.Test(context.Background(), stapler.CertificateID(l.Cert.Raw)); err != nil {
			t.Fatal(err)
		}
	}
	errs := func() uint64 {
		var n uint64
		for _, c := range s.Metrics().Store.Errors {
			n += c
		}
		return n
	}
	before := errs()
	const down = 16 * time.Second
	time.Sleep(down)
	got := errs() - before
	// Doubling from 1 s: tries at about 1, 3, 7, 15 s: 4 per
	// certificate in 16 s, against 16 at one a second; 8 is generous.
	if want := uint64(8 * certs); got > want {
		t.Errorf("%d failed store operations in %v for %d certificates waiting to share (%.1f per certificate, about one a second each); with the backoff doubling from 1 s, at most %d",
			got, down, certs, float64(got)/certs, want)
	}
	f.redis.Restart()
	f.waitFor("every Test's response to be shared once Redis is back", func() bool {
		for j := range f.leaves {
			if st, tu := f.storedStatus(j); st != ocsp.Good || tu.Before(f.clock.Now().Add(-5*time.Minute)) {
				f.why = fmt.Sprintf("c%d: stored status %d, thisUpdate %v", j, st, tu)
				return false
			}
		}
		return true
	})
}

// TestAShareWaitsForALeaseHeldWithinItsLifetime protects "a lease held
// more than twice its TTL is bypassed" (share, bc20fdc): only such a lease
// (one someone keeps writing) is written around, unfenced; a lease a
// server took moments ago (it is querying, and will store its answer) is
// waited for.
//
// m.shareBlocked, when the lease was first found held, is reset only by
// shareDone: never when the lease was found free, nor when the store
// failed meanwhile. A share that met a lease once, then waited out a Redis
// outage longer than twice the lease TTL, bypasses the very next lease it
// meets, however fresh: a legitimate holder's, mid-query. The write is
// unfenced and races the holder's own (fleet.go share: read, compare,
// then Put with no check): the store can go back.
func TestAShareWaitsForALeaseHeldWithinItsLifetime(t *testing.T) {
	cfg := fleetConfig
	cfg.ResponseTimeout = 1 // lease TTL 4 s: "held past its lifetime" after 8 s
	f := newFleet(t, 0, 1)
	f.addNodeWith(cfg)
	f.settle("the node to staple", 500*time.Millisecond, func() bool { return f.staple(0, 0) != nil })
	ctx := context.Background()
	leaf := f.leaves[0]
	id := stapler.CertificateID(leaf.Cert.Raw)
	leaseKey := f.leafKey(0) + ":lease"
	f.waitFor("the refresh to release its lease", func() bool { return f.redis.Client().Exists(ctx, leaseKey).Val() == 0 })
	_, before := f.storedStatus(0) // the first refresh's response
	f.clock.Advance(10 * time.Minute)

	// Another server holds the lease for a moment while this one shares a
	// Test's response.
	if err := f.redis.Client().Set(ctx, leaseKey, "node-b", 1500*time.Millisecond).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.nodes[0].Test(ctx, id); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	// The store refuses this fleet's commands for longer than twice the
	// lease TTL (an ACL change, a failover; a Redis restart does the same
	// but leaves no way to order the events below).
	admin := f.redis.Client()
	if err := admin.Do(ctx, "ACL", "SETUSER", "admin", "on", ">pw", "~*", "&*", "+@all").Err(); err != nil {
		t.Fatal(err)
	}
	if err := admin.Do(ctx, "AUTH", "admin", "pw").Err(); err != nil {
		t.Fatal(err)
	}
	admin = redis.NewClient(&redis.Options{Addr: f.redis.Addr(), Username: "admin", Password: "pw"})
	defer admin.Close()
	if err := admin.Do(ctx, "ACL", "SETUSER", "default", "-@all").Err(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Second)
	// Server C takes the lease, as a due refresh would, and the store
	// answers again.
	if err := admin.Set(ctx, leaseKey, "node-c", 4*time.Second).Err(); err != nil {
		t.Fatal(err)
	}
	if err := admin.Do(ctx, "ACL", "SETUSER", "default", "+@all").Err(); err != nil {
		t.Fatal(err)
	}
	tookAt := time.Now()
	time.Sleep(2500 * time.Millisecond)
	bypassed := f.logs[0].count("ocsp: the certificate's lease has been held past its lifetime; sharing without it")
	st, tu := f.storedStatus(0)
	if bypassed > 0 || tu.After(before) {
		t.Fatalf("%v after another server took the lease (its TTL is 4 s), this node wrote around it, unfenced (logged %q %d time(s); Redis holds status %d of %v, want the first refresh's, of %v, still)",
			time.Since(tookAt).Round(100*time.Millisecond), "held past its lifetime; sharing without it", bypassed, st, tu, before)
	}
	f.waitFor("the Test's response to be shared after the lease", func() bool { st, tu := f.storedStatus(0); return st == ocsp.Good && tu.After(before) })
}
