package redisstore

import (
	"context"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/staplerkit/ocsp/internal/record"
	"github.com/staplerkit/ocsp/responder"
	"github.com/staplerkit/ocsp/stapler"
)

// Every running node knows a certificate is revoked; someone with write
// access to Redis writes back a good response from two days earlier
// (signed, still valid). A node that starts now knows nothing of its own:
// it does not adopt a response older than the fleet would have stored
// (query_frequency + the recovery window), asks the responder, staples the
// revocation and shares it. With the responder down, its own failed query
// leaves the stored response as the best it has (any cached staple is
// that, until its nextUpdate).
func TestANewNodeAsksTheResponderBeforeAdoptingAnOldStoredResponse(t *testing.T) {
	f := newFleet(t, 3, 1)
	f.settle("every node to staple", 500*time.Millisecond, func() bool { return f.allStapledSince(f.clock.Now().Add(-time.Hour)) })
	ctx := context.Background()
	id := stapler.CertificateID(f.leaves[0].Cert.Raw)
	raw := New(f.redis.Client(), "fleet:")

	// A good answer signed two days ago, valid five days more.
	twoDaysAgo := f.clock.Now().Add(-48 * time.Hour)
	f.r.SetClock(func() time.Time { return twoDaysAgo })
	f.r.SetWindow(responder.Window{Backdate: time.Minute, Lifetime: 7 * 24 * time.Hour})
	oldGood, _, err := fetchDirect(f, f.leaves[0])
	if err != nil {
		t.Fatal(err)
	}
	f.r.SetClock(f.clock.Now)
	f.r.SetWindow(responder.Window{})

	f.r.SetStatus(f.leaves[0].Cert.SerialNumber, responder.Revoked(f.clock.Now().Add(-time.Minute), ocsp.KeyCompromise))
	before := f.clock.Now()
	f.clock.Advance(refreshDue)
	f.settle("the revocation on every node", time.Second, func() bool { return f.allStapledSince(before) && f.revokedEverywhere(0) })

	// Written with a plain SET, announced to no one (a Put announces
	// it, and the running nodes, which know better, write their
	// revocation back at once).
	replay := func() {
		if err := f.redis.Client().Set(ctx, raw.redisKey(id), record.Encode(oldGood, f.clock.Now()), 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	replay()
	requests := f.requestsPerLeaf()[f.leaves[0].Cert.SerialNumber.String()]
	f.addNode()
	newcomer := len(f.nodes) - 1
	f.settle("the new node to staple", 100*time.Millisecond, func() bool { return f.staple(newcomer, 0) != nil })
	resp, err := ocsp.ParseResponseForCert(f.staple(newcomer, 0), f.leaves[0].Cert, f.ca.Cert)
	if err != nil || resp.Status != ocsp.Revoked {
		t.Fatalf("a new node stapled the replayed good response over the fleet's revocation (%v)", err)
	}
	if n := f.requestsPerLeaf()[f.leaves[0].Cert.SerialNumber.String()] - requests; n != 1 {
		t.Fatalf("the new node made %d requests, want 1", n)
	}
	// It shared what it learnt: the store holds a revocation again.
	f.settle("the revocation to be stored again", 0, func() bool {
		v, err := raw.Get(ctx, id)
		if err != nil {
			return false
		}
		stored, _, err := record.Decode(v)
		if err != nil {
			return false
		}
		r, err := ocsp.ParseResponseForCert(stored, f.leaves[0].Cert, f.ca.Cert)
		return err == nil && r.Status == ocsp.Revoked
	})

	// The responder down: a node starting now tries it, then serves the
	// stored response, the best it has.
	replay()
	f.r.SetFault(responder.Fault{Kind: responder.FaultHTTP500})
	f.addNode()
	late := len(f.nodes) - 1
	f.settle("the late node to staple what the store holds", 100*time.Millisecond, func() bool { return f.staple(late, 0) != nil })
	if st, _ := f.nodes[late].StatusOf(id); st.Queries != 1 || st.LastError == "" {
		t.Fatalf("the late node adopted the stored response without asking the responder: %+v", st)
	}
}
