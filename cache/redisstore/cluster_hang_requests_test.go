package redisstore

import (
	"fmt"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/staplerkit/ocsp/cache/redisstore/redistest"
)

// One Cluster master hanging (SIGSTOP: a network cut, a master being
// failed over) times out the reads of its certificates' keys while the
// others' succeed. The store's breaker must not take that for the whole
// store hung: the certificates whose keys live on the live masters still
// cost one responder request per refresh across the fleet, and only the
// hanging master's go alone (at most one request per node).
func TestClusterMasterHangingCostsOneRequestForCertificatesOnLiveMasters(t *testing.T) {
	cluster := redistest.StartCluster(t, 3)
	f := newFleet(t, 0, 24)
	for range 3 {
		f.addNodeOn(fleetConfig, cluster.Client())
	}
	hanging := cluster.Masters[0]
	onHanging := map[int]bool{}
	for j := range f.leaves {
		onHanging[j] = cluster.MasterFor(f.leafKey(j)) == hanging
	}
	if n := countTrue(onHanging); n == 0 || n == len(f.leaves) {
		t.Fatalf("%d of 24 certificates on the master to stop: want some on it and some elsewhere", n)
	}
	f.settle("every node to staple every certificate", 500*time.Millisecond, func() bool { return f.allStapledSince(f.clock.Now().Add(-time.Hour)) })

	hanging.Stop()
	t.Cleanup(hanging.Continue)
	f.r.ResetRequests()
	before := f.clock.Now()
	f.clock.Advance(refreshDue)
	f.settle("the refresh with a master hanging", time.Second, func() bool {
		for j, l := range f.leaves {
			for i := range f.nodes {
				resp, err := ocsp.ParseResponseForCert(f.staple(i, j), l.Cert, f.ca.Cert)
				if err != nil || resp.ThisUpdate.Before(before) {
					f.why = fmt.Sprintf("node %d has no fresh staple for c%d", i, j)
					return false
				}
			}
		}
		return true
	})
	counts := f.requestsPerLeaf()
	for j, l := range f.leaves {
		n := counts[l.Cert.SerialNumber.String()]
		if onHanging[j] && (n < 1 || n > len(f.nodes)) || !onHanging[j] && n != 1 {
			t.Errorf("c%d (on the hanging master: %v): %d responder requests across the fleet", j, onHanging[j], n)
		}
	}
}
