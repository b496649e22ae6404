package redisstore

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/staplerkit/ocsp/cache/redisstore/redistest"
)

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
