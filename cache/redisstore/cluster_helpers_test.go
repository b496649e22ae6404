package redisstore

import (
	"fmt"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/staplerkit/ocsp/cache/redisstore/redistest"
)

// clusterFleet starts a 3-master Cluster and a fleet of nodes on it serving
// certs certificates, all stapled, and says which certificates' keys live
// on the master that the test will stop or kill (the first one).
func clusterFleet(t *testing.T, nodes, certs int) (*redistest.Cluster, *fleet, *redistest.Server, map[int]bool) {
	t.Helper()
	cluster := redistest.StartCluster(t, 3)
	f := newFleet(t, 0, certs)
	for range nodes {
		f.addNodeOn(fleetConfig, cluster.Client())
	}
	victim := cluster.Masters[0]
	onVictim := map[int]bool{}
	for j := range f.leaves {
		onVictim[j] = cluster.MasterFor(f.leafKey(j)) == victim
	}
	if n := countTrue(onVictim); n == 0 || n == len(f.leaves) {
		t.Fatalf("%d of %d certificates on the master to stop: want some on it and some elsewhere", n, certs)
	}
	f.settle("every node to staple every certificate", 500*time.Millisecond, func() bool { return f.allStapledSince(f.clock.Now().Add(-time.Hour)) })
	return cluster, f, victim, onVictim
}

// freshOnEveryNode reports whether every node staples, for every
// certificate, a response from before or after before: one fetched in the
// round that began then (the same one on every node, or not).
func (f *fleet) freshOnEveryNode(before time.Time) bool {
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
}

// refreshRoundWithAMasterDown runs a refresh round and checks its requests:
// one per certificate across the fleet for those on the live masters, at
// most one per node for those on the master that is down.
func (f *fleet) refreshRoundWithAMasterDown(t *testing.T, what string, onDown map[int]bool) {
	t.Helper()
	f.r.ResetRequests()
	before := f.clock.Now()
	f.clock.Advance(refreshDue)
	f.settle(what, time.Second, func() bool { return f.freshOnEveryNode(before) })
	counts := f.requestsPerLeaf()
	for j, l := range f.leaves {
		n := counts[l.Cert.SerialNumber.String()]
		if onDown[j] && (n < 1 || n > len(f.nodes)) || !onDown[j] && n != 1 {
			t.Errorf("%s: c%d (on the master that is down: %v): %d responder requests across the fleet", what, j, onDown[j], n)
		}
	}
}
