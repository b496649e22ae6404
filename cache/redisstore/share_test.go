package redisstore

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/staplerkit/ocsp/config"
	"github.com/staplerkit/ocsp/internal/record"
	"github.com/staplerkit/ocsp/responder"
	"github.com/staplerkit/ocsp/stapler"
)

// shareEdge is a responder front (a CDN edge) that answers with the
// response in replay while one is set, and passes the rest on to f.r.
func shareEdge(t *testing.T, f *fleet) (*httptest.Server, *atomic.Pointer[[]byte], *atomic.Int32) {
	var replay atomic.Pointer[[]byte]
	var replayed atomic.Int32
	edge := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p := replay.Load(); p != nil {
			replayed.Add(1)
			io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/ocsp-response")
			w.Write(*p)
			return
		}
		f.r.ServeHTTP(w, r)
	}))
	t.Cleanup(edge.Close)
	return edge, &replay, &replayed
}

// twoDayOldGood is a good response about leaf produced two days ago and
// valid a week: anyone could have fetched it then.
func twoDayOldGood(t *testing.T, f *fleet, leaf *responder.Leaf) []byte {
	t.Helper()
	f.r.SetWindow(responder.Window{Backdate: 48 * time.Hour, Lifetime: 7 * 24 * time.Hour})
	defer f.r.SetWindow(responder.Window{})
	oldGood, _, err := fetchDirect(f, leaf)
	if err != nil {
		t.Fatal(err)
	}
	return oldGood
}

// addEdgeNode adds a node of f (Strict, cfg) that asks url.
func (f *fleet) addEdgeNode(cfg config.OCSP, url string) *stapler.Stapler {
	f.t.Helper()
	s, err := stapler.New(cfg,
		stapler.WithClock(f.clock), stapler.WithLogger(testLogger()),
		stapler.WithStore(New(f.redis.Client(), "fleet:")),
		stapler.WithColdWait(10*time.Millisecond), stapler.WithRateLimit(0, 0),
		stapler.WithResponderURL(url), stapler.WithPolicy(stapler.Strict))
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { s.Close() })
	f.nodes = append(f.nodes, s)
	f.cfgs = append(f.cfgs, s.Wrap(&tls.Config{Certificates: []tls.Certificate{f.leaves[0].Certificate}}))
	return s
}

