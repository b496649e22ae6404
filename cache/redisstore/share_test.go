package redisstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/crypto/ocsp"

	"github.com/staplerkit/ocsp/config"
	"github.com/staplerkit/ocsp/internal/record"
	"github.com/staplerkit/ocsp/responder"
	"github.com/staplerkit/ocsp/stapler"
)

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

// revokedOn reports whether node i staples leaf j revoked.
func (f *fleet) revokedOn(i, j int) bool {
	resp, err := ocsp.ParseResponseForCert(f.staple(i, j), f.leaves[j].Cert, f.ca.Cert)
	return err == nil && resp.Status == ocsp.Revoked
}

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

// TestConflictingPushesAtTheSameTimesSettleOnTheRevocationWithoutPingPong:
// a good and a revoked answer with the same thisUpdate and producedAt
// (the responder's clock stood still while the status changed) pushed to
// two nodes at once: the store keeps the revocation whoever writes last,
// both nodes staple it, and then the nodes stop writing (no ping-pong).
func TestConflictingPushesAtTheSameTimesSettleOnTheRevocationWithoutPingPong(t *testing.T) {
	f := newFleet(t, 2, 1)
	f.settle("every node to staple", 500*time.Millisecond, func() bool { return f.allStapledSince(f.clock.Now().Add(-time.Hour)) })
	leaf := f.leaves[0]
	id := stapler.CertificateID(leaf.Cert.Raw)
	ctx := context.Background()
	f.clock.Advance(time.Minute)
	at := f.clock.Now()
	f.r.SetClock(func() time.Time { return at })
	good, _, err := fetchDirect(f, leaf)
	if err != nil {
		t.Fatal(err)
	}
	f.r.SetStatus(leaf.Cert.SerialNumber, responder.Revoked(at.Add(-time.Minute), ocsp.KeyCompromise))
	revoked, _, err := fetchDirect(f, leaf)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 2)
	go func() { _, err := f.nodes[1].Push(ctx, id, good); done <- err }()
	go func() { _, err := f.nodes[0].Push(ctx, id, revoked); done <- err }()
	<-done
	<-done
	f.waitFor("both nodes to staple the revocation and Redis to hold it", func() bool {
		st, _ := f.storedStatus(0)
		return f.revokedEverywhere(0) && st == ocsp.Revoked
	})
	// Quiet: no more writes of the certificate's response.
	time.Sleep(2 * time.Second)
	writes := shareAnnouncements(t, f, id)
	time.Sleep(3 * time.Second)
	if n := writes.Load(); n > 0 {
		t.Fatalf("%d writes in 3 s after the fleet settled: the nodes ping-pong", n)
	}
	v, _ := New(f.redis.Client(), "fleet:").Get(ctx, id)
	if !bytes.Contains(v, revoked) {
		t.Fatal("Redis does not hold the pushed revocation")
	}
}

// shareAnnouncements counts, from now on, the announcements of key on
// the fleet's change channel (the writes of its value).
func shareAnnouncements(t *testing.T, f *fleet, key string) *atomic.Int32 {
	var n atomic.Int32
	ps := f.redis.Client().Subscribe(context.Background(), "fleet:changes")
	if _, err := ps.Receive(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ps.Close() })
	go func() {
		for msg := range ps.Channel() {
			if strings.HasSuffix(msg.Payload, " "+key) {
				n.Add(1)
			}
		}
	}()
	return &n
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

// TestAnUnverifiedResponseIsNeverSharedWithTheFleet protects "an unverified
// answer is neither stored nor shared" (stapler/apply.go) on the path of a
// response waiting to be shared outside a refresh.
//
// A node gets a pushed (verified) response while another server holds the
// certificate's lease: the push waits to be shared (retries from 1 s).
// Meanwhile skip_verify is turned on for the certificate and a Test brings
// a newer answer from a signer the node cannot verify, installed
// unverified (and, as apply says, neither stored nor shared). When the lease is free, the
// waiting share must not write the unverified staple to the store: the
// share takes whatever the certificate holds then, verified or not.
func TestAnUnverifiedResponseIsNeverSharedWithTheFleet(t *testing.T) {
	f := newFleet(t, 0, 1)
	leaf := f.leaves[0]
	id := stapler.CertificateID(leaf.Cert.Raw)
	ctx := context.Background()
	s := f.addNode()
	f.waitFor("the node to staple", func() bool { return f.staple(0, 0) != nil })

	store := New(f.redis.Client(), "fleet:")
	key := store.redisKey(id)
	// Another server holds the lease (it is querying).
	var token string
	f.waitFor("the node's first refresh to release the lease", func() bool {
		tok, ok, err := store.Lease(ctx, id, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		token = tok
		return ok
	})
	// A verified response is pushed: it waits for the lease.
	f.clock.Advance(time.Minute)
	pushed, _, err := fetchDirect(f, leaf)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Push(ctx, id, pushed); err != nil {
		t.Fatal(err)
	}
	// skip_verify is turned on, and a Test's answer, newer, signed by a
	// signer the node cannot verify, is installed unverified, neither
	// stored nor shared.
	if err := s.SetStapling(id, config.Stapling{Enabled: true, SkipVerify: true}); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(time.Minute)
	f.r.SetFault(responder.Fault{Kind: responder.FaultUnauthorizedSigner})
	if _, err := s.Test(ctx, id); err != nil {
		t.Fatal(err)
	}
	unverified := f.staple(0, 0)
	if bytes.Equal(unverified, pushed) {
		t.Fatal("the Test's unverified answer was not installed")
	}
	// The other server is done.
	if err := store.Release(ctx, id, token); err != nil {
		t.Fatal(err)
	}
	// The share waiting since the push retries within a few seconds.
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		value, err := f.redis.Client().Get(ctx, key).Bytes()
		if err != nil && err != redis.Nil {
			t.Fatal(err)
		}
		if bytes.Contains(value, unverified) {
			t.Fatalf("the unverified staple (installed under skip_verify by a Test) was written to the fleet's store by the share of the response pushed before it")
		}
		time.Sleep(100 * time.Millisecond)
	}
}
