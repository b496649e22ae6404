package redisstore

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

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
