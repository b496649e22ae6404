package redisstore

import (
	"context"
	"testing"
	"time"

	"github.com/staplerkit/ocsp/responder"
)

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
