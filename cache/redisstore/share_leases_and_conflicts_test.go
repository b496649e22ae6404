package redisstore

import (
	"bytes"
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/staplerkit/ocsp/responder"
	"github.com/staplerkit/ocsp/stapler"
)

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
