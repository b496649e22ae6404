package redisstore

import (
	"context"
	"crypto/tls"
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

// Every running node knows a certificate is revoked; someone with write
// access to Redis writes back a good response from two days earlier
// (signed, still valid). A node that starts now knows nothing of its own:
// it does not adopt a response older than the fleet would have stored
// (query_frequency + the recovery window), asks the responder, staples the
// revocation and shares it. With the responder down, its own failed query
// leaves the stored response as the best it has (any cached staple is
// that, until its nextUpdate).
func TestANewNodeAsksTheResponderBeforeAdoptingAnOldStoredResponse(t *testing.T) {
	f := newFleet(t, 3, 1)
	f.settle("every node to staple", 500*time.Millisecond, func() bool { return f.allStapledSince(f.clock.Now().Add(-time.Hour)) })
	ctx := context.Background()
	id := stapler.CertificateID(f.leaves[0].Cert.Raw)
	raw := New(f.redis.Client(), "fleet:")

	// A good answer signed two days ago, valid five days more.
	twoDaysAgo := f.clock.Now().Add(-48 * time.Hour)
	f.r.SetClock(func() time.Time { return twoDaysAgo })
	f.r.SetWindow(responder.Window{Backdate: time.Minute, Lifetime: 7 * 24 * time.Hour})
	oldGood, _, err := fetchDirect(f, f.leaves[0])
	if err != nil {
		t.Fatal(err)
	}
	f.r.SetClock(f.clock.Now)
	f.r.SetWindow(responder.Window{})

	f.r.SetStatus(f.leaves[0].Cert.SerialNumber, responder.Revoked(f.clock.Now().Add(-time.Minute), ocsp.KeyCompromise))
	before := f.clock.Now()
	f.clock.Advance(refreshDue)
	f.settle("the revocation on every node", time.Second, func() bool { return f.allStapledSince(before) && f.revokedEverywhere(0) })

	// Written with a plain SET, announced to no one (a Put announces
	// it, and the running nodes, which know better, write their
	// revocation back at once).
	replay := func() {
		if err := f.redis.Client().Set(ctx, raw.redisKey(id), record.Encode(oldGood, f.clock.Now()), 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	replay()
	requests := f.requestsPerLeaf()[f.leaves[0].Cert.SerialNumber.String()]
	f.addNode()
	newcomer := len(f.nodes) - 1
	f.settle("the new node to staple", 100*time.Millisecond, func() bool { return f.staple(newcomer, 0) != nil })
	resp, err := ocsp.ParseResponseForCert(f.staple(newcomer, 0), f.leaves[0].Cert, f.ca.Cert)
	if err != nil || resp.Status != ocsp.Revoked {
		t.Fatalf("a new node stapled the replayed good response over the fleet's revocation (%v)", err)
	}
	if n := f.requestsPerLeaf()[f.leaves[0].Cert.SerialNumber.String()] - requests; n != 1 {
		t.Fatalf("the new node made %d requests, want 1", n)
	}
	// It shared what it learnt: the store holds a revocation again.
	f.settle("the revocation to be stored again", 0, func() bool {
		v, err := raw.Get(ctx, id)
		if err != nil {
			return false
		}
		stored, _, err := record.Decode(v)
		if err != nil {
			return false
		}
		r, err := ocsp.ParseResponseForCert(stored, f.leaves[0].Cert, f.ca.Cert)
		return err == nil && r.Status == ocsp.Revoked
	})

	// The responder down: a node starting now tries it, then serves the
	// stored response, the best it has.
	replay()
	f.r.SetFault(responder.Fault{Kind: responder.FaultHTTP500})
	f.addNode()
	late := len(f.nodes) - 1
	f.settle("the late node to staple what the store holds", 100*time.Millisecond, func() bool { return f.staple(late, 0) != nil })
	if st, _ := f.nodes[late].StatusOf(id); st.Queries != 1 || st.LastError == "" {
		t.Fatalf("the late node adopted the stored response without asking the responder: %+v", st)
	}
}

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

// TestAFleetStartingTogetherStaplesTheAnnouncedResponse is the control of
// TestAFleetStartingAgainstAPreSigningResponderStaplesAtOnceAskingOncePerNode
// (above): with responses produced now, three nodes started
// together, two of which met the holder's lease and planned a look 11 s
// later, staple the announced response with the clock standing still, for
// one responder request.
func TestAFleetStartingTogetherStaplesTheAnnouncedResponse(t *testing.T) {
	f := newFleet(t, 0, 1)
	leaf := f.leaves[0]
	startThreeTogether(t, f)
	f.waitFor("every node to staple with the clock standing still", func() bool {
		for i := range f.nodes {
			if f.staple(i, 0) == nil {
				f.why = fmt.Sprintf("node %d staples nothing", i)
				return false
			}
		}
		return true
	})
	if n := f.r.CountFor(leaf.Cert.SerialNumber); n != 1 {
		t.Fatalf("%d responder requests, want 1", n)
	}
}

// TestOlderResponseInTheStoreNeverRollsBack: a valid good response produced
// before a revocation, written to Redis with a fetch time in the future and
// announced, is adopted by no node: "newer" is decided by the responses'
// own times, never by store metadata.
func TestOlderResponseInTheStoreNeverRollsBack(t *testing.T) {
	f := newFleet(t, 3, 1)
	f.settle("every node to staple", 500*time.Millisecond, func() bool { return f.allStapledSince(f.clock.Now().Add(-time.Hour)) })
	leaf := f.leaves[0]
	oldGood, _, err := fetchDirect(f, leaf)
	if err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(2 * time.Minute)
	f.r.SetStatus(leaf.Cert.SerialNumber, responder.Revoked(f.clock.Now(), ocsp.KeyCompromise))
	id := stapler.CertificateID(leaf.Cert.Raw)
	if _, err := f.nodes[0].Test(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	isRevoked := func(i int) bool {
		resp, err := ocsp.ParseResponseForCert(f.staple(i, 0), leaf.Cert, f.ca.Cert)
		return err == nil && resp.Status == ocsp.Revoked
	}
	f.settle("every node to staple the revocation", time.Millisecond, func() bool {
		for i := range f.nodes {
			if !isRevoked(i) {
				return false
			}
		}
		return true
	})
	raw := New(f.redis.Client(), "fleet:")
	if err := raw.Put(context.Background(), id, record.Encode(oldGood, f.clock.Now().Add(time.Hour))); err != nil {
		t.Fatal(err)
	}
	// The replay is announced; give every node time to read it, then check.
	time.Sleep(300 * time.Millisecond)
	for i := range f.nodes {
		if !isRevoked(i) {
			t.Fatalf("node %d adopted an older good response over the revocation", i)
		}
		if st, _ := f.nodes[i].StatusOf(id); st.State != stapler.StateRevoked {
			t.Fatalf("node %d reports %s", i, st.State)
		}
	}
}

// An answer older than the one a node holds is never written over the
// fleet's revocation: the store keeps the revocation, and a node that
// starts afterwards (a restart, a scale-up) staples revoked, under Strict
// too. Found when a lease holder (or an admin's POST /v1/ocsp/test) that
// got an older answer refused it locally (ErrOlderResponse) yet wrote it to
// the store (stapleable looked at the query's error, not at apply's
// verdict): a stale CDN edge, or a replay on the plain-HTTP OCSP path of a
// good response captured before the revocation, made an honest node
// overwrite the fleet's revoked record, and every starting node adopted
// it.
func TestAnOlderAnswerIsNeverWrittenOverTheFleetsRevocation(t *testing.T) {
	olderAnswerOverRevocation(t, func(f *fleet, id string, _ *atomic.Int32) {
		f.nodes[0].Test(context.Background(), id) // refused locally as older
	})
}

// The same through the scheduled refresh of the lease holder (refreshFleet
// writes stapleable(o.e, o.err) after apply refused o.e as older).
func TestAnOlderAnswerIsNeverWrittenOverTheFleetsRevocationByARefresh(t *testing.T) {
	olderAnswerOverRevocation(t, func(f *fleet, id string, replayed *atomic.Int32) {
		f.settle("a scheduled refresh to meet the stale edge", time.Minute, func() bool { return replayed.Load() > 0 })
	})
}

// olderAnswerOverRevocation is the body of both tests above and below:
// every node knows the revocation, then meetEdge makes a node query the
// stale edge (which counts its replays in replayed); the store must keep
// the revocation, and a node started afterwards must not staple good.
func olderAnswerOverRevocation(t *testing.T, meetEdge func(f *fleet, id string, replayed *atomic.Int32)) {
	f := newFleet(t, 0, 1)
	edge, replay, replayed := shareEdge(t, f)
	addNode := func() *stapler.Stapler { return f.addEdgeNode(fleetConfig, edge.URL) }
	leaf := f.leaves[0]
	id := stapler.CertificateID(leaf.Cert.Raw)
	// A good response from two days ago, valid a week: anyone could have
	// fetched it then. (Fetched before the nodes start, so that their first
	// fetch, however late a busy machine runs it, gets a fresh one.)
	oldGood := twoDayOldGood(t, f, leaf)
	addNode()
	addNode()
	f.settle("every node to staple", 500*time.Millisecond, func() bool { return f.allStapledSince(f.clock.Now().Add(-time.Hour)) })

	f.clock.Advance(time.Minute)
	f.r.SetStatus(leaf.Cert.SerialNumber, responder.Revoked(f.clock.Now(), ocsp.KeyCompromise))
	if _, err := f.nodes[0].Test(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	revokedOn := func(i int) bool {
		c, err := f.cfgs[i].GetCertificate(&tls.ClientHelloInfo{ServerName: "c0.test"})
		return err != nil && c == nil // Strict refuses a revoked leaf
	}
	f.settle("every node to know the revocation", time.Millisecond, func() bool { return revokedOn(0) && revokedOn(1) })

	// The stale edge answers the next query with the old good response.
	replay.Store(&oldGood)
	meetEdge(f, id, replayed)
	time.Sleep(200 * time.Millisecond) // its write, if any, is done
	replay.Store(nil)

	value, err := New(f.redis.Client(), "fleet:").Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	stored, _, err := record.Decode(value)
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := ocsp.ParseResponseForCert(stored, leaf.Cert, f.ca.Cert); err == nil && resp.Status == ocsp.Good {
		t.Errorf("the store's revoked record was overwritten with an older good response by a node that refused it itself")
	}
	// A node that starts now.
	addNode()
	n := len(f.nodes) - 1
	f.settle("the new node to decide", time.Millisecond, func() bool {
		st, _ := f.nodes[n].StatusOf(id)
		return st.Stapled || st.Queries > 0
	})
	if c, err := f.cfgs[n].GetCertificate(&tls.ClientHelloInfo{ServerName: "c0.test"}); err == nil {
		resp, perr := ocsp.ParseResponseForCert(c.OCSPStaple, leaf.Cert, f.ca.Cert)
		if perr == nil && resp.Status == ocsp.Good {
			t.Fatalf("a node started after the revocation serves the revoked certificate under Strict, stapled good (thisUpdate %s)", resp.ThisUpdate)
		}
	}
}

// liftedHold is a certificateHold revocation of leaf signed three days
// ago and valid a week; the responder says good from now on (the hold
// lifted).
func liftedHold(t *testing.T, f *fleet, leaf *responder.Leaf) []byte {
	t.Helper()
	threeDaysAgo := f.clock.Now().Add(-72 * time.Hour)
	f.r.SetClock(func() time.Time { return threeDaysAgo })
	f.r.SetWindow(responder.Window{Backdate: time.Minute, Lifetime: 7 * 24 * time.Hour})
	f.r.SetStatus(leaf.Cert.SerialNumber, responder.Revoked(threeDaysAgo.Add(-time.Hour), ocsp.CertificateHold))
	oldHold, _, err := fetchDirect(f, leaf)
	if err != nil {
		t.Fatal(err)
	}
	f.r.SetClock(f.clock.Now)
	f.r.SetWindow(responder.Window{})
	f.r.SetStatus(leaf.Cert.SerialNumber, responder.Good())
	return oldHold
}

// TestAReplayedOldHoldRevocationIsNotAdoptedByAStartingNode protects "a
// signed revocation is adopted whatever its age, unless it is a hold": a
// certificateHold revocation from three days ago, since lifted by the CA
// (RFC 5280 5.3.1), written into Redis by someone who can write it, is
// vouched for as a good answer is: a starting node asks the responder
// first, staples good, and writes good over the replay.
func TestAReplayedOldHoldRevocationIsNotAdoptedByAStartingNode(t *testing.T) {
	f := newFleet(t, 0, 1)
	leaf := f.leaves[0]
	id := stapler.CertificateID(leaf.Cert.Raw)
	ctx := context.Background()
	oldHold := liftedHold(t, f, leaf)
	if err := f.redis.Client().Set(ctx, New(f.redis.Client(), "fleet:").redisKey(id), record.Encode(oldHold, f.clock.Now()), 0).Err(); err != nil {
		t.Fatal(err)
	}
	f.addNode()
	f.waitFor("the starting node to staple", func() bool { return f.staple(0, 0) != nil })
	if resp, err := ocsp.ParseResponseForCert(f.staple(0, 0), leaf.Cert, f.ca.Cert); err != nil || resp.Status != ocsp.Good {
		t.Fatalf("the starting node stapled the replayed, lifted hold (%v, status %v)", err, resp)
	}
	f.waitFor("good to replace the replay in Redis", func() bool { st, _ := f.storedStatus(0); return st == ocsp.Good })
}

// TestAReplayedOldHoldRevocationIsUndoneAtTheStartingNodesFirstRefresh
// protects "a signed revocation is adopted whatever its age (no replay of
// one can make a node staple what it should not)" (RELIABILITY.md) and the
// bound the brief asks for: a replayed revocation costs a starting node at
// most its next refresh.
//
// A certificate was put on hold three days ago (certificateHold, a
// revocation RFC 5280 lets the CA undo) and released since: the responder
// says good. Someone who can write Redis kept the signed hold response
// (valid a week) and writes it back, as a cron would, every minute, with a
// fresh fetch time (store metadata, anyone's to write). A node starting now
// adopts it without asking the responder (revocations are exempt from the
// vouch window) and staples REVOKED for a good certificate: its TLS
// clients (Must-Staple, or any that check) refuse it. Its first refresh,
// one query_frequency later, must ask the responder and staple good. It
// does not: every refresh re-adopts "the same answer fetched later" and
// plans the next one a query_frequency on, until overdue() kicks in two
// query intervals after the first look; the denial lasts about three
// query_frequency (3 h with the defaults), on every node that starts.
func TestAReplayedOldHoldRevocationIsUndoneAtTheStartingNodesFirstRefresh(t *testing.T) {
	f := newFleet(t, 0, 1)
	leaf := f.leaves[0]
	id := stapler.CertificateID(leaf.Cert.Raw)
	ctx := context.Background()
	oldHold := liftedHold(t, f, leaf)

	key := New(f.redis.Client(), "fleet:").redisKey(id)
	replay := func() {
		if err := f.redis.Client().Set(ctx, key, record.Encode(oldHold, f.clock.Now()), 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	replay()
	f.addNode()
	f.waitFor("the starting node to staple", func() bool { return f.staple(0, 0) != nil })
	status := func() int {
		resp, err := ocsp.ParseResponseForCert(f.staple(0, 0), leaf.Cert, f.ca.Cert)
		if err != nil {
			t.Fatalf("the node staples an invalid response: %v", err)
		}
		return resp.Status
	}
	start := f.clock.Now()
	startRequests := f.r.CountFor(leaf.Cert.SerialNumber)
	revokedAtStart := status() == ocsp.Revoked

	// The attacker's cron rewrites the replay every minute; the clock
	// runs for three query intervals, a minute at a time.
	limit := refreshDue + 5*time.Minute // one query_frequency (jitter only brings it earlier), and a margin
	var fixedAfter time.Duration = -1
	for f.clock.Now().Sub(start) < 4*time.Hour {
		replay()
		f.clock.Advance(time.Minute)
		time.Sleep(15 * time.Millisecond)
		if status() == ocsp.Good {
			// Give the node a moment in real time: it may be mid-refresh.
			fixedAfter = f.clock.Now().Sub(start)
			break
		}
	}
	if fixedAfter < 0 || fixedAfter > limit {
		t.Fatalf("a starting node adopted a three-day-old certificateHold revocation from Redis (stapled revoked at start: %v) and stapled REVOKED for a good certificate for %v of clock time (fixed: %v), asking the responder %d time(s) meanwhile; want good again within one query_frequency (%v)",
			revokedAtStart, fmtDur(fixedAfter, f.clock.Now().Sub(start)), fixedAfter >= 0, f.r.CountFor(leaf.Cert.SerialNumber)-startRequests, limit)
	}
	if st, _ := f.storedStatus(0); st == ocsp.Revoked {
		// The cron wrote it last; only fail if no node ever wrote good.
		t.Logf("Redis still holds the replayed revocation (the cron's last write)")
	}
}

func fmtDur(fixed, ran time.Duration) string {
	if fixed < 0 {
		return fmt.Sprintf("all %v the test ran", ran)
	}
	return fixed.String()
}
