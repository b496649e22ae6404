package redisstore

import (
	"bytes"
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"math/rand"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/crypto/ocsp"

	"github.com/staplerkit/ocsp/cache/redisstore/redistest"
	"github.com/staplerkit/ocsp/internal/record"
	"github.com/staplerkit/ocsp/responder"
	"github.com/staplerkit/ocsp/stapler"
)

// The fleet fault loop (TestFleetFaultLoop) and the scale start-ups
// (TestFleetScaleStartups) are long: they run only when asked,
//
//	go test -race -run TestFleetFaultLoop -fleet.loop=20 .   (.ci/fleetloop)
//
// -fleet.seed=S replays sequence S (the failure message gives it), with
// -fleet.loop=1 for that one alone.
var (
	fleetLoopN     = flag.Int("fleet.loop", 0, "TestFleetFaultLoop: random fault sequences per topology (0: the fleet loop tests are skipped)")
	fleetLoopSeed  = flag.Int64("fleet.seed", 0, "TestFleetFaultLoop: the first sequence's seed, the next ones follow (0: from the time)")
	fleetLoopSteps = flag.Int("fleet.steps", 12, "TestFleetFaultLoop: steps per sequence")
	fleetLoopTopo  = flag.String("fleet.topology", "cluster,sentinel", "TestFleetFaultLoop: the topologies to run")
	fleetLoopKnown = flag.Bool("fleet.known", false, "TestFleetFaultLoop: also take the steps that meet known open findings (a fetch time in the future; a Cluster master paused through a second round)")
	fleetScaleRuns = flag.Int("fleet.scale", 10, "TestFleetScaleStartups: start-ups per fleet size (run only with -fleet.loop > 0)")
	fleetScaleSize = flag.String("fleet.scale.sizes", "10,20", "TestFleetScaleStartups: the fleet sizes (Staplers) to start")
	fleetScaleCert = flag.Int("fleet.scale.certs", 1000, "TestFleetScaleStartups: certificates per Stapler")
)

// loopNodes and loopCerts are the size of each sequence's fleet.
const (
	loopNodes = 3
	loopCerts = 12
)

// loopStats gathers, over the sequences of one topology, the responder
// requests each certificate cost per refresh round, by kind of round.
type loopStats struct {
	mu     sync.Mutex
	counts map[string]map[int]int // kind → requests per certificate → rounds×certificates
}

func (s *loopStats) add(kind string, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.counts == nil {
		s.counts = map[string]map[int]int{}
	}
	if s.counts[kind] == nil {
		s.counts[kind] = map[int]int{}
	}
	s.counts[kind][n]++
}

func (s *loopStats) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var kinds []string
	for k := range s.counts {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	var b strings.Builder
	for _, k := range kinds {
		var ns []int
		for n := range s.counts[k] {
			ns = append(ns, n)
		}
		sort.Ints(ns)
		fmt.Fprintf(&b, "\n  %-62s", k+":")
		for _, n := range ns {
			fmt.Fprintf(&b, " %d request(s) ×%d", n, s.counts[k][n])
		}
	}
	return b.String()
}

// TestFleetFaultLoop drives three Staplers on an injected clock, on a real
// 3-master Redis Cluster and on a real Sentinel set (master, replica,
// sentinel), through seeded random steps: a master killed and restarted, a
// master paused and resumed, a forced Sentinel failover (the Cluster has no
// replicas to fail over to), values forged straight into Redis, the
// responder revoking a certificate or failing, and refresh rounds. After
// every step it checks:
//
//  1. no node staples a good answer for a certificate once it has stapled
//     its revocation, or once the fleet was due to have told it (a node
//     verified the revocation and the certificate's keys are reachable);
//     no node ever staples an older response than it stapled before, nor
//     one that does not verify for the certificate (checked continuously
//     by a sampler, not only between steps);
//  2. the responder requests per certificate in a refresh round: exactly
//     one fleet-wide with the store healthy (and for the certificates on
//     live Cluster masters while another is down, and from the first round
//     after a Sentinel failover completed); at most one per node for those
//     whose keys are on a dead or paused master, or while the Sentinel
//     master is down;
//  3. every node staples a valid response after every step, and, once the
//     faults are healed, the same fresh response after a refresh round.
//
// A failure gives the seed and the steps that led to it.
func TestFleetFaultLoop(t *testing.T) {
	if *fleetLoopN <= 0 {
		t.Skip("the fleet fault loop runs only with -fleet.loop=N (.ci/fleetloop)")
	}
	seed := *fleetLoopSeed
	if seed == 0 {
		seed = time.Now().UnixNano() % 1_000_000
	}
	for _, topo := range strings.Split(*fleetLoopTopo, ",") {
		t.Run(topo, func(t *testing.T) {
			stats := &loopStats{}
			start := time.Now()
			for k := range *fleetLoopN {
				s := seed + int64(k)
				t.Run(fmt.Sprintf("seed=%d", s), func(t *testing.T) {
					runFleetLoop(t, topo, s, *fleetLoopSteps, stats)
				})
				if t.Failed() {
					break
				}
			}
			t.Logf("%s: %d sequences from seed %d in %v; responder requests per certificate per refresh round:%s",
				topo, *fleetLoopN, seed, time.Since(start).Round(time.Second), stats)
		})
	}
}

