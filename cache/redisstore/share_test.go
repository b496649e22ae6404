package redisstore

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/staplerkit/ocsp/internal/record"
	"github.com/staplerkit/ocsp/responder"
	"github.com/staplerkit/ocsp/stapler"
)

// TestAPushedRevocationReachesTheFleetWhileSomeoneHoldsTheLeaseForever
// protects "a revocation one server learns reaches every server" and "no
// retry loop hammers Redis" against share()'s lease retry.
//
// Someone who can write Redis keeps a certificate's lease key set (re-SET
// every 200 ms; the lease script only cuts its TTL). A refresh queries
// around such a lease after twice the lease TTL (leaseStuck); share does
// not: a revocation pushed to one node is retried once a second, forever,
// and never reaches Redis nor the other nodes (with the clock standing
// still, no refresh helps; on a real clock they learn it at their next
// refresh, up to query_frequency later). Meanwhile the pushing node reads
// Redis, takes no lease and logs "sharing ours" every second, per
// certificate, forever.
func TestAPushedRevocationReachesTheFleetWhileSomeoneHoldsTheLeaseForever(t *testing.T) {
	cfg := fleetConfig
	cfg.ResponseTimeout = 1 // the shortest lease TTL: "stuck" past twice it
	f := newFleet(t, 0, 1)
	f.addNodeWith(cfg)
	f.addNodeWith(cfg)
	f.settle("every node to staple", 500*time.Millisecond, func() bool { return f.allStapledSince(f.clock.Now().Add(-time.Hour)) })
	leaf := f.leaves[0]
	id := stapler.CertificateID(leaf.Cert.Raw)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rc := f.redis.Client()
	holder := make(chan struct{})
	go func() {
		defer close(holder)
		for ctx.Err() == nil {
			rc.Set(ctx, f.leafKey(0)+":lease", "someone-else", time.Hour)
			time.Sleep(200 * time.Millisecond)
		}
	}()
	defer func() { cancel(); <-holder }()
	time.Sleep(300 * time.Millisecond)

	f.clock.Advance(time.Minute)
	f.r.SetStatus(leaf.Cert.SerialNumber, responder.Revoked(f.clock.Now(), ocsp.KeyCompromise))
	revoked, _, err := fetchDirect(f, leaf)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := f.nodes[0].Push(ctx, id, revoked); err != nil {
		t.Fatal(err)
	}
	// Generous: twice the lease TTL is a few seconds.
	deadline := start.Add(40 * time.Second)
	for {
		resp, err := ocsp.ParseResponseForCert(f.staple(1, 0), leaf.Cert, f.ca.Cert)
		if err == nil && resp.Status == ocsp.Revoked {
			break
		}
		if time.Now().After(deadline) {
			st, _ := f.storedStatus(0)
			t.Fatalf("a revocation pushed to node 0 has not reached node 1 %v later while someone holds the lease (Redis holds status %d); node 0 logged %q %d times meanwhile",
				time.Since(start).Round(time.Second), st, "ocsp: the store holds an older response than this server's; sharing ours",
				f.logs[0].count("ocsp: the store holds an older response than this server's"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestAPushReturnsAtOnceWhenRedisHangsAndIsSharedWhenItAnswers protects
// "Push and Test return without waiting on the store": the response is
// installed at once and shared by the notice workers, so a Redis that
// hangs (SIGSTOP) holds up neither the caller (an admin API request, a
// deploy job) nor the handshakes; once Redis answers again, the pushed
// response reaches the store.
func TestAPushReturnsAtOnceWhenRedisHangsAndIsSharedWhenItAnswers(t *testing.T) {
	f := newFleet(t, 1, 1)
	f.settle("the node to staple", 100*time.Millisecond, func() bool { return f.staple(0, 0) != nil })
	leaf := f.leaves[0]
	id := stapler.CertificateID(leaf.Cert.Raw)
	f.clock.Advance(10 * time.Minute)
	newer, _, err := fetchDirect(f, leaf)
	if err != nil {
		t.Fatal(err)
	}
	f.waitFor("the first refresh to release its lease", func() bool {
		return f.redis.Client().Exists(context.Background(), f.leafKey(0)+":lease").Val() == 0
	})
	f.redis.Stop()
	t.Cleanup(f.redis.Continue)
	ctx, cancel := context.WithTimeout(context.Background(), hangLimit)
	defer cancel()
	start := time.Now()
	_, err = f.nodes[0].Push(ctx, id, newer)
	took := time.Since(start)
	if err != nil {
		t.Fatalf("Push: %v", err)
	}
	// The store timeout is 10 s: only waiting on the hung store reaches it.
	if took > 10*time.Second {
		t.Fatalf("Push returned %v after Redis stopped answering: it waited on the store", took.Round(100*time.Millisecond))
	}
	if !bytes.Equal(f.staple(0, 0), newer) {
		t.Fatal("the pushed response is not stapled at once")
	}
	f.redis.Continue()
	waitFor(t, "the pushed response to reach the store", func() bool {
		v, err := New(f.redis.Client(), "fleet:").Get(context.Background(), id)
		if err != nil {
			return false
		}
		raw, _, err := record.Decode(v)
		return err == nil && bytes.Equal(raw, newer)
	})
}

// TestARefusedPushWritesNothingToTheFleet protects RELIABILITY's "a refused
// [pushed response] changes nothing" in a fleet.
//
// A refused push used to be recorded like a failed Test: the fleet state
// rewritten from this node's view and announced to every node (and, were
// this node's last attempt failed, a next try of time.Time{} erasing the
// fleet's planned retry).
func TestARefusedPushWritesNothingToTheFleet(t *testing.T) {
	f := newFleet(t, 2, 1)
	f.settle("every node to staple", 500*time.Millisecond, func() bool { return f.allStapledSince(f.clock.Now().Add(-time.Hour)) })
	leaf := f.leaves[0]
	id := stapler.CertificateID(leaf.Cert.Raw)
	older, _, err := fetchDirect(f, leaf)
	if err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(10 * time.Minute)
	if _, err := f.nodes[0].Test(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	f.waitFor("every node to staple the Test's response", func() bool { return f.allStapledSince(f.clock.Now().Add(-2 * time.Minute)) })
	time.Sleep(500 * time.Millisecond) // the Test's share is done
	writes := shareAnnouncements(t, f, id+".state")
	if _, err := f.nodes[0].Push(context.Background(), id, older); !errors.Is(err, stapler.ErrOlderResponse) {
		t.Fatalf("Push of an older response: %v, want ErrOlderResponse", err)
	}
	time.Sleep(time.Second)
	if n := writes.Load(); n > 0 {
		t.Fatalf("a refused Push wrote and announced the fleet state %d time(s)", n)
	}
}
