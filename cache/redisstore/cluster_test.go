package redisstore

import (
	"context"
	"crypto/tls"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/crypto/ocsp"

	"github.com/staplerkit/ocsp/cache/redisstore/redistest"
	"github.com/staplerkit/ocsp/responder"
	"github.com/staplerkit/ocsp/stapler"
)

// TestFleetOnARedisCluster: three servers sharing a real 3-master Redis
// Cluster, with certificates whose keys spread over the slots: one
// responder request per certificate per refresh, the fenced writes (a
// script over a certificate's lease and value) never cross slots, and a
// revocation reaches every server.
func TestFleetOnARedisCluster(t *testing.T) {
	cluster := redistest.StartCluster(t, 3)
	f := newFleet(t, 0, 12)
	for range 3 {
		s, err := stapler.New(fleetConfig,
			stapler.WithClock(f.clock),
			stapler.WithLogger(testLogger()),
			stapler.WithStore(New(cluster.Client(), "fleet:")),
			stapler.WithColdWait(10*time.Millisecond),
			stapler.WithRateLimit(0, 0))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		var certs []tls.Certificate
		for _, l := range f.leaves {
			certs = append(certs, l.Certificate)
		}
		f.nodes = append(f.nodes, s)
		f.cfgs = append(f.cfgs, s.Wrap(&tls.Config{Certificates: certs}))
	}
	// The certificates' keys are spread over the three masters.
	masters := map[int64]bool{}
	cc := cluster.Client()
	for _, l := range f.leaves {
		masters[redisSlot(t, cc, "fleet:{"+stapler.CertificateID(l.Cert.Raw)+"}")/5462] = true
	}
	if len(masters) < 2 {
		t.Fatalf("12 certificates on %d master(s) only", len(masters))
	}
	start := f.clock.Now().Add(-time.Hour)
	f.settle("every node to staple every certificate", 500*time.Millisecond, func() bool { return f.allStapledSince(start) })
	f.expectRequestsPerLeaf(1)
	before := f.clock.Now()
	f.clock.Advance(refreshDue)
	f.settle("the refresh", time.Second, func() bool { return f.allStapledSince(before) })
	f.expectRequestsPerLeaf(2)
	for i, s := range f.nodes {
		for _, st := range s.Status() {
			if st.StoreError != "" {
				t.Fatalf("node %d: store error %q", i, st.StoreError)
			}
		}
	}

	leaf := f.leaves[5]
	f.r.SetStatus(leaf.Cert.SerialNumber, responder.Revoked(f.clock.Now(), ocsp.KeyCompromise))
	if _, err := f.nodes[0].Test(context.Background(), stapler.CertificateID(leaf.Cert.Raw)); err != nil {
		t.Fatal(err)
	}
	f.settle("the revocation on every node", time.Millisecond, func() bool {
		for i := range f.nodes {
			resp, err := ocsp.ParseResponseForCert(f.staple(i, 5), leaf.Cert, f.ca.Cert)
			if err != nil || resp.Status != ocsp.Revoked {
				return false
			}
		}
		return true
	})
}

func redisSlot(t *testing.T, c *redis.ClusterClient, key string) int64 {
	t.Helper()
	slot, err := c.ClusterKeySlot(context.Background(), key).Result()
	if err != nil {
		t.Fatal(err)
	}
	return slot
}

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