// TestANodeThatReadASignedRevocationNeverStaplesOrSharesAnOlderGoodAnswer
// protects "no node ever staples (or shares into Redis) an older answer over
// a known revocation" and "the store never goes back to an older answer"
// against the vouch rule (adoption a node can vouch for).
//
// The whole fleet knows the certificate is revoked and Redis holds the
// signed revocation. The fleet is restarted two hours later (a deploy, a
// maintenance window): the stored revocation is still valid (nextUpdate a
// day on) but was produced more than query_frequency + the recovery window
// ago, so the starting node does not adopt it and asks the responder first.
// The responder's CDN edge is behind and answers with a good response from
// before the revocation. The node has read and verified a signed
// revocation (revocation is final: no replay of it can hurt), yet it
// installs the older good answer, staples GOOD under Strict, and writes it
// over the revocation in Redis, where every node started afterwards finds
// it.
func TestANodeThatReadASignedRevocationNeverStaplesOrSharesAnOlderGoodAnswer(t *testing.T) {
	f := newFleet(t, 0, 1)
	edge, replay, replayed := shareEdge(t, f)
	leaf := f.leaves[0]
	id := stapler.CertificateID(leaf.Cert.Raw)
	// A good answer from two days ago, valid a week (a stale edge's).
	oldGood := twoDayOldGood(t, f, leaf)
	a := f.addEdgeNode(fleetConfig, edge.URL)
	b := f.addEdgeNode(fleetConfig, edge.URL)
	f.settle("every node to staple", 500*time.Millisecond, func() bool { return f.allStapledSince(f.clock.Now().Add(-time.Hour)) })

	f.clock.Advance(time.Minute)
	f.r.SetStatus(leaf.Cert.SerialNumber, responder.Revoked(f.clock.Now(), ocsp.KeyCompromise))
	if _, err := a.Test(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	f.waitFor("the revocation to be stored", func() bool { st, _ := f.storedStatus(0); return st == ocsp.Revoked })

	// The fleet stops, and starts again two hours later.
	a.Close()
	b.Close()
	f.clock.Advance(2 * time.Hour)
	replay.Store(&oldGood)
	c := f.addEdgeNode(fleetConfig, edge.URL)
	n := len(f.nodes) - 1
	f.waitFor("the restarted node to staple", func() bool {
		st, _ := c.StatusOf(id)
		f.why = fmt.Sprintf("%+v", st)
		return st.Stapled
	})
	// Its next refresh meets the stale edge, whose older good answer
	// must not replace the revocation (here, in Redis, or on the wire).
	f.clock.Advance(refreshDue)
	f.waitFor("the restarted node to ask the stale edge", func() bool {
		st, _ := c.StatusOf(id)
		f.why = fmt.Sprintf("%+v", st)
		return replayed.Load() > 0 && !st.LastAttempt.Before(f.clock.Now().Add(-refreshDue+time.Second))
	})
	time.Sleep(300 * time.Millisecond) // its write, if any, is done
	var problems []string
	if cert, err := f.cfgs[n].GetCertificate(&tls.ClientHelloInfo{ServerName: "c0.test"}); err == nil {
		if resp, perr := ocsp.ParseResponseForCert(cert.OCSPStaple, leaf.Cert, f.ca.Cert); perr == nil && resp.Status == ocsp.Good {
			problems = append(problems, fmt.Sprintf("the restarted node staples GOOD (thisUpdate %s) under Strict for a certificate whose signed revocation it read from Redis", resp.ThisUpdate.UTC()))
		}
	}
	if st, tu := f.storedStatus(0); st != ocsp.Revoked {
		problems = append(problems, fmt.Sprintf("Redis went back from the revocation to an older answer (status %d, thisUpdate %s)", st, tu.UTC()))
	}
	if len(problems) > 0 {
		st, _ := c.StatusOf(id)
		t.Fatalf("%v\nstatus of the restarted node: state %s, queries %d", problems, st.State, st.Queries)
	}
}

// TestAPushedRevocationReachesTheFleetWhileSomeoneHoldsTheLeaseForever
// protects "a revocation one server learns reaches every server" and "no
// retry loop hammers Redis" against share()'s lease retry.
//
// Someone who can write Redis keeps a certificate's lease key set (re-SET
// every 200 ms; the lease script only cuts its TTL). A refresh queries
// around such a lease after twice the lease TTL (leaseStuck); share does
// not: a revocation pushed to one node is retried once a second, forever,
// and never reaches Redis nor the other nodes (with the clock standing
// still, no refresh helps; on a real clock they learn it at their next
// refresh, up to query_frequency later). Meanwhile the pushing node reads
// Redis, takes no lease and logs "sharing ours" every second, per
// certificate, forever.
func TestAPushedRevocationReachesTheFleetWhileSomeoneHoldsTheLeaseForever(t *testing.T) {
	cfg := fleetConfig
	cfg.ResponseTimeout = 1 // the shortest lease TTL: "stuck" past twice it
	f := newFleet(t, 0, 1)
	f.addNodeWith(cfg)
	f.addNodeWith(cfg)
	f.settle("every node to staple", 500*time.Millisecond, func() bool { return f.allStapledSince(f.clock.Now().Add(-time.Hour)) })
	leaf := f.leaves[0]
	id := stapler.CertificateID(leaf.Cert.Raw)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rc := f.redis.Client()
	holder := make(chan struct{})
	go func() {
		defer close(holder)
		for ctx.Err() == nil {
			rc.Set(ctx, f.leafKey(0)+":lease", "someone-else", time.Hour)
			time.Sleep(200 * time.Millisecond)
		}
	}()
	defer func() { cancel(); <-holder }()
	time.Sleep(300 * time.Millisecond)

	f.clock.Advance(time.Minute)
	f.r.SetStatus(leaf.Cert.SerialNumber, responder.Revoked(f.clock.Now(), ocsp.KeyCompromise))
	revoked, _, err := fetchDirect(f, leaf)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := f.nodes[0].Push(ctx, id, revoked); err != nil {
		t.Fatal(err)
	}
	// Generous: twice the lease TTL is a few seconds.
	deadline := start.Add(40 * time.Second)
	for {
		resp, err := ocsp.ParseResponseForCert(f.staple(1, 0), leaf.Cert, f.ca.Cert)
		if err == nil && resp.Status == ocsp.Revoked {
			break
		}
		if time.Now().After(deadline) {
			st, _ := f.storedStatus(0)
			t.Fatalf("a revocation pushed to node 0 has not reached node 1 %v later while someone holds the lease (Redis holds status %d); node 0 logged %q %d times meanwhile",
				time.Since(start).Round(time.Second), st, "ocsp: the store holds an older response than this server's; sharing ours",
				f.logs[0].count("ocsp: the store holds an older response than this server's"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startThreeTogether starts three nodes of f at once, holding the first
// responder request (the lease holder's) until every node has started and
// met its lease: the race a fleet started by one deploy runs, on any
// machine.
func startThreeTogether(t *testing.T, f *fleet) {
	t.Helper()
	release := make(chan struct{})
	var arrived atomic.Int32
	gate := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if arrived.Add(1) == 1 {
			<-release
		}
		f.r.ServeHTTP(w, r)
	}))
	t.Cleanup(gate.Close)
	released := false
	t.Cleanup(func() {
		if !released {
			close(release)
		}
	})
	for range 3 {
		f.addEdgeNode(fleetConfig, gate.URL)
	}
	f.waitFor("the lease holder's request", func() bool { return arrived.Load() > 0 })
	time.Sleep(time.Second) // the others meet its lease and plan their look
	close(release)
	released = true
}

// TestAFleetStartingAgainstAPreSigningResponderStaplesAtOnceAskingOncePerNode
// protects "a notification is never ignored" against the vouch rule.
//
// Many CAs' responders serve pre-signed responses (RFC 5019; producedAt
// hours or days old, valid for days). Three nodes start together. One
// takes the lease and stores the responder's answer; it was produced two
// hours ago, outside query_frequency + the recovery window, so the others,
// which know nothing of the certificate and found the lease taken, cannot
// vouch for the announced response (anyone who can write Redis could have
// announced it). They must not wait for their planned look (with the clock
// standing still, never: Ready would not return): each asks the responder
// itself at once. The price of the rule with such a responder is one
// request per starting node (RELIABILITY.md), not one per fleet.
func TestAFleetStartingAgainstAPreSigningResponderStaplesAtOnceAskingOncePerNode(t *testing.T) {
	f := newFleet(t, 0, 1)
	leaf := f.leaves[0]
	// Responses signed two hours ago, valid a week.
	f.r.SetClock(func() time.Time { return f.clock.Now().Add(-2 * time.Hour) })
	f.r.SetWindow(responder.Window{Backdate: time.Minute, Lifetime: 7 * 24 * time.Hour})
	startThreeTogether(t, f)
	deadline := time.Now().Add(30 * time.Second)
	for {
		ok := true
		for i := range f.nodes {
			if f.staple(i, 0) == nil {
				ok = false
				f.why = fmt.Sprintf("node %d staples nothing", i)
			}
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("with the clock standing still, 30 s after the lease holder stored and announced its response: %s; %d responder requests",
				f.why, f.r.CountFor(leaf.Cert.SerialNumber))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n := f.r.CountFor(leaf.Cert.SerialNumber); n > len(f.nodes) {
		t.Fatalf("%d responder requests for one certificate at one fleet start of %d nodes, want at most one per node", n, len(f.nodes))
	}
}

// TestAPushReturnsAtOnceWhenRedisHangsAndIsSharedWhenItAnswers protects
// "Push and Test return without waiting on the store": the response is
// installed at once and shared by the notice workers, so a Redis that
// hangs (SIGSTOP) holds up neither the caller (an admin API request, a
// deploy job) nor the handshakes; once Redis answers again, the pushed
// response reaches the store.
func TestAPushReturnsAtOnceWhenRedisHangsAndIsSharedWhenItAnswers(t *testing.T) {
	f := newFleet(t, 1, 1)
	f.settle("the node to staple", 100*time.Millisecond, func() bool { return f.staple(0, 0) != nil })
	leaf := f.leaves[0]
	id := stapler.CertificateID(leaf.Cert.Raw)
	f.clock.Advance(10 * time.Minute)
	newer, _, err := fetchDirect(f, leaf)
	if err != nil {
		t.Fatal(err)
	}
	f.waitFor("the first refresh to release its lease", func() bool {
		return f.redis.Client().Exists(context.Background(), f.leafKey(0)+":lease").Val() == 0
	})
	f.redis.Stop()
	t.Cleanup(f.redis.Continue)
	ctx, cancel := context.WithTimeout(context.Background(), hangLimit)
	defer cancel()
	start := time.Now()
	_, err = f.nodes[0].Push(ctx, id, newer)
	took := time.Since(start)
	if err != nil {
		t.Fatalf("Push: %v", err)
	}
	// The store timeout is 10 s: only waiting on the hung store reaches it.
	if took > 10*time.Second {
		t.Fatalf("Push returned %v after Redis stopped answering: it waited on the store", took.Round(100*time.Millisecond))
	}
	if !bytes.Equal(f.staple(0, 0), newer) {
		t.Fatal("the pushed response is not stapled at once")
	}
	f.redis.Continue()
	waitFor(t, "the pushed response to reach the store", func() bool {
		v, err := New(f.redis.Client(), "fleet:").Get(context.Background(), id)
		if err != nil {
			return false
		}
		raw, _, err := record.Decode(v)
		return err == nil && bytes.Equal(raw, newer)
	})
}

// TestARefusedPushWritesNothingToTheFleet protects RELIABILITY's "a refused
// [pushed response] changes nothing" in a fleet.
//
// A refused push used to be recorded like a failed Test: the fleet state
// rewritten from this node's view and announced to every node (and, were
// this node's last attempt failed, a next try of time.Time{} erasing the
// fleet's planned retry).
func TestARefusedPushWritesNothingToTheFleet(t *testing.T) {
	f := newFleet(t, 2, 1)
	f.settle("every node to staple", 500*time.Millisecond, func() bool { return f.allStapledSince(f.clock.Now().Add(-time.Hour)) })
	leaf := f.leaves[0]
	id := stapler.CertificateID(leaf.Cert.Raw)
	older, _, err := fetchDirect(f, leaf)
	if err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(10 * time.Minute)
	if _, err := f.nodes[0].Test(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	f.waitFor("every node to staple the Test's response", func() bool { return f.allStapledSince(f.clock.Now().Add(-2 * time.Minute)) })
	time.Sleep(500 * time.Millisecond) // the Test's share is done
	writes := shareAnnouncements(t, f, id+".state")
	if _, err := f.nodes[0].Push(context.Background(), id, older); !errors.Is(err, stapler.ErrOlderResponse) {
		t.Fatalf("Push of an older response: %v, want ErrOlderResponse", err)
	}
	time.Sleep(time.Second)
	if n := writes.Load(); n > 0 {
		t.Fatalf("a refused Push wrote and announced the fleet state %d time(s)", n)
	}
}
