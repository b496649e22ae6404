package redisstore

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/staplerkit/ocsp/responder"
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

func TestRecoveryIsCountedFleetWide(t *testing.T) {
	f := newFleet(t, 3, 1)
	f.settle("every node to staple", 500*time.Millisecond, func() bool { return f.allStapledSince(f.clock.Now().Add(-time.Hour)) })
	leaf := f.leaves[0]
	f.r.SetSerialFault(leaf.Cert.SerialNumber, responder.Fault{Kind: responder.FaultHTTP503HTML})
	f.r.ResetRequests()
	statuses := func() []stapler.CertificateStatus {
		var out []stapler.CertificateStatus
		for _, s := range f.nodes {
			out = append(out, s.Status()[0])
		}
		return out
	}
	same := func(want func(stapler.CertificateStatus) bool) func() bool {
		return func() bool {
			all := statuses()
			for _, st := range all {
				if !want(st) || st.Tries != all[0].Tries || st.State != all[0].State || st.LastError != all[0].LastError {
					return false
				}
			}
			return true
		}
	}
	// The regular refresh fails, then each retry: one request each, fleet-wide,
	// and every node reports the same count. The clock moves only to the
	// next attempt, and stands still while the fleet agrees (through Redis),
	// so that a slow machine cannot let a further retry slip in.
	f.clock.Advance(refreshDue)
	for try := 1; try <= fleetConfig.RecoveryMaxTries; try++ {
		f.settle(fmt.Sprintf("every node to report try %d", try), 0, same(func(st stapler.CertificateStatus) bool {
			return st.Tries == try && strings.Contains(st.LastError, "503")
		}))
		if n := f.r.RequestCount(); n != try {
			t.Fatalf("after try %d, %d requests fleet-wide", try, n)
		}
		f.clock.Advance(fleetConfig.RecoveryInterval())
	}
	f.settle("every node to report failed", 0, same(func(st stapler.CertificateStatus) bool {
		return st.State == stapler.StateFailed
	}))
	if n := f.r.RequestCount(); n != fleetConfig.RecoveryMaxTries+1 {
		t.Fatalf("%d requests fleet-wide for a query and %d retries", n, fleetConfig.RecoveryMaxTries)
	}
	for i := range f.nodes {
		if f.staple(i, 0) == nil {
			t.Fatalf("node %d dropped the good staple", i)
		}
	}
}

// TestANodeJoiningAFailingFleetIsReady: a node joins a fleet
// whose responder is failing. Its first attempt reads the fleet's state
// (another node failed and planned the retry), adopts the failure (Status
// reports it), and stops there without releasing the certificate's
// pending fetch: Ready, documented to return once every certificate has
// "failed with a reason that Status reports", blocks until the fleet's
// retry time (RecoveryInterval later on the clock; here the clock stands
// still, so forever), and every cold handshake waits its full cold wait.
func TestANodeJoiningAFailingFleetIsReady(t *testing.T) {
	f := newFleet(t, 0, 1)
	f.r.SetSerialFault(f.leaves[0].Cert.SerialNumber, responder.Fault{Kind: responder.FaultHTTP503HTML})
	a := f.addNode()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := a.Ready(ctx); err != nil {
		t.Fatalf("the first node's Ready: %v", err)
	}
	if st := a.Status()[0]; st.LastError == "" {
		t.Fatalf("the first node reports no failure: %+v", st)
	}
	b := f.addNode()
	ctx2, cancel2 := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel2()
	if err := b.Ready(ctx2); err != nil {
		t.Fatalf("the joining node's Ready never returns (status %+v): %v", b.Status()[0], err)
	}
}
