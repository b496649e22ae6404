package redisstore

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/crypto/ocsp"

	"github.com/staplerkit/ocsp/cache/redisstore/redistest"
	"github.com/staplerkit/ocsp/internal/record"
	"github.com/staplerkit/ocsp/responder"
	"github.com/staplerkit/ocsp/stapler"
)

func TestSubscribeSeesOthersChangesOnly(t *testing.T) {
	r := redistest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, b := New(r.Client(), "test:"), New(r.Client(), "test:")
	got := make(chan string, 10)
	done := make(chan error, 1)
	go func() { done <- a.Subscribe(ctx, func(key string) { got <- key }) }()
	// The subscription says when it is live: what was announced before it
	// may have been missed (the empty key).
	select {
	case key := <-got:
		if key != "" {
			t.Fatalf("notified of %q before the subscription was live", key)
		}
	case <-time.After(time.Minute):
		t.Fatal("the subscription never started")
	}
	a.Put(ctx, "own", []byte("x"))
	b.Put(ctx, "theirs", []byte("y"))
	select {
	case key := <-got:
		if key != "theirs" {
			t.Fatalf("notified of %q", key)
		}
	case <-time.After(time.Minute):
		t.Fatal("no notification")
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Subscribe returned %v", err)
	}
	select {
	case key := <-got:
		t.Fatalf("notified of %q", key)
	default:
	}
}

// keyRecorder records every key a subscribed Store passes on.
type keyRecorder struct {
	mu    sync.Mutex
	heard []string
}

func (r *keyRecorder) add(k string) { r.mu.Lock(); r.heard = append(r.heard, k); r.mu.Unlock() }

func (r *keyRecorder) count(k string) (n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, h := range r.heard {
		if h == k {
			n++
		}
	}
	return n
}

// subscribeRecorder subscribes s to a keyRecorder and returns it once the
// subscription is live.
func subscribeRecorder(t *testing.T, srv *redistest.Server, s *Store) *keyRecorder {
	t.Helper()
	r := &keyRecorder{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Subscribe(ctx, r.add) }()
	t.Cleanup(func() { cancel(); <-done })
	// The subscription is live when it says that what came before it was
	// not heard; the recorder forgets that report.
	waitFor(t, "the subscription", func() bool { return r.count("") == 1 })
	r.mu.Lock()
	r.heard = nil
	r.mu.Unlock()
	return r
}

// TestALostSubscriptionCatchesUpFromTheLog: a change Put while a
// subscriber's subscription is down (Redis dropped it: CLIENT KILL) is
// passed on from the change log once the subscription is back, and no
// missed changes are reported; with the log gone (DEL), they are.
func TestALostSubscriptionCatchesUpFromTheLog(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	const prefix = "fleet:"
	b := New(srv.Client(), prefix)
	c := New(srv.Client(), prefix)
	r := subscribeRecorder(t, srv, b)
	admin := srv.Client()

	if err := admin.ClientKillByFilter(ctx, "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	// b is away for its resubscription pause.
	if err := c.Put(ctx, "during", []byte("v")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b hearing the change made while it was away", func() bool { return r.count("during") == 1 })
	if n := r.count(""); n > 0 {
		t.Fatalf("a subscription lost for a moment reported missed changes %d time(s)", n)
	}

	// The log wiped: the mark is gone, changes may have been missed.
	if err := admin.Del(ctx, prefix+"log").Err(); err != nil {
		t.Fatal(err)
	}
	if err := admin.ClientKillByFilter(ctx, "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b reporting missed changes", func() bool { return r.count("") == 1 })
}

// goroutinesRunning counts the goroutines whose stack mentions substr.
func goroutinesRunning(substr string) int {
	buf := make([]byte, 1<<22)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, substr) {
			n++
		}
	}
	return n
}

// TestCloseDuringResubscriptionLeaksNothing: Close while the
// subscription is being made again (Redis stopped answering, then killed)
// leaves no subscriber goroutine behind.
func TestCloseDuringResubscriptionLeaksNothing(t *testing.T) {
	f := newFleet(t, 0, 2)
	s := f.addNode()
	waitFor(t, "a subscriber", func() bool { return goroutinesRunning("redisstore.(*Store).listen") > 0 })
	f.redis.Stop()
	time.Sleep(2500 * time.Millisecond) // a ping goes unanswered: resubscribing
	f.redis.Continue()
	f.redis.Kill()
	time.Sleep(500 * time.Millisecond)
	s.Close()
	waitFor(t, "the subscriber goroutines to end after Close", func() bool {
		return goroutinesRunning("redisstore.(*Store).listen") == 0 && goroutinesRunning("redisstore.(*Store).Subscribe") == 0
	})
}

