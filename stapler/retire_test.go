package stapler

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"weak"

	"github.com/staplerkit/ocsp/config"
	"github.com/staplerkit/ocsp/responder"
	"golang.org/x/crypto/ocsp"
)

// An application's GetCertificate hands out a new leaf every day and serves
// each for three days (rotation, per- tenant certificates loaded on
// demand). Over a simulated month on the injected clock, the managed
// certificates, their memory and the responder requests follow the live
// set, not the total ever served; a listed certificate never retires; a
// retired leaf served again is managed afresh.
func TestRotatingLeavesFollowTheLiveSet(t *testing.T) {
	const day = 24 * time.Hour
	e := newEnv(t, on, WithIdleRetirement(2*day))
	listed, err := e.srv.Issue(responder.LeafOptions{DNSNames: []string{"listed.test"}})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	live := map[string]*tls.Certificate{}
	cfg := e.s.Wrap(&tls.Config{
		Certificates: []tls.Certificate{listed.Certificate},
		GetCertificate: func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
			mu.Lock()
			defer mu.Unlock()
			return live[h.ServerName], nil
		},
	})
	var all []*responder.Leaf
	var firstState weak.Pointer[managed] // the first day's leaf's state, once managed
	requestsOnDay := make([]int, 31)
	for d := range 30 {
		leaf, err := e.srv.Issue(responder.LeafOptions{DNSNames: []string{fmt.Sprintf("day%d.test", d)}})
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, leaf)
		mu.Lock()
		live[fmt.Sprintf("day%d.test", d)] = &leaf.Certificate
		delete(live, fmt.Sprintf("day%d.test", d-3))
		names := make([]string, 0, len(live))
		for n := range live {
			names = append(names, n)
		}
		mu.Unlock()
		before := e.r.RequestCount()
		// Handshakes through the day, every six hours.
		for range 4 {
			for _, n := range names {
				if _, err := cfg.GetCertificate(&tls.ClientHelloInfo{ServerName: n}); err != nil {
					t.Fatal(err)
				}
			}
			cfg.GetCertificate(&tls.ClientHelloInfo{ServerName: "listed.test"})
			e.clock.Advance(6 * time.Hour)
			time.Sleep(5 * time.Millisecond) // let due refreshes run
		}
		requestsOnDay[d] = e.r.RequestCount() - before
		if d == 0 {
			m, err := e.s.lookup(CertificateID(leaf.Cert.Raw))
			if err != nil {
				t.Fatal(err)
			}
			firstState = weak.Make(m)
		}
	}
	eventually(t, "the last retirements", func() bool { return len(e.s.Status()) <= 1+3+2 })
	n := len(e.s.Status())
	t.Logf("after a month: %d managed of %d ever served; requests per day %v; %d retired", n, len(all)+1, requestsOnDay, e.s.Metrics().Retired)
	if n > 1+3+2 {
		t.Fatalf("%d certificates still managed after a month; the live set is 1 listed + 3", n)
	}
	if _, err := e.s.StatusOf(CertificateID(listed.Cert.Raw)); err != nil {
		t.Fatalf("the listed certificate retired: %v", err)
	}
	if r := e.s.Metrics().Retired; r < 20 {
		t.Fatalf("%d retired, want most of the 30 rotated-out leaves", r)
	}
	// Requests on a late day follow the live set (4 certificates), not the
	// 31 ever served: a day's refreshes of 4 to 6 certificates.
	if last := requestsOnDay[28]; last > 6*30 {
		t.Fatalf("%d requests on day 28", last)
	}
	// A retired certificate's state is memory no more: nothing holds it.
	eventually(t, "the retired state to be collected", func() bool {
		runtime.GC()
		return firstState.Value() == nil
	})
	// Served again, a retired leaf is managed afresh, with a fetch.
	old := all[0]
	mu.Lock()
	live["day0.test"] = &old.Certificate
	mu.Unlock()
	c, err := cfg.GetCertificate(&tls.ClientHelloInfo{ServerName: "day0.test"})
	if err != nil {
		t.Fatal(err)
	}
	if c.OCSPStaple == nil {
		eventually(t, "day0 stapled again", func() bool {
			c, _ := cfg.GetCertificate(&tls.ClientHelloInfo{ServerName: "day0.test"})
			return c != nil && c.OCSPStaple != nil
		})
	}
	runtime.KeepAlive(all)
}

