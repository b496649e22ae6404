package redisstore

import (
	"context"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/staplerkit/ocsp/cache/redisstore/redistest"
	"github.com/staplerkit/ocsp/responder"
	"github.com/staplerkit/ocsp/stapler"
	"golang.org/x/crypto/ocsp"
)

// TestAHangingMasterHoldsUpNoRevocationOnALiveMaster: a fleet's
// notices are adopted by ONE worker per server, in the order announced,
// each read given the store's 10 s timeout, and a resync queues every
// certificate. With one Cluster master hanging (SIGSTOP: a network cut,
// a master under failover) and a resync (a subscription made again on a
// live master: here forced by one oversized PUBLISH from anyone allowed to
// publish, see TestOneOversizedPublishForcesNoResync), the server's
// worker spends ~10 s on each certificate of the hanging master before it
// reaches a certificate on a live master, so a revocation another server
// shares for it — a live master's, notified at once — is not stapled for
// minutes (README: a new response "reaches every server through Redis
// pub/sub within milliseconds"; per-certificate health: "the
// certificates on the live masters go on"). The clients are go-redis's
// defaults. Measured: with 18 certificates of the hanging master ahead, the
// revocation reached node 1 after 3 minutes (the test fails at 1).
func TestAHangingMasterHoldsUpNoRevocationOnALiveMaster(t *testing.T) {
	cluster := redistest.StartCluster(t, 3)
	f := newFleet(t, 0, 45)
	for range 2 {
		client := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cluster.Addrs()})
		t.Cleanup(func() { client.Close() })
		f.addNodeOn(fleetConfig, client)
	}
	f.settle("every node to staple every certificate", 500*1e6, func() bool { return f.allStapledSince(f.clock.Now().Add(-3600 * 1e9)) })

	hanging := cluster.MasterFor(f.leafKey(0))
	j, ahead := -1, 0
	for k := range f.leaves {
		if cluster.MasterFor(f.leafKey(k)) != hanging {
			j = k
		}
	}
	for k := 0; k < j; k++ {
		if cluster.MasterFor(f.leafKey(k)) == hanging {
			ahead++
		}
	}
	t.Logf("c%d is on a live master, behind %d certificates of the hanging master", j, ahead)
	var live *redistest.Server
	for _, m := range cluster.Masters {
		if m != hanging {
			live = m
		}
	}

	hanging.Stop()
	t.Cleanup(hanging.Continue)
	// An outsider's oversized PUBLISH drops every subscriber of the live
	// masters: each server resyncs.
	spy := redis.NewClient(&redis.Options{Addr: live.Addr(), WriteTimeout: hangLimit, ReadTimeout: hangLimit})
	defer spy.Close()
	if err := spy.Publish(context.Background(), "fleet:changes", "x/1 "+strings.Repeat("k", 33<<20)).Err(); err != nil {
		t.Fatal(err)
	}
	f.waitFor("node 1 to resync", func() bool {
		return f.logs[1].count("ocsp: notifications from the fleet may have been missed") > 0
	})

	leaf := f.leaves[j]
	f.r.SetStatus(leaf.Cert.SerialNumber, responder.Revoked(f.clock.Now(), ocsp.KeyCompromise))
	// On a loaded machine the live masters may miss each other's pings for
	// the node timeout and call the cluster down for a moment (CLUSTERDOWN):
	// the revocation is shared once they see each other again.
	f.waitFor("node 0 to share the revocation through a live master", func() bool {
		if _, err := f.nodes[0].Test(context.Background(), stapler.CertificateID(leaf.Cert.Raw)); err != nil {
			t.Fatal(err)
		}
		return f.storeErrors(0)[stapler.CertificateID(leaf.Cert.Raw)] == ""
	})
	f.waitFor("the revocation, shared through a live master, on node 1", func() bool { return f.revokedEverywhere(j) })
}
