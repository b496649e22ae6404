package redisstore

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/staplerkit/ocsp/config"
	"github.com/staplerkit/ocsp/responder"
	"github.com/staplerkit/ocsp/stapler"
)

func TestFleetMakesOneRequestPerCertificatePerRefresh(t *testing.T) {
	for _, size := range []struct{ nodes, certs int }{{3, 100}, {10, 20}} {
		t.Run(fmt.Sprintf("%d nodes", size.nodes), func(t *testing.T) {
			f := newFleet(t, size.nodes, size.certs)
			start := f.clock.Now().Add(-time.Hour)
			f.settle("every node to staple every certificate", 500*time.Millisecond, func() bool { return f.allStapledSince(start) })
			f.expectRequestsPerLeaf(1)

			// Two regular refreshes: one request each per certificate,
			// fleet-wide, and every node staples the same new response.
			for round := 2; round <= 3; round++ {
				before := f.clock.Now()
				f.clock.Advance(refreshDue)
				f.settle("the refresh", time.Second, func() bool { return f.allStapledSince(before) })
				f.expectRequestsPerLeaf(round)
			}
			for i, s := range f.nodes {
				for _, st := range s.Status() {
					if st.State != stapler.StateGood || !st.Stapled || st.StoreError != "" {
						t.Fatalf("node %d: %+v", i, st)
					}
				}
			}
		})
	}
}

// childTimeout is the response_timeout, in seconds, of the node that
// TestLeaseHolderKilledMidFetch kills: the test must see it hold its lease
// before its query times out, however busy the machine.
const childTimeout = 3

// TestFleetChildHelper is the node that TestLeaseHolderKilledMidFetch
// kills: it staples one certificate through the shared Redis, and hangs in
// the responder while holding the lease.
func TestFleetChildHelper(t *testing.T) {
	addr := os.Getenv("STAPLERKIT_FLEET_REDIS")
	if addr == "" {
		t.Skip("helper process only")
	}
	cert, err := tls.LoadX509KeyPair(os.Getenv("STAPLERKIT_FLEET_CERT"), os.Getenv("STAPLERKIT_FLEET_KEY"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := fleetConfig
	cfg.ResponseTimeout = childTimeout
	s, err := stapler.New(cfg, stapler.WithLogger(testLogger()),
		stapler.WithStore(New(redis.NewClient(&redis.Options{Addr: addr}), "fleet:")))
	if err != nil {
		t.Fatal(err)
	}
	s.Add(&cert)
	select {} // until killed
}

func TestLeaseHolderKilledMidFetch(t *testing.T) {
	f := newFleet(t, 0, 1)
	leaf := f.leaves[0]
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, leaf.CertPEM, 0o600)
	os.WriteFile(keyFile, leaf.KeyPEM, 0o600)

	// A node in a process of its own takes the lease, hangs in the
	// responder, and is killed with SIGKILL: it never releases the lease.
	f.r.SetSerialFault(leaf.Cert.SerialNumber, responder.Fault{Kind: responder.FaultHang})
	child := exec.Command(os.Args[0], "-test.run=^TestFleetChildHelper$")
	child.Env = append(os.Environ(), "STAPLERKIT_FLEET_REDIS="+f.redis.Addr(), "STAPLERKIT_FLEET_CERT="+certFile, "STAPLERKIT_FLEET_KEY="+keyFile)
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer child.Process.Kill()
	deadline := time.Now().Add(time.Minute)
	for f.r.CountFor(leaf.Cert.SerialNumber) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the child node never asked")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Frozen at once, then killed: it never releases its lease, which
	// lives at most 2 × response_timeout + 2 s in Redis (the lease TTL the
	// README documents).
	child.Process.Signal(syscall.SIGSTOP)
	lease := 2*childTimeout*time.Second + 2*time.Second
	leaseKey := "fleet:{" + stapler.CertificateID(leaf.Cert.Raw) + "}:lease"
	rc := f.redis.Client()
	ctx := context.Background()
	token, err := rc.Get(ctx, leaseKey).Result()
	if err != nil {
		t.Fatalf("the child holds no lease: %v", err)
	}
	if ttl := rc.PTTL(ctx, leaseKey).Val(); ttl <= 0 || ttl > lease {
		t.Fatalf("the lease lives %v, want at most 2 × response_timeout + 2 s (%v)", ttl, lease)
	}
	child.Process.Kill()
	child.Wait()
	f.r.SetSerialFault(leaf.Cert.SerialNumber, responder.Fault{})

	// The others wait while the dead node's lease lives, and no longer:
	// once Redis has expired it, one of them fetches at its next look.
	f.addNode()
	f.addNode()
	f.settle("another node to fetch", time.Second, func() bool {
		n := f.r.CountFor(leaf.Cert.SerialNumber)
		if held, _ := rc.Get(ctx, leaseKey).Result(); held == token && n > 1 {
			t.Fatalf("%d requests while the dead node's lease still lived", n)
		}
		return f.allStapledSince(f.clock.Now().Add(-time.Hour))
	})
	if n := f.r.CountFor(leaf.Cert.SerialNumber); n != 2 {
		t.Fatalf("%d requests: want the dead node's and exactly one more", n)
	}
}

func TestClosedHolderHandsOverAtOnce(t *testing.T) {
	f := newFleet(t, 0, 1)
	leaf := f.leaves[0]
	f.r.SetSerialFault(leaf.Cert.SerialNumber, responder.Fault{Kind: responder.FaultHang})
	// The leaving node's query hangs until Close (response_timeout 60 s):
	// it still holds the lease when it is closed.
	slow := fleetConfig
	slow.ResponseTimeout = 60
	leaving := f.addNodeWith(slow)
	deadline := time.Now().Add(time.Minute)
	for f.r.CountFor(leaf.Cert.SerialNumber) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the first node never asked")
		}
		time.Sleep(5 * time.Millisecond)
	}
	leaseKey := "fleet:{" + stapler.CertificateID(leaf.Cert.Raw) + "}:lease"
	rc := f.redis.Client()
	ctx := context.Background()
	if n := rc.Exists(ctx, leaseKey).Val(); n != 1 {
		t.Fatal("the first node holds no lease while it asks")
	}
	leaving.Close() // a clean shutdown releases the lease
	// At once: the lease is gone the moment Close returns, not when it
	// would have run out.
	if n := rc.Exists(ctx, leaseKey).Val(); n != 0 {
		t.Fatalf("the lease is still held after Close (expires in %v)", rc.PTTL(ctx, leaseKey).Val())
	}
	f.r.SetSerialFault(leaf.Cert.SerialNumber, responder.Fault{})
	f.nodes, f.cfgs = nil, nil
	f.addNode()
	f.addNode()
	f.settle("another node to fetch", time.Second, func() bool { return f.allStapledSince(f.clock.Now().Add(-time.Hour)) })
}

