package redisstore

import (
	"context"
	"testing"
	"time"

	"github.com/staplerkit/ocsp/stapler"
	"golang.org/x/crypto/ocsp"
)

// TestAForgedLeaseStopsNoQuery: a server that does not get a
// certificate's lease (SET NX) waits leaseWait and looks again, forever:
// nothing bounds how long a lease may be held or checks its TTL. The store
// is "never trusted" (README), yet one lease key written without a TTL (or
// with a year's) by anyone who can write to Redis — or left behind by a
// restore that dropped TTLs — stops every server from querying that
// certificate: its staple expires on every server (refused under
// must-staple), while the responder answers. (Control: the same test with
// the forged lease given a 1 ms TTL passes in 0.3 s.)
func TestAForgedLeaseStopsNoQuery(t *testing.T) {
	f := newFleet(t, 2, 2)
	f.settle("every node to staple", 500*time.Millisecond, func() bool { return f.allStapledSince(f.clock.Now().Add(-time.Hour)) })
	orig, err := ocsp.ParseResponseForCert(f.staple(0, 0), f.leaves[0].Cert, f.ca.Cert)
	if err != nil {
		t.Fatal(err)
	}
	id := stapler.CertificateID(f.leaves[0].Cert.Raw)
	attacker := f.redis.Client()
	if err := attacker.Set(context.Background(), "fleet:{"+id+"}:lease", "forged", 0).Err(); err != nil {
		t.Fatal(err)
	}
	fresh := func() bool {
		for i := range f.nodes {
			resp, err := ocsp.ParseResponseForCert(f.staple(i, 0), f.leaves[0].Cert, f.ca.Cert)
			if err != nil || !resp.ThisUpdate.After(orig.ThisUpdate) {
				return false
			}
		}
		return true
	}
	// The clock runs on, in small steps, past the staple's expiry.
	step := orig.NextUpdate.Sub(f.clock.Now()) / 400
	for f.clock.Now().Before(orig.NextUpdate.Add(time.Minute)) && !fresh() {
		f.clock.Advance(step)
		time.Sleep(10 * time.Millisecond)
	}
	f.waitFor("a fresh staple for c0 on every node, its old one expired", fresh)
}