// gatedStore is a Store whose subscription starts only when gate is
// closed: the window between a server's first reads and its subscription
// being live, held open.
type gatedStore struct {
	*Store
	gate chan struct{}
}

func (g gatedStore) Subscribe(ctx context.Context, f func(key string)) error {
	select {
	case <-g.gate:
	case <-ctx.Done():
		return ctx.Err()
	}
	return g.Store.Subscribe(ctx, f)
}

// A server that starts while another holds a certificate's lease waits
// for the response the holder will store. When the holder stores and
// announces it before the new server's subscription is live, the
// announcement is not heard; the subscription, once live, says so, and the
// server reads the store again and staples the response with its clock
// standing still (it does not wait for its planned look).
func TestAResponseAnnouncedBeforeTheSubscriptionIsLiveIsAdopted(t *testing.T) {
	f := newFleet(t, 0, 1)
	ctx := context.Background()
	leaf := f.leaves[0]
	id := stapler.CertificateID(leaf.Cert.Raw)
	raw := New(f.redis.Client(), "fleet:")

	// Another server holds the lease: it is asking the responder.
	if err := f.redis.Client().Set(ctx, raw.leaseKey(id), "another server", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	gate := make(chan struct{})
	logs := newLogCounter(testLogger().Handler())
	s, err := stapler.New(fleetConfig,
		stapler.WithClock(f.clock),
		stapler.WithLogger(slog.New(logs)),
		stapler.WithStore(gatedStore{New(f.redis.Client(), "fleet:"), gate}),
		stapler.WithColdWait(10*time.Millisecond),
		stapler.WithRateLimit(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.Wrap(&tls.Config{Certificates: []tls.Certificate{leaf.Certificate}})
	waitFor(t, "the new server to find the lease and wait", func() bool {
		st, err := s.StatusOf(id)
		return err == nil && st.Queries == 0 && st.NextRefresh.After(f.clock.Now())
	})

	// The holder stores its response and announces it: nobody hears.
	der, _, err := fetchDirect(f, leaf)
	if err != nil {
		t.Fatal(err)
	}
	if err := raw.Put(ctx, id, record.Encode(der, f.clock.Now())); err != nil {
		t.Fatal(err)
	}
	f.redis.Client().Del(ctx, raw.leaseKey(id))

	close(gate)
	waitFor(t, "the response to be stapled with the clock standing still", func() bool {
		st, err := s.StatusOf(id)
		return err == nil && st.Stapled
	})
	if st, _ := s.StatusOf(id); st.Queries != 0 {
		t.Fatalf("the server queried the responder %d time(s); it should have adopted the stored response", st.Queries)
	}
	if n := logs.count("ocsp: notifications from the fleet may have been missed"); n != 0 {
		t.Fatalf("a subscription made at the start was logged as missed notifications %d time(s)", n)
	}
}

func TestRevocationReachesEveryNodeAtOnce(t *testing.T) {
	f := newFleet(t, 3, 1)
	f.settle("every node to staple", 500*time.Millisecond, func() bool { return f.allStapledSince(f.clock.Now().Add(-time.Hour)) })
	leaf := f.leaves[0]
	f.r.SetStatus(leaf.Cert.SerialNumber, responder.Revoked(f.clock.Now(), ocsp.KeyCompromise))
	// One node learns it (an operator's test query); the others are told
	// through Redis, with the clock standing still: no refresh is due, so
	// only the notification can bring it. (Milliseconds on an idle machine;
	// the limit is for a hang.)
	start := time.Now()
	if _, err := f.nodes[0].Test(context.Background(), stapler.CertificateID(leaf.Cert.Raw)); err != nil {
		t.Fatal(err)
	}
	for i := range f.nodes {
		for {
			resp, err := ocsp.ParseResponseForCert(f.staple(i, 0), leaf.Cert, f.ca.Cert)
			if err == nil && resp.Status == ocsp.Revoked {
				break
			}
			if time.Since(start) > time.Minute {
				t.Fatalf("node %d still staples good %v after another node saw the revocation", i, time.Since(start))
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	t.Logf("every node staples the revocation %v after the first saw it", time.Since(start).Round(time.Millisecond))
	if n := f.r.CountFor(leaf.Cert.SerialNumber); n != 2 {
		t.Fatalf("%d responder requests, want 2 (the first fetch and the test)", n)
	}
}

// TestAClusterMessageIsPassedOnOnce: a subscriber on a 3-master Cluster
// listens on every master, so it hears every PUBLISH three times; it
// passes a change on once. A marker published after it through the same
// master, in the old unnumbered form (passed on every time it is heard),
// shows when all three copies of the change have arrived: each master
// delivers in the order it received.
func TestAClusterMessageIsPassedOnOnce(t *testing.T) {
	cluster := redistest.StartCluster(t, 3)
	var mu sync.Mutex
	heard := map[string]int{}
	count := func(key string) int {
		mu.Lock()
		defer mu.Unlock()
		return heard[key]
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		New(cluster.Client(), "fleet:").Subscribe(ctx, func(key string) {
			mu.Lock()
			heard[key]++
			mu.Unlock()
		})
	}()
	defer func() { cancel(); <-done }()
	wait := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(hangLimit)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	for _, m := range cluster.Masters {
		c := redis.NewClient(&redis.Options{Addr: m.Addr()})
		defer c.Close()
		wait("a subscriber on "+m.Addr(), func() bool {
			n, _ := c.PubSubNumSub(ctx, "fleet:changes").Result()
			return n["fleet:changes"] == 1
		})
	}

	if err := New(cluster.Client(), "fleet:").Put(ctx, "X", []byte("v")); err != nil {
		t.Fatal(err)
	}
	node := redis.NewClient(&redis.Options{Addr: cluster.MasterFor("fleet:{X}").Addr()})
	defer node.Close()
	if err := node.Publish(ctx, "fleet:changes", "marker end").Err(); err != nil {
		t.Fatal(err)
	}
	wait("the marker from every master", func() bool { return count("end") == 3 })
	if n := count("X"); n != 1 {
		t.Fatalf("the change was passed on %d times, want 1", n)
	}
	// The three first subscriptions say once, together, that what came
	// before them was not heard.
	if n := count(""); n != 1 {
		t.Fatalf("the first subscriptions reported missed changes %d times, want 1", n)
	}
}

// FuzzHear: no payload from pubsub makes the subscriber panic, and none
// passes on this Store's own changes or an empty key.
func FuzzHear(f *testing.F) {
	for _, seed := range []string{"", " ", "a b", "self/1 k", "other/1 k", "other k", "/ ", "other/ k k", "x/y/z k"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, payload string) {
		from, _, _ := strings.Cut(payload, " ")
		sender, _, _ := strings.Cut(from, "/")
		h := &hearer{self: "self", seen: map[string]bool{}, f: func(key string) {
			if key == "" {
				t.Fatalf("%q passed on an empty key", payload)
			}
			if sender == "self" {
				t.Fatalf("%q, this Store's own change, passed on", payload)
			}
		}}
		h.hear(payload)
		h.hear(payload)
	})
}

// TestForgedMessageIDsSuppressNoChange: the subscriber passes on
// a numbered message ("sender/n key") once, remembering the last 1,024 IDs,
// whoever published it. Sender IDs and their counters are in clear on the
// channel, so anyone allowed to PUBLISH (a Redis ACL can grant the channel
// without any key) reads a server's ID from one of its messages and
// publishes its next numbers first, with a decoy key: the server's real
// announcements (a revocation) are then dropped by every subscriber as
// duplicates. README: "Notifications are never dropped".
func TestForgedMessageIDsSuppressNoChange(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	const prefix = "fleet:"
	a := New(srv.Client(), prefix)    // the server that announces
	b := New(srv.Client(), prefix)    // a server that listens
	c := New(srv.Client(), prefix)    // another server, for a marker
	r := subscribeRecorder(t, srv, b) // b hears a's changes

	// The attacker listens too, to learn a's sender ID.
	spy := srv.Client()
	ps := spy.Subscribe(ctx, prefix+"changes")
	defer ps.Close()
	if _, err := ps.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.Put(ctx, "first", []byte("v")); err != nil {
		t.Fatal(err)
	}
	msg, err := ps.ReceiveMessage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	from, _, _ := strings.Cut(msg.Payload, " ")
	sender, _, _ := strings.Cut(from, "/")
	waitFor(t, "b hearing a's first change", func() bool { return r.count("first") == 1 })

	// The attacker claims a's next ten numbers (base 36, as a counts).
	for n := 2; n <= 11; n++ {
		if err := spy.Publish(ctx, prefix+"changes", fmt.Sprintf("%s/%s decoy", sender, strconv.FormatUint(uint64(n), 36))).Err(); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "b hearing the decoys", func() bool { return r.count("decoy") == 10 })

	// a announces a real change (its number 2), then c a marker: b hears
	// the marker after a's message, whatever became of it.
	if err := a.Put(ctx, "REVOKED", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if err := c.Put(ctx, "marker", []byte("v")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the marker", func() bool { return r.count("marker") == 1 })
	if r.count("REVOKED") != 1 {
		t.Fatal("a real change was dropped as a duplicate of an outsider's forged message ID")
	}
}

// TestOneOversizedPublishForcesNoResync: a subscription that is lost
// and made again is reported as missed changes (the empty key), and every
// server then reads every certificate's keys again. Anyone allowed to
// PUBLISH on the channel can make Redis drop every subscriber at will: one
// message larger than the pubsub client output buffer's hard limit (32 MB
// by default) disconnects each of them. Each such PUBLISH (one a second, the
// resubscription pause) costs every server a full resync (N store reads) —
// and, since a message published while the subscriber is away is lost,
// is also what turns real notifications into "missed" ones. An outsider's
// message should be at most one store read.
func TestOneOversizedPublishForcesNoResync(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	const prefix = "fleet:"
	b := New(srv.Client(), prefix)
	c := New(srv.Client(), prefix)
	r := subscribeRecorder(t, srv, b)
	spy := redis.NewClient(&redis.Options{Addr: srv.Addr(), WriteTimeout: hangLimit, ReadTimeout: hangLimit})
	defer spy.Close()

	big := "x/1 " + strings.Repeat("k", 33<<20)
	const rounds = 3
	for i := 0; i < rounds; i++ {
		if err := spy.Publish(ctx, prefix+"changes", big).Err(); err != nil {
			t.Fatal(err)
		}
		// Markers until b hears one (b may be away for its pause).
		marker := fmt.Sprintf("marker%d", i)
		waitFor(t, "b hearing "+marker, func() bool {
			if r.count(marker) > 0 {
				return true
			}
			c.Put(ctx, marker, []byte("v"))
			time.Sleep(100 * time.Millisecond)
			return r.count(marker) > 0
		})
	}
	if n := r.count(""); n > 0 {
		t.Fatalf("%d outsider PUBLISHes forced %d full resyncs (every certificate read again on every server)", rounds, n)
	}
}

// TestABusyRedisForcesNoResync: a subscription silent for a second
// is pinged, and a ping unanswered for another second is taken for a dead
// connection: it is closed, made again a second later, and reported as
// missed changes, so every server reads every certificate's keys again.
// A Redis that is alive but busy for two or three seconds (a slow script,
// a fork for BGSAVE on a large dataset, an fsync stall) answers late, not
// never: nothing was lost on the connection, yet every server drops it —
// losing what is published during the second it is away — and then sends
// its N reads to the Redis that just recovered, all servers at once.
func TestABusyRedisForcesNoResync(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	const prefix = "fleet:"
	b := New(srv.Client(), prefix)
	c := New(srv.Client(), prefix)
	r := subscribeRecorder(t, srv, b)
	busy := redis.NewClient(&redis.Options{Addr: srv.Addr(), ReadTimeout: hangLimit})
	defer busy.Close()
	// Redis is busy for 2.5 s: a script, well under lua-time-limit (5 s).
	script := `local t = redis.call('TIME')
while true do
  local n = redis.call('TIME')
  if (n[1]-t[1])*1000000 + (n[2]-t[2]) > 2500000 then return 1 end
end`
	if err := busy.Eval(ctx, script, nil).Err(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b hearing a marker", func() bool {
		c.Put(ctx, "marker", []byte("v"))
		time.Sleep(100 * time.Millisecond)
		return r.count("marker") > 0
	})
	if n := r.count(""); n > 0 {
		t.Fatalf("a Redis busy for 2.5 s made the subscriber report missed changes %d time(s): a full resync on every server", n)
	}
}

// TestHostilePublishKillsNoNode: messages on the change channel are from
// anyone; an over-long or malformed key is ignored, and every node keeps
// serving and hearing real changes.
func TestHostilePublishKillsNoNode(t *testing.T) {
	f := newFleet(t, 2, 1)
	f.settle("every node to staple", 500*time.Millisecond, func() bool { return f.allStapledSince(f.clock.Now().Add(-time.Hour)) })
	ctx := context.Background()
	id := stapler.CertificateID(f.leaves[0].Cert.Raw)
	for _, msg := range []string{
		"x " + strings.Repeat("a", 100),
		"x " + id + id + ".state",
		"x " + strings.ToUpper(id),
		"x " + strings.Repeat("\xff", 64),
		"x",
		"",
		strings.Repeat("z", 1<<20),
	} {
		if err := f.redis.Client().Publish(ctx, "fleet:changes", msg).Err(); err != nil {
			t.Fatal(err)
		}
	}
	// A real change after them is still heard by both nodes.
	f.r.SetStatus(f.leaves[0].Cert.SerialNumber, responder.Revoked(f.clock.Now(), ocsp.KeyCompromise))
	if _, err := f.nodes[0].Test(ctx, id); err != nil {
		t.Fatal(err)
	}
	f.settle("the revocation on every node", time.Millisecond, func() bool {
		for i := range f.nodes {
			resp, err := ocsp.ParseResponseForCert(f.staple(i, 0), f.leaves[0].Cert, f.ca.Cert)
			if err != nil || resp.Status != ocsp.Revoked {
				return false
			}
		}
		return true
	})
}
