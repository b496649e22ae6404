package redisstore

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/crypto/ocsp"

	"github.com/staplerkit/ocsp/cache/redisstore/redistest"
	"github.com/staplerkit/ocsp/responder"
	"github.com/staplerkit/ocsp/stapler"
)

func TestRedisDownAndBack(t *testing.T) {
	f := newFleet(t, 3, 5)
	f.settle("every node to staple", 500*time.Millisecond, func() bool { return f.allStapledSince(f.clock.Now().Add(-time.Hour)) })
	f.expectRequestsPerLeaf(1)

	// Real handshakes run against node 0 all through the outage and the
	// restart, and every one of them gets a staple.
	stopHandshakes := f.handshakeLoop(0)
	defer stopHandshakes()

	f.redis.Kill()
	// Handshakes keep their staples.
	for i := range f.nodes {
		for j := range f.leaves {
			if f.staple(i, j) == nil {
				t.Fatalf("node %d lost c%d's staple when Redis died", i, j)
			}
		}
	}
	// A refresh with Redis down: every node asks on its own, and says why.
	before := f.clock.Now()
	f.clock.Advance(refreshDue)
	f.settle("the refresh without Redis", time.Second, func() bool {
		for i := range f.nodes {
			for j, l := range f.leaves {
				resp, err := ocsp.ParseResponseForCert(f.staple(i, j), l.Cert, f.ca.Cert)
				if err != nil || resp.ThisUpdate.Before(before) {
					f.why = fmt.Sprintf("node %d c%d: %v", i, j, err)
					if resp != nil {
						f.why = fmt.Sprintf("node %d c%d: thisUpdate %v, before %v", i, j, resp.ThisUpdate, before)
					}
					return false
				}
			}
		}
		return true
	})
	for i, s := range f.nodes {
		if st := s.Status()[0]; st.StoreError == "" {
			t.Fatalf("node %d does not report the store outage: %+v", i, st)
		}
	}
	counts := f.requestsPerLeaf()
	for _, l := range f.leaves {
		if n := counts[l.Cert.SerialNumber.String()]; n < 2 || n > 4 {
			t.Fatalf("%d requests during the outage", n)
		}
	}

	// Redis is back (empty): coordination resumes by itself, within
	// a second (the store's retry interval the README documents).
	f.redis.Restart()
	time.Sleep(time.Second + 100*time.Millisecond)
	f.r.ResetRequests()
	before = f.clock.Now()
	f.clock.Advance(refreshDue)
	f.settle("the refresh with Redis back", time.Second, func() bool { return f.allStapledSince(before) })
	f.expectRequestsPerLeaf(1)
	for i, s := range f.nodes {
		if st := s.Status()[0]; st.StoreError != "" {
			t.Fatalf("node %d still reports %q", i, st.StoreError)
		}
	}
	if n := stopHandshakes(); n == 0 {
		t.Fatal("no handshakes ran")
	}
}

// handshakeLoop serves node i's config on loopback and does real
// handshakes against it until the returned function is called, failing the
// test on any handshake without a staple. The function returns how many ran.
func (f *fleet) handshakeLoop(i int) func() int {
	ln, err := tls.Listen("tcp", "127.0.0.1:0", f.cfgs[i])
	if err != nil {
		f.t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { c.(*tls.Conn).Handshake(); c.Close() }()
		}
	}()
	roots := x509.NewCertPool()
	roots.AddCert(f.ca.Cert)
	stop := make(chan struct{})
	done := make(chan int)
	go func() {
		n := 0
		defer func() { done <- n }()
		for {
			select {
			case <-stop:
				return
			default:
			}
			conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: roots, ServerName: "c0.test"})
			if err != nil {
				f.t.Errorf("handshake failed: %v", err)
				return
			}
			if conn.ConnectionState().OCSPResponse == nil {
				f.t.Errorf("a handshake lost its staple")
			}
			conn.Close()
			n++
		}
	}()
	var once sync.Once
	count := 0
	return func() int {
		once.Do(func() {
			close(stop)
			count = <-done
			ln.Close()
		})
		return count
	}
}