// fleetLoop is one sequence.
type fleetLoop struct {
	t     *testing.T
	f     *fleet
	topo  string
	seed  int64
	rng   *rand.Rand
	stats *loopStats

	history []string

	cluster  *redistest.Cluster
	masterOf []*redistest.Server // Cluster: the master that holds each certificate's keys
	sn       *redistest.Sentinel
	admin    redis.UniversalClient // forges, outside any node
	raw      *Store                // announces forged values

	killed *redistest.Server // a server killed and not yet restarted
	paused *redistest.Server // a server paused and not yet resumed
	// failedOver: a Sentinel failover completed since the last round (the
	// next round is the first after it); healed: the master came back
	// without one. promoted: the killed master's replica was promoted.
	failedOver, healed, promoted bool
	roundsPaused                 int    // rounds since a master was paused
	faultMaster                  string // the Sentinel master when the fault began
	// forgedTries is, per certificate, the tries a forged fleet state
	// claims and no refresh has written over yet: the fleet continues its
	// count (the state is unsigned; the retries it can take away are
	// bounded by recovery_max_tries).
	forgedTries []int

	mu         sync.Mutex // guards the model below, shared with the sampler
	revokedAt  []time.Time
	verified   []bool        // a node stapled leaf j's revocation
	knows      [][]bool      // node i must staple leaf j revoked from now on
	latest     [][]time.Time // the newest thisUpdate node i stapled for leaf j
	goods      [][][]byte    // per leaf, the good responses seen stapled, oldest first
	violations []string
	parsed     map[string]parsedStaple
}

type parsedStaple struct {
	resp *ocsp.Response
	err  error
}

func runFleetLoop(t *testing.T, topo string, seed int64, steps int, stats *loopStats) {
	l := &fleetLoop{t: t, topo: topo, seed: seed, rng: rand.New(rand.NewSource(seed)), stats: stats, parsed: map[string]parsedStaple{}}
	switch topo {
	case "cluster":
		l.cluster = redistest.StartCluster(t, 3)
	case "sentinel":
		l.sn = redistest.StartSentinel(t)
	default:
		t.Fatalf("unknown topology %q", topo)
	}
	l.f = newFleet(t, 0, loopCerts)
	f := l.f
	for range loopNodes {
		f.addNodeOn(fleetConfig, l.client())
	}
	l.admin = l.client()
	l.raw = New(l.admin, "fleet:")
	if l.cluster != nil {
		for j := range f.leaves {
			l.masterOf = append(l.masterOf, l.cluster.MasterFor(f.leafKey(j)))
		}
	}
	l.revokedAt = make([]time.Time, len(f.leaves))
	l.verified = make([]bool, len(f.leaves))
	l.forgedTries = make([]int, len(f.leaves))
	l.goods = make([][][]byte, len(f.leaves))
	for range f.nodes {
		l.knows = append(l.knows, make([]bool, len(f.leaves)))
		l.latest = append(l.latest, make([]time.Time, len(f.leaves)))
	}
	l.note("start: %s, %d nodes, %d certificates%s", topo, len(f.nodes), len(f.leaves), l.layout())
	since := f.clock.Now().Add(-time.Hour)
	l.settle("every node to staple every certificate", 500*time.Millisecond, func() bool { return l.allFresh(since, nil) })
	l.expectOne("first fetch")

	l.check()
	stop := l.sample()
	defer stop()

	for range steps {
		l.step()
		l.check()
	}
	l.healAll()
	l.note("final round, every fault healed")
	l.round()
	l.check()
	// Invariant 3: every node staples the same fresh response.
	before := f.clock.Now()
	l.f.clock.Advance(refreshDue)
	l.settle("the last round", time.Second, func() bool { return l.allFresh(before, nil) })
	l.check()
}

// client is a new client of the topology.
func (l *fleetLoop) client() redis.UniversalClient {
	if l.cluster != nil {
		return l.cluster.Client()
	}
	return l.sn.Client()
}

func (l *fleetLoop) layout() string {
	if l.cluster == nil {
		return ""
	}
	per := map[string][]int{}
	for j, m := range l.masterOf {
		per[m.Addr()] = append(per[m.Addr()], j)
	}
	var s []string
	for i, m := range l.cluster.Masters {
		s = append(s, fmt.Sprintf("master %d (%s): c%v", i, m.Addr(), per[m.Addr()]))
	}
	return "; " + strings.Join(s, ", ")
}

func (l *fleetLoop) note(format string, args ...any) {
	line := fmt.Sprintf("[%s] ", l.f.clock.Now().Format("15:04:05")) + fmt.Sprintf(format, args...)
	l.mu.Lock()
	l.history = append(l.history, line)
	l.mu.Unlock()
	if testing.Verbose() {
		l.t.Logf("seed %d: %s", l.seed, line)
	}
}

// fail ends the sequence with the seed and the steps so far.
func (l *fleetLoop) fail(format string, args ...any) {
	l.t.Helper()
	l.mu.Lock()
	history := slices.Clone(l.history)
	l.mu.Unlock()
	l.t.Logf("the nodes at the failure (clock %v):\n%s", l.f.clock.Now().Format(time.TimeOnly), l.dump())
	l.t.Fatalf("%s\nreproduce: go test -race -run 'TestFleetFaultLoop/%s' -fleet.loop=1 -fleet.seed=%d -fleet.steps=%d -fleet.topology=%s .\nsteps:\n  %s",
		fmt.Sprintf(format, args...), l.topo, l.seed, *fleetLoopSteps, l.topo, strings.Join(history, "\n  "))
}

