package redisstore

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// deadlineRecorder is a go-redis hook on a real client that records the
// longest deadline a command was given (instrumentation, not a mock: the
// commands still go to the real server).
type deadlineRecorder struct {
	mu  sync.Mutex
	max time.Duration
	n   int
}

func (b *deadlineRecorder) DialHook(next redis.DialHook) redis.DialHook { return next }

func (b *deadlineRecorder) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func (b *deadlineRecorder) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if cmd.Name() == "getrange" {
			if d, ok := ctx.Deadline(); ok {
				b.mu.Lock()
				b.n++
				b.max = max(b.max, time.Until(d))
				b.mu.Unlock()
			}
		}
		return next(ctx, cmd)
	}
}

// TestAHangingRedisFirstReadGetsTheColdWaitNotTheStoreTimeout: RELIABILITY
// claims "a store read that hangs holds up a certificate's first fetch for
// at most the cold wait (the read is given no longer)". With the fleet
// (redisstore), a certificate's first fetch reads its shared keys with the
// store's 10 s timeout (fleet.go refresh: storeTimeout): with Redis
// hanging (open connection, no answer: a network cut, a failover under
// way), every certificate's first staple waits ~10 s however short the
// cold wait, and cold handshakes give up at the cold wait (the query has
// not started, so they do not wait on): unstapled, or refused under
// must-staple, for 10 s at every start with Redis unreachable, the
// responder up all along.
func TestAHangingRedisFirstReadGetsTheColdWaitNotTheStoreTimeout(t *testing.T) {
	f := newFleet(t, 0, 3)
	client := f.redis.Client()
	budget := &deadlineRecorder{}
	client.AddHook(budget)
	f.redis.Stop()
	t.Cleanup(f.redis.Continue)
	s := f.addNodeOn(fleetConfig, client) // cold wait 10 ms
	ctx, cancel := context.WithTimeout(context.Background(), hangLimit)
	defer cancel()
	if err := s.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	budget.mu.Lock()
	defer budget.mu.Unlock()
	if budget.n == 0 {
		t.Fatal("no store read seen")
	}
	// The cold wait is 10 ms; a fleet's first read gets at least 2 s (a
	// loaded machine's Redis is not taken for hung), never the store's
	// 10 s timeout.
	if budget.max > 2500*time.Millisecond {
		t.Fatalf("a first fetch's store read was given %v with Redis hanging; the cold wait is 10 ms, the floor 2 s", budget.max.Round(time.Millisecond))
	}
}

// TestAHangingRedisDoesNotSerializeFirstStaples: store health is per
// certificate, and each certificate's fleet refresh reads its keys with
// the store's 10 s timeout; a certificate counts as "down" only after its
// own read failed. With Redis hanging (a network cut, SIGSTOP, a failover
// under way: the connection open, nothing answering) and a client with
// go-redis's default options (3 s read timeout, 3 retries: a read hangs
// until the 10 s deadline), every certificate pays its own timeout before
// querying the responder alone, 16 at a time (the default workers): a
// server starting with 320 certificates has not stapled them all after a
// minute (measured: 160 certificates took 53 s; 320 fail the minute), though the responder answers at once. README:
// "With Redis down, each server queries the responder on its own ... and
// never stops stapling". Under must-staple, handshakes for the later
// certificates are refused all that time.
func TestAHangingRedisDoesNotSerializeFirstStaples(t *testing.T) {
	f := newFleet(t, 0, 320)
	f.redis.Stop()
	t.Cleanup(f.redis.Continue)
	// A production client: go-redis's defaults.
	client := redis.NewClient(&redis.Options{Addr: f.redis.Addr()})
	t.Cleanup(func() { client.Close() })
	s := f.addNodeOn(fleetConfig, client)
	ctx, cancel := context.WithTimeout(context.Background(), hangLimit)
	defer cancel()
	start := time.Now()
	if err := s.Ready(ctx); err != nil {
		stapled := 0
		for j := range f.leaves {
			if f.staple(0, j) != nil {
				stapled++
			}
		}
		t.Fatalf("with Redis hanging, %d of %d certificates stapled after %v (Ready: %v); the responder was up all along", stapled, len(f.leaves), time.Since(start).Round(time.Second), err)
	}
}