// TestSentinelFailover: three servers behind a real Sentinel (a master, a
// replica, a sentinel). The master is cut off (SIGSTOP: its connections
// stay open, silent) and the sentinel promotes the replica. The servers'
// subscriptions, left on the silent old master, are found dead by their
// pings and made again on the new master; as notifications may have been
// missed meanwhile, every server reads the store again, so a revocation
// one server shared right after the failover reaches every server with the
// clock standing still. The refresh round right after, with the old master
// back (a second master until the sentinel demotes it), costs at most two
// requests per certificate; once it is demoted, one.
func TestSentinelFailover(t *testing.T) {
	// The subscriptions left on the stopped master must move when the
	// client does (the failover), not when their pings time out: the
	// timeout is made longer than the test waits (set before any
	// listener starts, restored after every node has closed).
	saved := pingTimeout
	pingTimeout = 10 * hangLimit
	t.Cleanup(func() { pingTimeout = saved })
	sn := redistest.StartSentinel(t)
	f := newFleet(t, 0, 6)
	for range 3 {
		f.addNodeOn(fleetConfig, sn.Client())
	}
	f.settle("every node to staple every certificate", 500*time.Millisecond, func() bool { return f.allStapledSince(f.clock.Now().Add(-time.Hour)) })
	f.expectRequestsPerLeaf(1)

	sn.Master.Stop()
	f.waitFor("the sentinel to promote the replica", func() bool { return sn.MasterAddr() == sn.Replica.Addr() })

	// Node 0 learns a revocation and shares it as soon as its client has
	// found the new master.
	leaf := f.leaves[0]
	id := stapler.CertificateID(leaf.Cert.Raw)
	f.r.SetStatus(leaf.Cert.SerialNumber, responder.Revoked(f.clock.Now(), ocsp.KeyCompromise))
	f.waitFor("node 0 to share the revocation", func() bool {
		if _, err := f.nodes[0].Test(context.Background(), id); err != nil {
			t.Fatal(err)
		}
		f.why = f.storeErrors(0)[id]
		return f.why == ""
	})
	f.waitFor("the revocation on every node", func() bool { return f.revokedEverywhere(0) })

	sn.Master.Continue()
	f.r.ResetRequests()
	before := f.clock.Now()
	f.clock.Advance(refreshDue)
	f.settle("the refresh after the failover", time.Second, func() bool { return f.allStapledSince(before) })
	counts := f.requestsPerLeaf()
	for j, l := range f.leaves {
		if n := counts[l.Cert.SerialNumber.String()]; n < 1 || n > 2 {
			t.Fatalf("c%d: %d responder requests in the round after the failover, want 1 or 2", j, n)
		}
	}

	old := redis.NewClient(&redis.Options{Addr: sn.Master.Addr()})
	defer old.Close()
	f.waitFor("the sentinel to demote the old master", func() bool {
		info, _ := old.Info(context.Background(), "replication").Result()
		return strings.Contains(info, "role:slave")
	})
	time.Sleep(storeRetryInterval) // certificates that failed in the round try the store again
	f.r.ResetRequests()
	before = f.clock.Now()
	f.clock.Advance(refreshDue)
	f.settle("the refresh with one master", time.Second, func() bool { return f.allStapledSince(before) })
	f.expectRequestsPerLeaf(1)
}

// TestANotificationIsNeverDroppedWhileTheStoreFails: node 1 hears of a
// revocation while its reads of that certificate's keys fail (its Redis
// user loses the right to those keys: a real error from a real server,
// for one certificate's keys, as a dead Cluster master gives). It
// reports store_error for that certificate only, every other certificate
// goes on as before, and the notification is not dropped: once the reads
// work again, node 1 adopts the revocation with the clock standing still
// (no refresh can have brought it).
func TestANotificationIsNeverDroppedWhileTheStoreFails(t *testing.T) {
	f := newFleet(t, 1, 4)
	admin := f.redis.Client()
	ctx := context.Background()
	if err := admin.Do(ctx, "ACL", "SETUSER", "flaky", "on", ">pw", "~*", "&*", "+@all").Err(); err != nil {
		t.Fatal(err)
	}
	flaky := redis.NewClient(&redis.Options{Addr: f.redis.Addr(), Username: "flaky", Password: "pw",
		MaxRetries: 1, DialTimeout: 500 * time.Millisecond, ReadTimeout: time.Second, WriteTimeout: time.Second})
	t.Cleanup(func() { flaky.Close() })
	f.addNodeOn(fleetConfig, flaky)
	f.addNode()
	f.settle("every node to staple every certificate", 500*time.Millisecond, func() bool { return f.allStapledSince(f.clock.Now().Add(-time.Hour)) })

	// Node 1 may touch every key but certificate 0's.
	acl := []any{"ACL", "SETUSER", "flaky", "resetkeys"}
	for _, l := range f.leaves[1:] {
		acl = append(acl, "~fleet:{"+stapler.CertificateID(l.Cert.Raw)+"}*")
	}
	if err := admin.Do(ctx, acl...).Err(); err != nil {
		t.Fatal(err)
	}
	leaf := f.leaves[0]
	id := stapler.CertificateID(leaf.Cert.Raw)
	f.r.SetStatus(leaf.Cert.SerialNumber, responder.Revoked(f.clock.Now(), ocsp.KeyCompromise))
	if _, err := f.nodes[0].Test(ctx, id); err != nil {
		t.Fatal(err)
	}
	f.waitFor("node 1 to fail reading the revoked certificate's keys", func() bool { return f.storeErrors(1)[id] != "" })
	for other, e := range f.storeErrors(1) {
		if other != id && e != "" {
			t.Fatalf("node 1 reports a store error for another certificate: %s", e)
		}
	}
	if f.revokedEverywhere(0) {
		t.Fatal("node 1 adopted the revocation without reading it")
	}

	if err := admin.Do(ctx, "ACL", "SETUSER", "flaky", "~*").Err(); err != nil {
		t.Fatal(err)
	}
	f.waitFor("the revocation on every node", func() bool { return f.revokedEverywhere(0) })
	f.waitFor("node 1 to clear its store error", func() bool { return f.storeErrors(1)[id] == "" })
}