// dump is every node's status of every certificate.
func (l *fleetLoop) dump() string {
	var b strings.Builder
	for j, leaf := range l.f.leaves {
		id := stapler.CertificateID(leaf.Cert.Raw)
		for i, s := range l.f.nodes {
			st, _ := s.StatusOf(id)
			fmt.Fprintf(&b, "  c%d node %d: %s thisUpdate %s next %s last attempt %s success %s tries %d queries %d store_error %q last_error %q\n",
				j, i, st.State, st.ThisUpdate.Format(time.TimeOnly), st.NextRefresh.Format(time.TimeOnly), st.LastAttempt.Format(time.TimeOnly),
				st.LastSuccess.Format(time.TimeOnly), st.Tries, st.Queries, st.StoreError, st.LastError)
		}
	}
	return b.String()
}

// waitFor waits in real time, the clock standing still, until cond holds.
func (l *fleetLoop) waitFor(what string, cond func() bool) {
	l.t.Helper()
	deadline := time.Now().Add(hangLimit)
	for !cond() {
		if time.Now().After(deadline) {
			l.fail("timed out after %v waiting for %s (%s)", hangLimit, what, l.f.why)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// settle moves the clock in steps until cond holds (real time bounds it).
func (l *fleetLoop) settle(what string, step time.Duration, cond func() bool) {
	l.t.Helper()
	deadline := time.Now().Add(hangLimit)
	for !cond() {
		if time.Now().After(deadline) {
			l.fail("timed out after %v waiting for %s (%s)", hangLimit, what, l.f.why)
		}
		l.f.clock.Advance(step)
		time.Sleep(20 * time.Millisecond)
	}
}

// stapleOf is what node i staples for leaf j right now.
func (l *fleetLoop) stapleOf(i, j int) ([]byte, error) {
	c, err := l.f.cfgs[i].GetCertificate(&tls.ClientHelloInfo{
		ServerName:        fmt.Sprintf("c%d.test", j),
		SupportedVersions: []uint16{tls.VersionTLS13},
		SignatureSchemes:  []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256},
		SupportedCurves:   []tls.CurveID{tls.CurveP256},
	})
	if err != nil {
		return nil, err
	}
	return c.OCSPStaple, nil
}

// parse verifies a staple for leaf j (cached: the sampler sees the same
// bytes again and again). Call with l.mu held.
func (l *fleetLoop) parse(j int, st []byte) (*ocsp.Response, error) {
	key := fmt.Sprint(j) + "/" + string(st)
	p, ok := l.parsed[key]
	if !ok {
		p.resp, p.err = ocsp.ParseResponseForCert(st, l.f.leaves[j].Cert, l.f.ca.Cert)
		l.parsed[key] = p
	}
	return p.resp, p.err
}

// observe checks what node i staples for leaf j against the model
// (invariant 1), and learns from it. Call with l.mu held.
func (l *fleetLoop) observe(i, j int) {
	st, err := l.stapleOf(i, j)
	if err != nil {
		l.violate("node %d refused c%d: %v", i, j, err)
		return
	}
	if st == nil {
		return // checked between steps
	}
	resp, err := l.parse(j, st)
	if err != nil {
		l.violate("node %d staples a response for c%d that does not verify: %v", i, j, err)
		return
	}
	switch resp.Status {
	case ocsp.Revoked:
		if !l.verified[j] {
			l.verified[j] = true
			l.history = append(l.history, fmt.Sprintf("      (node %d staples c%d revoked: the revocation is verified)", i, j))
		}
		l.knows[i][j] = true
	case ocsp.Good:
		if l.knows[i][j] {
			l.violate("node %d staples c%d good (thisUpdate %v) over its revocation at %v, which it stapled or was told of", i, j, resp.ThisUpdate, l.revokedAt[j])
		}
		if !l.revokedAt[j].IsZero() && l.verified[j] && resp.ThisUpdate.After(l.revokedAt[j]) {
			l.violate("node %d staples c%d good from %v, after its revocation at %v", i, j, resp.ThisUpdate, l.revokedAt[j])
		}
		if g := l.goods[j]; len(g) == 0 || !bytes.Equal(g[len(g)-1], st) {
			if len(g) == 0 || resp.ThisUpdate.After(l.thisUpdate(j, g[len(g)-1])) {
				l.goods[j] = append(g, st)
			}
		}
	}
	if resp.ThisUpdate.Before(l.latest[i][j]) {
		l.violate("node %d rolled c%d back to a response from %v (%s), after one from %v", i, j, resp.ThisUpdate, statusName(resp.Status), l.latest[i][j])
	} else {
		l.latest[i][j] = resp.ThisUpdate
	}
}

func (l *fleetLoop) thisUpdate(j int, st []byte) time.Time {
	resp, _ := l.parse(j, st)
	return resp.ThisUpdate
}

func keyName(key string) string {
	if strings.HasSuffix(key, ".state") {
		return "fleet state"
	}
	return "response"
}

func statusName(s int) string {
	switch s {
	case ocsp.Good:
		return "good"
	case ocsp.Revoked:
		return "revoked"
	}
	return "unknown"
}

// violate records a violation (with l.mu held); check reports it.
func (l *fleetLoop) violate(format string, args ...any) {
	if len(l.violations) < 20 {
		l.violations = append(l.violations, fmt.Sprintf(format, args...))
	}
}

// sample checks every staple continuously until the returned function is
// called: a rollback between two steps is caught too.
func (l *fleetLoop) sample() func() {
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		for {
			l.mu.Lock()
			for i := range l.f.nodes {
				for j := range l.f.leaves {
					l.observe(i, j)
				}
			}
			l.mu.Unlock()
			select {
			case <-done:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(done); <-stopped }) }
}

// check runs after every step: the sampler's findings, the revocations the
// fleet must have spread by now, and a valid staple on every node.
func (l *fleetLoop) check() {
	l.t.Helper()
	l.mu.Lock()
	for i := range l.f.nodes {
		for j := range l.f.leaves {
			l.observe(i, j)
		}
	}
	violations := slices.Clone(l.violations)
	l.mu.Unlock()
	if len(violations) > 0 {
		l.fail("invariant violated:\n  %s", strings.Join(violations, "\n  "))
	}
	// A verified revocation whose keys are reachable reaches every node
	// (a notification, a resync, or what a node fetched alone shared once
	// the store answers).
	for j := range l.f.leaves {
		l.mu.Lock()
		verified := l.verified[j]
		l.mu.Unlock()
		if !verified || !l.reachable(j) {
			continue
		}
		l.waitFor(fmt.Sprintf("c%d's verified revocation on every node, its keys reachable", j), func() bool { return l.f.revokedEverywhere(j) })
		l.mu.Lock()
		for i := range l.f.nodes {
			l.knows[i][j] = true
		}
		l.mu.Unlock()
	}
	// Every node staples a valid response for every certificate.
	now := l.f.clock.Now()
	for i := range l.f.nodes {
		for j := range l.f.leaves {
			st, err := l.stapleOf(i, j)
			if err != nil || st == nil {
				l.fail("node %d staples nothing for c%d (%v)", i, j, err)
			}
			l.mu.Lock()
			resp, err := l.parse(j, st)
			l.mu.Unlock()
			if err != nil {
				l.fail("node %d staples an invalid response for c%d: %v", i, j, err)
			}
			if !resp.NextUpdate.After(now) {
				l.fail("node %d staples an expired response for c%d (nextUpdate %v, now %v)", i, j, resp.NextUpdate, now)
			}
		}
	}
}

// reachable reports whether leaf j's keys are on a server up and settled.
func (l *fleetLoop) reachable(j int) bool {
	if l.cluster != nil {
		return l.masterOf[j] != l.killed && l.masterOf[j] != l.paused
	}
	return l.killed == nil && l.paused == nil
}

// fresh reports whether node i staples for leaf j a response produced
// since before.
func (l *fleetLoop) fresh(i, j int, since time.Time) ([]byte, bool) {
	st, err := l.stapleOf(i, j)
	if err != nil || st == nil {
		l.f.why = fmt.Sprintf("node %d staples nothing for c%d", i, j)
		return nil, false
	}
	l.mu.Lock()
	resp, err := l.parse(j, st)
	l.mu.Unlock()
	if err != nil || resp.ThisUpdate.Before(since) {
		l.f.why = fmt.Sprintf("node %d has no fresh staple for c%d", i, j)
		return nil, false
	}
	return st, true
}

// allFresh reports whether every node staples a response produced since
// `since` for every leaf, the same one on every node for the leaves
// whose keys are reachable (alone[j] false).
func (l *fleetLoop) allFresh(since time.Time, alone []bool) bool {
	for j := range l.f.leaves {
		var first []byte
		for i := range l.f.nodes {
			st, ok := l.fresh(i, j, since)
			if !ok {
				return false
			}
			if alone != nil && alone[j] {
				continue
			}
			if first == nil {
				first = st
			} else if !bytes.Equal(first, st) {
				l.f.why = fmt.Sprintf("node %d staples another response for c%d than node 0", i, j)
				return false
			}
		}
	}
	return true
}

func (l *fleetLoop) expectOne(what string) {
	counts := l.f.requestsPerLeaf()
	for j, leaf := range l.f.leaves {
		if n := counts[leaf.Cert.SerialNumber.String()]; n != 1 {
			l.fail("%s: c%d cost %d responder requests, want 1", what, j, n)
		}
	}
}

// roundKind classifies leaf j for the coming round: what its requests are
// counted as, and whether each node may query it alone.
func (l *fleetLoop) roundKind(j int) (string, bool) {
	if l.cluster != nil {
		switch {
		case l.masterOf[j] == l.killed:
			return "cluster: keys on the killed master", true
		case l.masterOf[j] == l.paused:
			return "cluster: keys on the paused master", true
		case l.killed != nil:
			return "cluster: keys on a live master, another killed", false
		case l.paused != nil:
			return "cluster: keys on a live master, another paused", false
		}
		return "cluster: healthy", false
	}
	first := ""
	if l.failedOver {
		first = ", first round after it"
	}
	switch {
	case l.paused != nil:
		return "sentinel: master paused (failover or not)", true
	case l.killed != nil && l.promoted:
		return "sentinel: master killed, replica promoted" + first, false
	case l.killed != nil:
		return "sentinel: master killed, failover under way", true
	case l.failedOver:
		return "sentinel: first round after a failover", false
	case l.healed:
		return "sentinel: first round after a restart without failover", false
	}
	return "sentinel: healthy", false
}

// round is a regular refresh round (invariant 2).
func (l *fleetLoop) round() {
	l.t.Helper()
	f := l.f
	kinds := make([]string, len(f.leaves))
	alone := make([]bool, len(f.leaves))
	for j := range f.leaves {
		kinds[j], alone[j] = l.roundKind(j)
	}
	base := f.requestsPerLeaf()
	before := f.clock.Now()
	f.clock.Advance(refreshDue)
	l.settle("the refresh round", time.Second, func() bool { return l.allFresh(before, alone) })
	counts := f.requestsPerLeaf()
	var got []string
	for j, leaf := range f.leaves {
		n := counts[leaf.Cert.SerialNumber.String()] - base[leaf.Cert.SerialNumber.String()]
		l.stats.add(kinds[j], n)
		got = append(got, fmt.Sprintf("c%d:%d", j, n))
		if alone[j] && (n < 1 || n > len(f.nodes)) || !alone[j] && n != 1 {
			l.note("round: requests %s", strings.Join(got, " "))
			l.fail("c%d (%s): %d responder requests in the round, want %s", j, kinds[j], n, map[bool]string{true: "1 to 3 (at most one per node)", false: "exactly 1"}[alone[j]])
		}
	}
	l.note("round done: requests %s", strings.Join(got, " "))
	l.failedOver, l.healed = false, false
	clear(l.forgedTries)
	if l.paused != nil {
		l.roundsPaused++
	}
}

// step takes one random step.
func (l *fleetLoop) step() {
	l.t.Helper()
	type choice struct {
		weight int
		do     func() bool // false: not possible now, draw again
	}
	choices := []choice{
		{4, func() bool { l.note("refresh round"); l.round(); return true }},
		{2, l.revoke},
		{4, l.forge},
		{2, l.responderDown},
		{2, l.kill},
		{2, l.pause},
		{3, l.heal},
		{2, l.failover},
	}
	total := 0
	for _, c := range choices {
		total += c.weight
	}
	if l.cluster != nil && l.paused != nil && l.roundsPaused > 0 && !*fleetLoopKnown {
		// A master paused for long trips the whole store's breaker
		// (TestClusterMasterHangingCostsOneRequestForCertificatesOnLiveMasters):
		// resume it after one round.
		l.heal()
		return
	}
	for {
		r := l.rng.Intn(total)
		for _, c := range choices {
			if r < c.weight {
				if c.do() {
					return
				}
				break
			}
			r -= c.weight
		}
	}
}

// revoke: the responder flips a good certificate to revoked; a node learns
// it at once (Test), or the next refresh does.
func (l *fleetLoop) revoke() bool {
	var good []int
	for j := range l.f.leaves {
		if l.revokedAt[j].IsZero() {
			good = append(good, j)
		}
	}
	if len(good) <= len(l.f.leaves)/2 {
		return false
	}
	j := good[l.rng.Intn(len(good))]
	at := l.f.clock.Now()
	l.mu.Lock()
	l.revokedAt[j] = at
	l.mu.Unlock()
	l.f.r.SetStatus(l.f.leaves[j].Cert.SerialNumber, responder.Revoked(at, ocsp.KeyCompromise))
	if l.rng.Intn(2) == 0 {
		i := l.rng.Intn(len(l.f.nodes))
		l.note("responder revokes c%d; node %d tests it", j, i)
		st, err := l.f.nodes[i].Test(context.Background(), stapler.CertificateID(l.f.leaves[j].Cert.Raw))
		l.note("  test: state %s, store_error %q, err %v", st.State, st.StoreError, err)
	} else {
		l.note("responder revokes c%d (the next refresh finds it)", j)
	}
	return true
}

// forge writes a value no server wrote straight into Redis.
func (l *fleetLoop) forge() bool {
	f := l.f
	var ok []int
	for j := range f.leaves {
		if l.reachable(j) {
			ok = append(ok, j)
		}
	}
	if len(ok) == 0 {
		return false
	}
	j := ok[l.rng.Intn(len(ok))]
	id := stapler.CertificateID(f.leaves[j].Cert.Raw)
	ctx, cancel := context.WithTimeout(context.Background(), hangLimit)
	defer cancel()
	announce := l.rng.Intn(2) == 0
	key := id
	var value []byte
	var what string
	l.mu.Lock()
	goods := slices.Clone(l.goods[j])
	verified := l.verified[j]
	l.mu.Unlock()
	now := f.clock.Now()
	claimed := 0 // the tries a forged state claims
	switch kind := l.rng.Intn(8); {
	case kind == 0:
		what, value = "garbage", []byte(fmt.Sprintf("garbage %d", l.rng.Int()))
	case kind == 1:
		k := (j + 1 + l.rng.Intn(len(f.leaves)-1)) % len(f.leaves)
		st, _ := l.stapleOf(0, k)
		what, value = fmt.Sprintf("c%d's response", k), record.Encode(st, now)
	case kind == 2:
		if l.rng.Intn(2) == 0 {
			key = id + ".state"
		}
		what = "a hash at the " + keyName(key)
		rk := l.raw.redisKey(key)
		if err := l.admin.Del(ctx, rk).Err(); err != nil {
			l.fail("forging: %v", err)
		}
		if err := l.admin.HSet(ctx, rk, "field", "value").Err(); err != nil {
			l.fail("forging: %v", err)
		}
	case kind == 3:
		if l.rng.Intn(2) == 0 {
			key = id + ".state"
		}
		what, value = "a 40 KiB value at the "+keyName(key), bytes.Repeat([]byte("k"), 40<<10)
	case kind <= 5:
		// A valid older good response: the newest good seen before a
		// verified revocation, or, for a good certificate, an older one.
		if verified {
			what, value = "the last good response replayed over the revocation", goods[len(goods)-1]
		} else if len(goods) >= 2 {
			what, value = "an older good response replayed", goods[l.rng.Intn(len(goods)-1)]
		} else {
			what, value = "the current good response replayed", goods[0]
		}
		// Fetched "now": a fetch time in the future moves every node's
		// plan past the next round (TestAFetchTimeInTheFutureDoesNotDeferTheFleetsRefresh).
		fetched := now
		if *fleetLoopKnown && l.rng.Intn(2) == 0 {
			fetched = now.Add(time.Hour)
			what += ", fetched an hour from now"
		}
		value = record.Encode(value, fetched)
	default:
		// A plausible fleet state: "just tried, next in an interval", or a
		// failure with a retry in a minute.
		key = id + ".state"
		if l.rng.Intn(2) == 0 {
			what = "a plausible state: just tried, next query in 64 min"
			value = fmt.Appendf(nil, `{"tries": 0, "failed": false, "last_attempt": %d, "next": %d}`, now.UnixNano(), now.Add(64*time.Minute).UnixNano())
		} else {
			what = "a plausible state: one failed try, next in a minute"
			claimed = 1
			value = fmt.Appendf(nil, `{"tries": 1, "failed": true, "last_error": "forged", "last_attempt": %d, "next": %d}`, now.UnixNano(), now.Add(time.Minute).UnixNano())
		}
	}
	if key == id+".state" {
		l.forgedTries[j] = claimed
	}
	l.note("forge c%d: %s (announced: %v)", j, what, announce)
	if value != nil {
		if err := l.admin.Set(ctx, l.raw.redisKey(key), value, 0).Err(); err != nil {
			l.fail("forging: %v", err)
		}
	}
	if announce {
		if err := l.raw.publish(ctx, key); err != nil {
			l.fail("announcing: %v", err)
		}
	}
	// Let the announcement be read (the sampler watches meanwhile).
	time.Sleep(200 * time.Millisecond)
	return true
}

// responderDown: a refresh round with the responder failing, then the
// responder back and the retry that succeeds.
func (l *fleetLoop) responderDown() bool {
	f := l.f
	l.note("responder down (HTTP 500) for a refresh round")
	kinds := make([]string, len(f.leaves))
	alone := make([]bool, len(f.leaves))
	for j := range f.leaves {
		kinds[j], alone[j] = l.roundKind(j)
	}
	// Tries already counted (a forged plausible state may claim one).
	baseTries := make([]int, len(f.leaves))
	for j, leaf := range f.leaves {
		for i := range f.nodes {
			st, _ := f.nodes[i].StatusOf(stapler.CertificateID(leaf.Cert.Raw))
			baseTries[j] = max(baseTries[j], st.Tries)
		}
		baseTries[j] = max(baseTries[j], l.forgedTries[j])
	}
	clear(l.forgedTries)
	f.r.SetFault(responder.Fault{Kind: responder.FaultHTTP500})
	base := f.requestsPerLeaf()
	before := f.clock.Now()
	f.clock.Advance(refreshDue)
	ids := make([]string, len(f.leaves))
	for j, leaf := range f.leaves {
		ids[j] = stapler.CertificateID(leaf.Cert.Raw)
	}
	failedSince := func(i, j int) bool {
		st, _ := f.nodes[i].StatusOf(ids[j])
		f.why = fmt.Sprintf("node %d, c%d: tries %d, last attempt %v, last error %q", i, j, st.Tries, st.LastAttempt.Time, st.LastError)
		return st.LastError != "" && !st.LastAttempt.Before(before.Truncate(time.Second))
	}
	l.settle("every node to report the failed refresh", time.Second, func() bool {
		for i := range f.nodes {
			for j := range f.leaves {
				if !failedSince(i, j) {
					return false
				}
			}
		}
		return true
	})
	// The clock stands still while the fleet agrees on its tries.
	tries := func(j int) (lo, hi, sum int) {
		lo = 1 << 30
		for i := range f.nodes {
			st, _ := f.nodes[i].StatusOf(ids[j])
			lo, hi, sum = min(lo, st.Tries), max(hi, st.Tries), sum+st.Tries
		}
		return
	}
	// (and a request in flight to be reported: a request count that does
	// not match the tries for a minute is a violation)
	l.waitFor("every node to report the fleet's tries, one request each", func() bool {
		counts := f.requestsPerLeaf()
		for j, leaf := range f.leaves {
			n := counts[leaf.Cert.SerialNumber.String()] - base[leaf.Cert.SerialNumber.String()]
			lo, hi, sum := tries(j)
			if hi == 0 { // the recovery ran out (failed): its tries are no longer counted
				lo, hi, sum = 1+fleetConfig.RecoveryMaxTries, 1+fleetConfig.RecoveryMaxTries, len(f.nodes)*(1+fleetConfig.RecoveryMaxTries)
			}
			if !alone[j] && (lo != hi || n < 1 || n > hi || n < hi-baseTries[j]) || alone[j] && (n < 1 || n > sum) {
				f.why = fmt.Sprintf("c%d (%s): tries %d to %d (%d in all), %d requests", j, kinds[j], lo, hi, sum, n)
				return false
			}
		}
		return true
	})
	counts := f.requestsPerLeaf()
	var got []string
	for j, leaf := range f.leaves {
		n := counts[leaf.Cert.SerialNumber.String()] - base[leaf.Cert.SerialNumber.String()]
		_, hi, sum := tries(j)
		if hi == 0 {
			hi, sum = 1+fleetConfig.RecoveryMaxTries, len(f.nodes)*(1+fleetConfig.RecoveryMaxTries)
		}
		l.stats.add("responder down: "+kinds[j], n)
		got = append(got, fmt.Sprintf("c%d:%d(tries %d)", j, n, hi))
		if !alone[j] && (n < 1 || n > hi || n < hi-baseTries[j]) || alone[j] && (n < 1 || n > sum) {
			l.note("requests %s", strings.Join(got, " "))
			l.fail("c%d (%s, responder down): %d requests for %d tries", j, kinds[j], n, hi)
		}
	}
	l.note("responder down: requests %s", strings.Join(got, " "))
	l.check()

	f.r.SetFault(responder.Fault{})
	l.note("responder back")
	base = f.requestsPerLeaf()
	// Any response fetched since the failed round began is newer than
	// before (thisUpdate is a minute before the fetch, the round an hour
	// after before).
	// A certificate whose recovery ran out (failed) is asked again at its
	// next regular query, up to query_frequency away, not at a retry: the
	// others are counted once their retry is in (the clock moving by
	// seconds), the failed ones after their next query (by minutes; the
	// others may meanwhile make their next regular query too).
	failed := make([]bool, len(f.leaves))
	for j := range f.leaves {
		for i := range f.nodes {
			if st, _ := f.nodes[i].StatusOf(ids[j]); st.State == "failed" {
				failed[j] = true
			}
		}
	}
	freshExcept := func(skip []bool) bool {
		for j := range f.leaves {
			if skip[j] {
				continue
			}
			for i := range f.nodes {
				if _, ok := l.fresh(i, j, before); !ok {
					return false
				}
			}
		}
		return true
	}
	l.settle("the retry to succeed", time.Second, func() bool { return freshExcept(failed) })
	counts = f.requestsPerLeaf()
	step := time.Second
	if slices.Contains(failed, true) {
		step = time.Minute
	}
	l.settle("every certificate to be fresh again, and the same on every node", step, func() bool { return l.allFresh(before, alone) })
	later := f.requestsPerLeaf()
	for j, leaf := range f.leaves {
		if failed[j] {
			counts[leaf.Cert.SerialNumber.String()] = later[leaf.Cert.SerialNumber.String()]
		}
	}
	got = nil
	for j, leaf := range f.leaves {
		n := counts[leaf.Cert.SerialNumber.String()] - base[leaf.Cert.SerialNumber.String()]
		l.stats.add("responder back, retry: "+kinds[j], n)
		got = append(got, fmt.Sprintf("c%d:%d", j, n))
		if !alone[j] && n != 1 || alone[j] && (n < 1 || n > len(f.nodes)) {
			l.note("requests %s", strings.Join(got, " "))
			l.fail("c%d (%s, responder back): %d requests for the retry", j, kinds[j], n)
		}
	}
	l.note("responder back: requests %s", strings.Join(got, " "))
	if l.paused != nil {
		l.roundsPaused++
	}
	return true
}

// master is the server that is master now (Sentinel), or a random live
// Cluster master.
func (l *fleetLoop) master() *redistest.Server {
	if l.cluster != nil {
		return l.cluster.Masters[l.rng.Intn(len(l.cluster.Masters))]
	}
	switch l.sn.MasterAddr() {
	case l.sn.Master.Addr():
		return l.sn.Master
	case l.sn.Replica.Addr():
		return l.sn.Replica
	}
	l.fail("the sentinel names no master: %q", l.sn.MasterAddr())
	return nil
}

func (l *fleetLoop) name(s *redistest.Server) string {
	if l.cluster != nil {
		return fmt.Sprintf("master %d", slices.Index(l.cluster.Masters, s))
	}
	if s == l.sn.Master {
		return "server A"
	}
	return "server B"
}

// kill kills a master (one fault at a time).
func (l *fleetLoop) kill() bool {
	if l.killed != nil || l.paused != nil {
		return false
	}
	m := l.master()
	l.killed, l.faultMaster = m, m.Addr()
	l.note("SIGKILL %s (%s)", l.name(m), m.Addr())
	m.Kill()
	if l.sn != nil && l.rng.Intn(2) == 0 {
		l.waitSentinelMaster("the sentinel to fail over", func(master *redistest.Server) bool { return master != m })
		l.failedOver, l.promoted = true, true
		l.waitStoreOK("the nodes to reach the new master")
		l.note("  failed over to %s; the old master stays dead", l.name(l.master()))
	}
	return true
}

// pause stops a master (SIGSTOP).
func (l *fleetLoop) pause() bool {
	if l.killed != nil || l.paused != nil {
		return false
	}
	m := l.master()
	l.paused, l.faultMaster, l.roundsPaused = m, m.Addr(), 0
	l.note("SIGSTOP %s (%s)", l.name(m), m.Addr())
	m.Stop()
	return true
}

// heal restarts the killed server or resumes the paused one, and waits
// until the topology and the nodes are back.
func (l *fleetLoop) heal() bool {
	switch {
	case l.killed != nil:
		m := l.killed
		if l.sn != nil && !l.failedOver && l.rng.Intn(2) == 0 {
			l.waitSentinelMaster("the sentinel to fail over", func(master *redistest.Server) bool { return master != m })
			l.note("  failed over to %s", l.name(l.master()))
		}
		l.note("restart %s (empty)", l.name(m))
		m.Restart()
		l.killed = nil
	case l.paused != nil:
		m := l.paused
		if l.sn != nil && l.rng.Intn(2) == 0 {
			l.waitSentinelMaster("the sentinel to fail over", func(master *redistest.Server) bool { return master != m })
			l.note("  failed over to %s", l.name(l.master()))
		}
		l.note("SIGCONT %s", l.name(m))
		m.Continue()
		l.paused = nil
	default:
		return false
	}
	l.promoted = false
	l.settleTopology()
	return true
}

// healAll heals whatever fault is left.
func (l *fleetLoop) healAll() {
	for l.killed != nil || l.paused != nil {
		l.heal()
	}
	l.f.r.SetFault(responder.Fault{})
}

// failover forces a Sentinel failover (the Cluster has no replicas).
func (l *fleetLoop) failover() bool {
	if l.sn == nil || l.killed != nil || l.paused != nil {
		return false
	}
	old := l.master()
	l.faultMaster = old.Addr()
	l.note("SENTINEL FAILOVER (master %s)", l.name(old))
	c := redis.NewSentinelClient(&redis.Options{Addr: l.sn.Sentinel.Addr()})
	defer c.Close()
	var err error
	l.waitFor("the sentinel to accept a failover", func() bool {
		err = c.Failover(context.Background(), l.sn.Name).Err()
		l.f.why = fmt.Sprint(err)
		return err == nil
	})
	l.waitSentinelMaster("the forced failover", func(master *redistest.Server) bool { return master != old })
	l.settleTopology()
	return true
}

// waitSentinelMaster waits until the sentinel names a master that ok
// accepts and that says it is master.
func (l *fleetLoop) waitSentinelMaster(what string, ok func(*redistest.Server) bool) {
	l.waitFor(what, func() bool {
		addr := l.sn.MasterAddr()
		var m *redistest.Server
		for _, s := range []*redistest.Server{l.sn.Master, l.sn.Replica} {
			if s.Addr() == addr {
				m = s
			}
		}
		l.f.why = "the sentinel names " + addr
		return m != nil && ok(m) && role(m) == "master"
	})
}

// role is what the server says it is ("master", "slave"), or "" when it
// does not answer.
func role(s *redistest.Server) string {
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), DialTimeout: 500 * time.Millisecond, ReadTimeout: 500 * time.Millisecond, MaxRetries: -1})
	defer c.Close()
	info, err := c.Info(context.Background(), "replication").Result()
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "role:"); ok {
			return v
		}
	}
	return ""
}