func countTrue(m map[int]bool) int {
	n := 0
	for _, v := range m {
		if v {
			n++
		}
	}
	return n
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

// TestClusterMasterKilledAndBack: three servers on a 3-master Cluster,
// certificates spread over the slots, one master killed. The store's
// health is per certificate: in a refresh round, the certificates on the
// live masters still cost one responder request across the fleet, and only
// those on the dead master's slots are queried by each server alone, which
// reports store_error for those only (and logs the outage once), although reads of those go on
// failing all through the round (a resync retries them every
// second). When the master is back, the subscription to it is
// made again, every server reads the store again (which clears the
// errors), and the next round is one request per certificate again.
func TestClusterMasterKilledAndBack(t *testing.T) {
	cluster, f, dead, onDead := clusterFleet(t, 3, 24)
	f.expectRequestsPerLeaf(1)

	dead.Kill()
	// The live masters drop their subscribers (as a Sentinel does on a
	// failover): every node subscribes again and reads every certificate
	// again, and keeps retrying those on the dead master, so that failures
	// go on all through the refresh round.
	for _, m := range cluster.Masters {
		if m != dead {
			c := redis.NewClient(&redis.Options{Addr: m.Addr()})
			err := c.ClientKillByFilter(context.Background(), "TYPE", "pubsub").Err()
			c.Close()
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	f.waitFor("every node to fail on the dead master's certificates", func() bool {
		for i := range f.nodes {
			errs := f.storeErrors(i)
			for j, l := range f.leaves {
				if onDead[j] && errs[stapler.CertificateID(l.Cert.Raw)] == "" {
					f.why = fmt.Sprintf("node %d, c%d", i, j)
					return false
				}
			}
		}
		return true
	})
	// Every node staples a fresh response for every certificate (the same
	// one on every node for those on live masters; its own for the others).
	f.refreshRoundWithAMasterDown(t, "the refresh with a master down", onDead)
	for i := range f.nodes {
		errs := f.storeErrors(i)
		for j, l := range f.leaves {
			if e := errs[stapler.CertificateID(l.Cert.Raw)]; onDead[j] != (e != "") {
				t.Errorf("node %d, c%d (on the dead master: %v): store_error %q", i, j, onDead[j], e)
			}
		}
	}
	for i, logs := range f.logs {
		if n := logs.count("ocsp: the shared store is unreachable"); n != 1 {
			t.Errorf("node %d logged the outage %d times, want once", i, n)
		}
	}
	for i, s := range f.nodes {
		if m := s.Metrics(); !m.Store.Configured || m.Store.Up || m.Store.Errors[stapler.StoreRead] == 0 {
			t.Errorf("node %d's metrics with a master down: %+v", i, m.Store)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	dead.Restart()
	cluster.WaitOK()
	// The subscription to the master made again, every server reads the
	// store again: the errors clear without a refresh.
	f.waitFor("every node to reach the store for every certificate again", func() bool {
		for i := range f.nodes {
			for id, e := range f.storeErrors(i) {
				if e != "" {
					f.why = fmt.Sprintf("node %d, %s: %s", i, id[:8], e)
					return false
				}
			}
		}
		return true
	})
	for i, s := range f.nodes {
		if !s.Metrics().Store.Up {
			t.Errorf("node %d's metrics say the store is down once it is back", i)
		}
	}
	for i, logs := range f.logs {
		if n := logs.count("ocsp: the shared store is back"); n < 1 {
			t.Errorf("node %d never logged the end of the outage", i)
		}
	}
	f.r.ResetRequests()
	before := f.clock.Now()
	f.clock.Advance(refreshDue)
	f.settle("the refresh with the master back", time.Second, func() bool { return f.allStapledSince(before) })
	f.expectRequestsPerLeaf(1)
}

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

// TestClusterNotificationsWithTheChannelsMasterDown: the master that owns
// the notification channel's slot is killed; a revocation one server
// learns for a certificate on another master still reaches every server
// through the others (every master hears every PUBLISH over the cluster
// bus, and each server listens on every master), with the clock standing
// still, so no refresh can have brought it.
func TestClusterNotificationsWithTheChannelsMasterDown(t *testing.T) {
	cluster := redistest.StartCluster(t, 3)
	f := newFleet(t, 0, 12)
	for range 3 {
		f.addNodeOn(fleetConfig, cluster.Client())
	}
	f.settle("every node to staple every certificate", 500*time.Millisecond, func() bool { return f.allStapledSince(f.clock.Now().Add(-time.Hour)) })
	channelMaster := cluster.MasterFor("fleet:changes")
	j := -1
	for k := range f.leaves {
		if cluster.MasterFor(f.leafKey(k)) != channelMaster {
			j = k
			break
		}
	}
	if j < 0 {
		t.Fatal("every certificate on the channel's master")
	}
	channelMaster.Kill()

	leaf := f.leaves[j]
	f.r.SetStatus(leaf.Cert.SerialNumber, responder.Revoked(f.clock.Now(), ocsp.KeyCompromise))
	if _, err := f.nodes[0].Test(context.Background(), stapler.CertificateID(leaf.Cert.Raw)); err != nil {
		t.Fatal(err)
	}
	if e := f.storeErrors(0)[stapler.CertificateID(leaf.Cert.Raw)]; e != "" {
		t.Fatalf("node 0 could not share the revocation: %s", e)
	}
	f.waitFor("the revocation on every node", func() bool { return f.revokedEverywhere(j) })
}