// Under a flood of distinct leaves, the bound holds, and the most recently
// served survive.
func TestMaxCertificatesRetiresTheLeastRecentlyServed(t *testing.T) {
	e := newEnv(t, on, WithMaxCertificates(16), WithIdleRetirement(0))
	var leaves []*responder.Leaf
	for i := range 64 {
		l, err := e.srv.Issue(responder.LeafOptions{DNSNames: []string{fmt.Sprintf("f%d.test", i)}})
		if err != nil {
			t.Fatal(err)
		}
		leaves = append(leaves, l)
	}
	cfg := e.s.Wrap(&tls.Config{GetCertificate: func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
		var i int
		fmt.Sscanf(h.ServerName, "f%d.test", &i)
		return &leaves[i].Certificate, nil
	}})
	for i := range leaves {
		cfg.GetCertificate(&tls.ClientHelloInfo{ServerName: fmt.Sprintf("f%d.test", i)})
		e.clock.Advance(2 * time.Second) // each served a little later than the last
		if n := len(e.s.Status()); n > 16 {
			t.Fatalf("%d managed with a bound of 16", n)
		}
	}
	if _, err := e.s.StatusOf(CertificateID(leaves[63].Cert.Raw)); err != nil {
		t.Fatalf("the most recently served leaf retired: %v", err)
	}
	if _, err := e.s.StatusOf(CertificateID(leaves[0].Cert.Raw)); err == nil {
		t.Fatal("the least recently served leaf is still managed")
	}
}

// "Listed certificates never retire", but Wrap registers its certificates
// (addAll, which applies the bound) before it marks them listed: wrapping
// more certificates than WithMaxCertificates allows retires some of the
// very certificates being listed. They are then neither fetched at Wrap nor
// protected from retirement, and the first handshakes go unstapled.
func TestTheBoundNeverRetiresListedCertificatesAtWrap(t *testing.T) {
	e := newEnv(t, on, WithMaxCertificates(2))
	var certs []tls.Certificate
	for i := range 4 {
		l, err := e.srv.Issue(responder.LeafOptions{DNSNames: []string{fmt.Sprintf("c%d.test", i)}})
		if err != nil {
			t.Fatal(err)
		}
		certs = append(certs, l.Certificate)
	}
	e.s.Wrap(&tls.Config{Certificates: certs})
	if n := e.s.Metrics().Retired; n != 0 {
		t.Errorf("%d listed certificates retired at Wrap, want 0", n)
	}
	if n := len(e.s.Status()); n != len(certs) {
		t.Errorf("%d certificates managed after wrapping %d listed ones", n, len(certs))
	}
	ctx, cancel := context.WithTimeout(context.Background(), hangLimit)
	defer cancel()
	if err := e.s.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	stapled := 0
	for _, st := range e.s.Status() {
		if st.Stapled {
			stapled++
		}
	}
	if stapled != len(certs) {
		t.Fatalf("%d of %d listed certificates stapled after Ready", stapled, len(certs))
	}
}