// sentinelView is what the sentinel says of its master, for failure
// messages.
func (l *fleetLoop) sentinelView() string {
	c := redis.NewSentinelClient(&redis.Options{Addr: l.sn.Sentinel.Addr(), DialTimeout: 500 * time.Millisecond, ReadTimeout: 500 * time.Millisecond})
	defer c.Close()
	m, err := c.Master(context.Background(), l.sn.Name).Result()
	if err != nil {
		return err.Error()
	}
	return fmt.Sprintf("flags %s, failover state %s, %s:%s", m["flags"], m["failover-state"], m["ip"], m["port"])
}

// replicationInfo is the gist of what s says of its replication, for
// failure messages.
func replicationInfo(s *redistest.Server) string {
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), DialTimeout: 500 * time.Millisecond, ReadTimeout: 500 * time.Millisecond, MaxRetries: -1})
	defer c.Close()
	info, err := c.Info(context.Background(), "replication").Result()
	if err != nil {
		return err.Error()
	}
	var keep []string
	for _, line := range strings.Split(info, "\r\n") {
		for _, k := range []string{"role:", "master_host:", "master_port:", "master_link_status:", "connected_slaves:", "master_sync_in_progress:"} {
			if strings.HasPrefix(line, k) {
				keep = append(keep, line)
			}
		}
	}
	return strings.Join(keep, " ")
}

