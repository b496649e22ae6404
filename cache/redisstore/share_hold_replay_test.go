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

// liftedHold is a certificateHold revocation of leaf signed three days
// ago and valid a week; the responder says good from now on (the hold
// lifted).
func liftedHold(t *testing.T, f *fleet, leaf *responder.Leaf) []byte {
	t.Helper()
	threeDaysAgo := f.clock.Now().Add(-72 * time.Hour)
	f.r.SetClock(func() time.Time { return threeDaysAgo })
	f.r.SetWindow(responder.Window{Backdate: time.Minute, Lifetime: 7 * 24 * time.Hour})
	f.r.SetStatus(leaf.Cert.SerialNumber, responder.Revoked(threeDaysAgo.Add(-time.Hour), ocsp.CertificateHold))
	oldHold, _, err := fetchDirect(f, leaf)
	if err != nil {
		t.Fatal(err)
	}
	f.r.SetClock(f.clock.Now)
	f.r.SetWindow(responder.Window{})
	f.r.SetStatus(leaf.Cert.SerialNumber, responder.Good())
	return oldHold
}

// TestAReplayedOldHoldRevocationIsNotAdoptedByAStartingNode protects "a
// signed revocation is adopted whatever its age, unless it is a hold": a
// certificateHold revocation from three days ago, since lifted by the CA
// (RFC 5280 5.3.1), written into Redis by someone who can write it, is
// vouched for as a good answer is: a starting node asks the responder
// first, staples good, and writes good over the replay.
func TestAReplayedOldHoldRevocationIsNotAdoptedByAStartingNode(t *testing.T) {
	f := newFleet(t, 0, 1)
	leaf := f.leaves[0]
	id := stapler.CertificateID(leaf.Cert.Raw)
	ctx := context.Background()
	oldHold := liftedHold(t, f, leaf)
	if err := f.redis.Client().Set(ctx, New(f.redis.Client(), "fleet:").redisKey(id), record.Encode(oldHold, f.clock.Now()), 0).Err(); err != nil {
		t.Fatal(err)
	}
	f.addNode()
	f.waitFor("the starting node to staple", func() bool { return f.staple(0, 0) != nil })
	if resp, err := ocsp.ParseResponseForCert(f.staple(0, 0), leaf.Cert, f.ca.Cert); err != nil || resp.Status != ocsp.Good {
		t.Fatalf("the starting node stapled the replayed, lifted hold (%v, status %v)", err, resp)
	}
	f.waitFor("good to replace the replay in Redis", func() bool { st, _ := f.storedStatus(0); return st == ocsp.Good })
}