// TestStaleLeaseHolderWritesNothing: a lease holder paused past its lease
// (here: its lease is taken from under it while its query hangs) and then
// resumed with a failure writes nothing over the result of the server that
// took over; no server reports a failure that did not happen.
func TestStaleLeaseHolderWritesNothing(t *testing.T) {
	f := newFleet(t, 0, 1)
	var requests atomic.Int32
	hold := make(chan struct{})
	arrived := make(chan struct{}, 1)
	gate := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if requests.Add(1) == 1 { // the first holder: held, then a failure
			arrived <- struct{}{}
			<-hold
			http.Error(w, "overloaded", http.StatusServiceUnavailable)
			return
		}
		f.r.ServeHTTP(w, r)
	}))
	defer gate.Close()
	defer func() {
		select {
		case <-hold:
		default:
			close(hold)
		}
	}()
	for range 3 {
		s, err := stapler.New(config.OCSP{OCSPFunctionality: true, QueryFrequency: 3600, ResponseTimeout: 30, RecoveryFrequency: 60, RecoveryMaxTries: 3},
			stapler.WithClock(f.clock), stapler.WithLogger(testLogger()),
			stapler.WithStore(New(f.redis.Client(), "fleet:")),
			stapler.WithColdWait(10*time.Millisecond), stapler.WithRateLimit(0, 0),
			stapler.WithResponderURL(gate.URL))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		f.nodes = append(f.nodes, s)
		f.cfgs = append(f.cfgs, s.Wrap(&tls.Config{Certificates: []tls.Certificate{f.leaves[0].Certificate}}))
	}
	<-arrived
	// The holder's lease runs out (as after a long pause) and the others,
	// due again, take over: one of them fetches and stores a good response.
	ctx := context.Background()
	id := stapler.CertificateID(f.leaves[0].Cert.Raw)
	if err := f.redis.Client().Del(ctx, "fleet:{"+id+"}:lease").Err(); err != nil {
		t.Fatal(err)
	}
	// The taker staples first and writes the fleet state after: wait for
	// both (a busy machine may run the test in between).
	stateKey := "fleet:{" + id + "}.state"
	f.settle("a server to take over, staple and store the state", 500*time.Millisecond, func() bool {
		for i := range f.nodes {
			if f.staple(i, 0) != nil {
				return f.redis.Client().Exists(ctx, stateKey).Val() == 1
			}
		}
		return false
	})
	good, err := f.redis.Client().Get(ctx, stateKey).Result()
	if err != nil {
		t.Fatal(err)
	}
	// The paused holder resumes with a failure and records it: two queries
	// in all, the taker's and its own.
	close(hold)
	queries := func() int {
		n := 0
		for _, s := range f.nodes {
			st, _ := s.StatusOf(id)
			n += st.Queries
		}
		return n
	}
	f.settle("the paused holder to record its failure", time.Millisecond, func() bool { return queries() >= 2 })
	// Every node then reports what really happened: no failure.
	f.settle("every node to report no failure", time.Millisecond, func() bool {
		for _, s := range f.nodes {
			if st, _ := s.StatusOf(id); st.Tries != 0 || st.LastError != "" || st.StoreError != "" {
				f.why = fmt.Sprintf("tries %d, error %q, store error %q", st.Tries, st.LastError, st.StoreError)
				return false
			}
		}
		return true
	})
	after, err := f.redis.Client().Get(ctx, stateKey).Result()
	if err != nil {
		t.Fatal(err)
	}
	if after != good {
		t.Fatalf("the paused holder overwrote the fleet's state:\nbefore %s\nafter  %s", good, after)
	}
}