func replicaLinkUp(s *redistest.Server) bool {
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), DialTimeout: 500 * time.Millisecond, ReadTimeout: 500 * time.Millisecond, MaxRetries: -1})
	defer c.Close()
	info, err := c.Info(context.Background(), "replication").Result()
	return err == nil && strings.Contains(info, "role:slave") && strings.Contains(info, "master_link_status:up")
}

// settleTopology waits after a heal or a failover until the topology is
// whole (Cluster ok; one Sentinel master and its replica in sync) and no
// node reports a store error.
func (l *fleetLoop) settleTopology() {
	if l.cluster != nil {
		l.cluster.WaitOK()
	} else {
		var master, other *redistest.Server
		deadline := time.Now().Add(hangLimit)
		for whole := false; !whole; {
			l.waitSentinelMaster("the sentinel's master", func(m *redistest.Server) bool { master = m; return true })
			other = l.sn.Master
			if master == l.sn.Master {
				other = l.sn.Replica
			}
			// A master paused through a failover can come back as the
			// sentinel's master and then be turned into a replica of the
			// other server, the sentinel naming it still (seen with
			// redis-server 7): an operator would fail over by hand.
			slaveSince := time.Time{}
			for !whole && slaveSince.IsZero() || !whole && time.Since(slaveSince) < 10*time.Second {
				if time.Now().After(deadline) {
					l.fail("timed out after %v waiting for the other server to replicate the master (the sentinel names %s (%s); %s says %s; %s says %s)", hangLimit,
						master.Addr(), l.sentinelView(), l.name(master), replicationInfo(master), l.name(other), replicationInfo(other))
				}
				r := role(master)
				whole = r == "master" && replicaLinkUp(other)
				if r != "slave" {
					slaveSince = time.Time{}
				} else if slaveSince.IsZero() {
					slaveSince = time.Now()
				}
				time.Sleep(20 * time.Millisecond)
			}
			if !whole {
				l.note("  the sentinel names %s, a replica of %s, as its master: SENTINEL FAILOVER", l.name(master), l.name(other))
				c := redis.NewSentinelClient(&redis.Options{Addr: l.sn.Sentinel.Addr()})
				err := c.Failover(context.Background(), l.sn.Name).Err()
				c.Close()
				if err != nil {
					l.note("  SENTINEL FAILOVER: %v", err)
				}
			}
		}
		if master.Addr() != l.faultMaster {
			l.failedOver = true
		} else {
			l.healed = true
		}
		l.note("  topology whole: master %s, replica %s", l.name(master), l.name(other))
	}
	l.waitStoreOK("every node to reach the store for every certificate")
}

// waitStoreOK waits until no node reports a store error.
func (l *fleetLoop) waitStoreOK(what string) {
	l.waitFor(what, func() bool {
		for i := range l.f.nodes {
			for id, e := range l.f.storeErrors(i) {
				if e != "" {
					l.f.why = fmt.Sprintf("node %d, %s: %s", i, id[:8], e)
					return false
				}
			}
		}
		return true
	})
}
