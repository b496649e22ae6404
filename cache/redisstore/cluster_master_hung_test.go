package redisstore

import (
	"testing"
	"time"

	"github.com/staplerkit/ocsp/stapler"
)

// One Cluster master hanging (SIGSTOP: a network cut, a master being
// failed over) times out the reads of its certificates' keys while the
// others' succeed. The store's breaker must not take that for the whole
// store hung: the certificates whose keys live on the live masters still
// cost one responder request per refresh across the fleet, and only the
// hanging master's go alone (at most one request per node).
//
// The same holds with the master hung for long: paused (SIGSTOP) for longer
// than the store timeout (10 s), while the clock stands still: the nodes
// keep retrying the reads of its certificates' keys (every second, timing
// out), and nothing touches the live masters' keys meanwhile, as no refresh
// is due. The store's breaker must not take that for the whole store hung:
// the certificates on the live masters report no store_error and cost one
// request per refresh round. Found by TestFleetFaultLoop (cluster, seed
// 100): every certificate reported the paused master's timeout as its
// store_error, and went to the responder on each node alone. (The test waits
// the breaker's own window, twice the store timeout, in real time: a slow
// machine only makes it surer.)
func TestClusterMasterHangingCostsOneRequestForCertificatesOnLiveMasters(t *testing.T) {
	_, f, hanging, onHanging := clusterFleet(t, 3, 24)
	hanging.Stop()
	t.Cleanup(hanging.Continue)
	// A first refresh round with the master paused: each node then tries,
	// every second, to share what it fetched alone (timing out).
	f.refreshRoundWithAMasterDown(t, "the first round with a master hanging", onHanging)
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
	f.refreshRoundWithAMasterDown(t, "the second round with a master hanging", onHanging)
}