// With as many listed certificates as WithMaxCertificates allows, a
// certificate found on its own (the application's GetCertificate) is
// retired by the bound in the very add that registers it; serveManaged sees
// it removed and serves it "afresh": add, retired again, and so on, without
// end — a stack overflow, fatal to the process, on one handshake for the
// name. Run in a child process so that the crash fails this test alone.
func TestTheBoundNeverRecursesWhenListedCertificatesFillIt(t *testing.T) {
	if os.Getenv("BOUND_RECURSION_CHILD") != "1" {
		cmd := exec.Command(os.Args[0], "-test.run=^TestTheBoundNeverRecursesWhenListedCertificatesFillIt$", "-test.timeout=2m")
		cmd.Env = append(os.Environ(), "BOUND_RECURSION_CHILD=1")
		out, err := cmd.CombinedOutput()
		if err != nil {
			if i := bytes.Index(out, []byte("stack overflow")); i >= 0 {
				out = out[max(0, i-200):min(len(out), i+100)]
			} else if len(out) > 1000 {
				out = out[:1000]
			}
			t.Fatalf("one handshake for a certificate from GetCertificate, with the bound reached by listed certificates: %v\n%s", err, out)
		}
		return
	}
	debug.SetMaxStack(64 << 20) // the recursion overflows in seconds, not minutes
	e := newEnv(t, on, WithMaxCertificates(1))
	other, err := e.srv.Issue(responder.LeafOptions{DNSNames: []string{"other.test"}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := tlsConfigFor(e.leaf) // one listed certificate: the bound
	cfg.GetCertificate = func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
		if h.ServerName == "other.test" {
			return &other.Certificate, nil
		}
		return nil, nil
	}
	addr := e.serve(e.s.Wrap(cfg))
	if _, _, err := e.handshake(addr, func(c *tls.Config) { c.ServerName = "other.test" }); err != nil {
		t.Fatal(err)
	}
}

// "Listed certificates never retire" (WithMaxCertificates) holds for a
// listed certificate that was Removed and is then served again by its
// wrapped config ("managed afresh, as on first sight"): it is stapled
// again, and a flood of certificates from an application's GetCertificate
// does not retire it under the bound. Found when it came back as a
// certificate found on its own, not marked listed, and the listed config's
// handshakes went cold again each time it retired.
func TestListedServedAgainAfterRemoveNeverRetires(t *testing.T) {
	e := newEnv(t, on, WithMaxCertificates(2))
	listed := e.s.Wrap(tlsConfigFor(e.leaf))
	e.mustGetStaple(e.serve(listed), e.leaf, 0)
	id := CertificateID(e.leaf.Cert.Raw)
	if err := e.s.Remove(id); err != nil {
		t.Fatal(err)
	}
	if c, err := listed.GetCertificate(helloFor()); err != nil || c.OCSPStaple == nil {
		t.Fatalf("served again after Remove: not stapled (%v)", err)
	}
	var flood []tls.Certificate
	for range 3 {
		l, err := e.srv.Issue(responder.LeafOptions{DNSNames: []string{"flood.test"}})
		if err != nil {
			t.Fatal(err)
		}
		flood = append(flood, l.Certificate)
	}
	next := 0
	app := e.s.Wrap(&tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		c := &flood[next]
		next++
		return c, nil
	}})
	for range flood {
		e.clock.Advance(2 * time.Second) // each served later than the listed one
		if _, err := app.GetCertificate(&tls.ClientHelloInfo{ServerName: "flood.test"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.s.StatusOf(id); err != nil {
		t.Fatalf("the listed certificate, served again after Remove, retired under the bound: %v", err)
	}
}

// Two configs list one leaf, A with its issuer in the chain, B with the
// leaf alone (a server that sends a short chain to some clients; B is
// stapled because the state learned the issuer from A's chain). After
// Remove ("served again, it is managed afresh, as on first sight"), A is
// stapled again even when B's handshake comes first: the state is not
// registered anew from B's bare chain, without the issuer (adopt and
// viewFor never take the issuer from another chain; see
// TestAFixedChainIsStapled). Found when neither config was stapled after
// B's handshake came first, a race under concurrent handshakes
// (TestSameLeafConfigsUnderChurn hit it in 2 runs out of 8 before its
// second chain was made to hold the issuer).
func TestRemoveThenLeafOnlyFirstKeepsTheIssuer(t *testing.T) {
	e := newEnv(t, on)
	a := e.s.Wrap(tlsConfigFor(e.leaf))
	b := e.s.Wrap(&tls.Config{Certificates: []tls.Certificate{leafOnly(e.leaf)}})
	hello := helloFor()
	for _, cfg := range []*tls.Config{a, b} {
		if c, err := cfg.GetCertificate(hello); err != nil || c.OCSPStaple == nil {
			t.Fatalf("before Remove: not stapled (%v)", err)
		}
	}
	if err := e.s.Remove(CertificateID(e.leaf.Cert.Raw)); err != nil {
		t.Fatal(err)
	}
	b.GetCertificate(hello) // served again: B's handshake first
	e.waitQueries(e.leaf, 1)
	a.GetCertificate(hello)
	before := e.advanceToNextRefresh(e.leaf)
	e.waitQueries(e.leaf, before+1)
	if c, err := a.GetCertificate(hello); err != nil || c.OCSPStaple == nil {
		t.Fatalf("A, whose chain holds the issuer, is not stapled after Remove (%v): %s", err, e.status(e.leaf).LastError)
	}
}

func TestRemoveStopsManagingARotatedCertificate(t *testing.T) {
	e := newEnv(t, config.OCSP{OCSPFunctionality: true, QueryFrequency: 300})
	next, err := e.srv.Issue(responder.LeafOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var current atomic.Pointer[tls.Certificate]
	current.Store(&e.leaf.Certificate)
	addr := e.serve(e.s.Wrap(&tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return current.Load(), nil }}))
	e.mustGetStaple(addr, e.leaf, ocsp.Good)
	current.Store(&next.Certificate) // rotation
	e.mustGetStaple(addr, next, ocsp.Good)
	old := CertificateID(e.leaf.Cert.Raw)
	if err := e.s.Remove(old); err != nil {
		t.Fatal(err)
	}
	if _, err := e.s.StatusOf(old); !errors.Is(err, ErrUnknownCertificate) {
		t.Fatalf("removed certificate still has a status: %v", err)
	}
	before := e.r.CountFor(e.leaf.Cert.SerialNumber)
	e.clock.Advance(time.Hour)
	e.waitQueries(next, 2)
	if n := e.r.CountFor(e.leaf.Cert.SerialNumber); n != before {
		t.Fatalf("the removed certificate was queried %d more times", n-before)
	}
	// Served again, it is managed afresh.
	current.Store(&e.leaf.Certificate)
	if _, _, err := e.handshake(addr); err != nil {
		t.Fatal(err)
	}
	e.waitStapled(e.leaf)
	e.mustGetStaple(addr, e.leaf, ocsp.Good)
	if err := e.s.Remove("nope"); !errors.Is(err, ErrUnknownCertificate) {
		t.Fatalf("Remove of an unknown id: %v", err)
	}
}

// Remove always means "managed afresh when served again", even for a
// certificate whose stapling was off.
func TestDisabledThenRemovedIsManagedAfresh(t *testing.T) {
	e := newEnv(t, on)
	addr := e.wrapAndServe(e.leaf.Certificate)
	e.waitStapled(e.leaf)
	id := CertificateID(e.leaf.Cert.Raw)
	if err := e.s.SetStapling(id, config.Stapling{Enabled: false}); err != nil {
		t.Fatal(err)
	}
	e.mustGetNoStaple(addr)
	if err := e.s.Remove(id); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.handshake(addr); err != nil { // served again: managed afresh
		t.Fatal(err)
	}
	e.waitStapled(e.leaf)
	if st, _ := e.s.Stapling(id); !st.Enabled {
		t.Fatalf("managed afresh with %+v, want the defaults (enabled)", st)
	}
}

// A certificate removed while its query was in flight is never put back
// on the scheduler by that query's outcome (which plans the next query).
func TestARemovedCertificateIsNeverScheduledAgain(t *testing.T) {
	e := newEnv(t, on)
	e.wrapAndServe(e.leaf.Certificate)
	e.waitStapled(e.leaf)
	m, err := e.s.lookup(CertificateID(e.leaf.Cert.Raw))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.s.Remove(m.ID()); err != nil {
		t.Fatal(err)
	}
	// What a refresh in flight does when its outcome lands after Remove.
	e.s.sched.Schedule(m, e.clock.Now())
	if due := e.s.sched.DueAt(m); !due.IsZero() {
		t.Fatalf("a removed certificate was scheduled again, due %v", due)
	}
	o := e.s.query(context.Background(), m)
	e.s.record(m, o)
	if due := e.s.sched.DueAt(m); !due.IsZero() {
		t.Fatalf("a query's outcome scheduled a removed certificate again, due %v", due)
	}
}

// Two configs listing the same leaf with different chains, hits that
// allocate nothing before a Remove, are served stapled again after it
// ("managed afresh, as on first sight") and still allocate nothing when
// handshakes alternate between them. Found when the list entries kept the
// removed state and both shared one view of the new state, rebuilt (locking
// and allocating) on every switch until both were wrapped again.
func TestServedAgainAfterRemoveAllocatesNothing(t *testing.T) {
	e := newEnv(t, on)
	a := e.s.Wrap(tlsConfigFor(e.leaf))
	leafOnly := e.leaf.Certificate
	leafOnly.Certificate = leafOnly.Certificate[:1:1]
	b := e.s.Wrap(&tls.Config{Certificates: []tls.Certificate{leafOnly}})
	e.mustGetStaple(e.serve(a), e.leaf, ocsp.Good)
	hello := helloFor()
	pair := func() { a.GetCertificate(hello); b.GetCertificate(hello) }
	if n := testing.AllocsPerRun(100, pair); n != 0 {
		t.Fatalf("before Remove: %v allocations, want 0", n)
	}
	if err := e.s.Remove(CertificateID(e.leaf.Cert.Raw)); err != nil {
		t.Fatal(err)
	}
	for _, cfg := range []*tls.Config{a, b} {
		c, err := cfg.GetCertificate(hello) // waits (cold) for the new state's first staple
		if err != nil || c.OCSPStaple == nil {
			t.Fatalf("served again after Remove: not stapled (%v)", err)
		}
	}
	e.waitStapled(e.leaf)
	ca, _ := a.GetCertificate(hello)
	cb, _ := b.GetCertificate(hello)
	if len(ca.Certificate) != 2 || len(cb.Certificate) != 1 {
		t.Fatalf("after Remove: chains of %d and %d, want 2 and 1", len(ca.Certificate), len(cb.Certificate))
	}
	if n := testing.AllocsPerRun(100, pair); n != 0 {
		t.Fatalf("served again after Remove: %v allocations per pair of stapled handshakes, want 0", n)
	}
}
