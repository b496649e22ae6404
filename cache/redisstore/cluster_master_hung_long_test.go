package redisstore

import (
	"fmt"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/staplerkit/ocsp/cache/redisstore/redistest"
	"github.com/staplerkit/ocsp/stapler"
)

// TestCertificatesOnLiveMastersCostOneRequestAfterAMasterHungForLong: a
// Cluster master paused (SIGSTOP) for longer than the store timeout (10 s),
// while the clock stands still: the nodes keep retrying the reads of its
// certificates' keys (every second, timing out), and nothing touches the
// live masters' keys meanwhile, as no refresh is due. The store's breaker
// must not take that for the whole store hung: the certificates on the live
// masters report no store_error and cost one request per refresh round.
// Found by TestFleetFaultLoop (cluster, seed 100): every certificate
// reported the paused master's timeout as its store_error, and went to the
// responder on each node alone. (The test waits the breaker's own window,
// twice the store timeout, in real time: a slow machine only makes it
// surer.)
func TestCertificatesOnLiveMastersCostOneRequestAfterAMasterHungForLong(t *testing.T) {
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
	// A first refresh round with the master paused: the certificates on
	// the live masters cost one request (TestClusterMasterHangingCostsOne...),
	// those on the paused master one per node, and each node then tries,
	// every second, to share what it fetched alone (timing out).
	round := func(what string) {
		f.r.ResetRequests()
		before := f.clock.Now()
		f.clock.Advance(refreshDue)
		f.settle(what, time.Second, func() bool {
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
				t.Errorf("%s: c%d (on the hanging master: %v): %d responder requests across the fleet", what, j, onHanging[j], n)
			}
		}
	}
	round("the first round with a master hanging")
	// The master stays paused past the store timeout (10 s), the clock
	// standing still: only the paused master's keys are tried meanwhile.
	time.Sleep(2 * 10 * time.Second)
	for i := range f.nodes {
		errs := f.storeErrors(i)
		for j, l := range f.leaves {
			if e := errs[stapler.CertificateID(l.Cert.Raw)]; !onHanging[j] && e != "" {
				t.Errorf("node %d, c%d (on a live master): store_error %q", i, j, e)
			}
		}
	}
	round("the second round with a master hanging")
}
