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
