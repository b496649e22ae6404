package redisstore

import (
	"context"
	"testing"
	"time"

	"github.com/staplerkit/ocsp/stapler"
)

// TestLeaseWaitPlansAheadInStatus: a node that finds another holding the
// lease plans its next look after the lease, and its status says so: the
// next refresh is never a time already past.
func TestLeaseWaitPlansAheadInStatus(t *testing.T) {
	f := newFleet(t, 1, 1)
	start := f.clock.Now().Add(-time.Hour)
	f.settle("the node to staple", 500*time.Millisecond, func() bool { return f.allStapledSince(start) })
	id := stapler.CertificateID(f.leaves[0].Cert.Raw)
	// Another server holds the lease (and never writes), once the node has
	// released it.
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
		_, ok, err := New(f.redis.Client(), "fleet:").Lease(context.Background(), id, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the node never released its lease")
		}
	}
	f.clock.Advance(refreshDue)
	deadline := time.Now().Add(time.Minute)
	for {
		st, err := f.nodes[0].StatusOf(id)
		if err != nil {
			t.Fatal(err)
		}
		now := f.clock.Now()
		if st.NextRefresh.Time.Before(now.Add(-time.Second)) { // HTTP dates have whole seconds
			t.Fatalf("next_refresh %v is in the past (now %v)", st.NextRefresh.Time, now)
		}
		if st.NextRefresh.Time.After(now) {
			// The lease was found taken: the node looks again after it.
			if d := st.NextRefresh.Time.Sub(now); d > time.Duration(fleetConfig.ResponseTimeout+2)*time.Second {
				t.Fatalf("next_refresh in %v, want within the lease wait", d)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("next_refresh never moved ahead of %v (status %+v)", now, st)
		}
		time.Sleep(10 * time.Millisecond)
	}
	f.expectRequestsPerLeaf(1)
}
