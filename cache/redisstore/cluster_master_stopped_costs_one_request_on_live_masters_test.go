package redisstore

import "testing"

// One Cluster master hanging (SIGSTOP: a network cut, a master being
// failed over) times out the reads of its certificates' keys while the
// others' succeed. The store's breaker must not take that for the whole
// store hung: the certificates whose keys live on the live masters still
// cost one responder request per refresh across the fleet, and only the
// hanging master's go alone (at most one request per node).
func TestClusterMasterHangingCostsOneRequestForCertificatesOnLiveMasters(t *testing.T) {
	_, f, hanging, onHanging := clusterFleet(t, 3, 24)
	hanging.Stop()
	t.Cleanup(hanging.Continue)
	f.refreshRoundWithAMasterDown(t, "the refresh with a master hanging", onHanging)
}
