package stapler

import (
	"crypto/tls"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/staplerkit/ocsp/config"
	"github.com/staplerkit/ocsp/internal/ocspfetch"
	"github.com/staplerkit/ocsp/responder"
	"golang.org/x/crypto/ocsp"
)

// faultMessages is what Status().LastError says for each fault the
// responder can inject: the fault must be recognisable from the status.
var faultMessages = map[responder.FaultKind]string{
	responder.FaultHang:               "context deadline exceeded",
	responder.FaultHTTP500:            "500 Internal Server Error",
	responder.FaultHTTP503HTML:        "503 Service Unavailable",
	responder.FaultWrongContentType:   "text/html",
	responder.FaultTruncatedBody:      "malformed",
	responder.FaultGarbageBody:        "malformed",
	responder.FaultHugeBody:           "larger than the cap",
	responder.FaultEndlessBody:        "larger than the cap",
	responder.FaultRedirectLoop:       "redirects",
	responder.FaultRedirectScheme:     `scheme "ftp"`,
	responder.FaultMalformedRequest:   "malformedRequest",
	responder.FaultInternalError:      "internalError",
	responder.FaultTryLater:           "tryLater",
	responder.FaultSigRequired:        "sigRequired",
	responder.FaultUnauthorized:       "unauthorized",
	responder.FaultUnauthorizedSigner: "not issued by the certificate's issuer",
	responder.FaultDelegateWithoutEKU: "lacks the id-kp-OCSPSigning",
	responder.FaultExpiredDelegate:    "is valid only from",
	responder.FaultRevokedDelegate:    "was revoked at",
	responder.FaultWrongSerial:        "another certificate",
	responder.FaultWrongIssuerHash:    "issuer name or key hash does not",
	responder.FaultThisUpdateInFuture: "not yet valid",
	responder.FaultNextUpdateInPast:   "expired",
	responder.FaultNoNextUpdate:       "no nextUpdate",
}

// deadlineRecorder wraps the Stapler's own transport and records the
// longest time any request to the responder was given: the deadline of its
// context as it started, which also bounds reading the body.
type deadlineRecorder struct {
	next      http.RoundTripper
	mu        sync.Mutex
	requests  int
	longest   time.Duration
	unbounded bool
}

func (d *deadlineRecorder) RoundTrip(r *http.Request) (*http.Response, error) {
	deadline, ok := r.Context().Deadline()
	d.mu.Lock()
	d.requests++
	if !ok {
		d.unbounded = true
	} else if left := time.Until(deadline); left > d.longest {
		d.longest = left
	}
	d.mu.Unlock()
	return d.next.RoundTrip(r)
}

// check fails t unless every request was given at most limit.
func (d *deadlineRecorder) check(t *testing.T, limit time.Duration) {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.requests == 0 || d.unbounded || d.longest > limit {
		t.Fatalf("%d requests, unbounded %v, the longest given %v: want every exchange bounded by response_timeout (%v)", d.requests, d.unbounded, d.longest, limit)
	}
}

// noMoreEvents fails the test if the status hook reported anything more
// for leaf than the events already consumed.
func (e *env) noMoreEvents(leaf *responder.Leaf) {
	e.t.Helper()
	id := CertificateID(leaf.Cert.Raw)
	for {
		select {
		case ev := <-e.events:
			if ev.ID == id {
				e.t.Fatalf("the status hook fired again: %s -> %s", ev.From, ev.To)
			}
		default:
			return
		}
	}
}

// checkMustStaple asserts that a must-staple certificate is either refused
// or served with a staple that verifies and has not expired.
func (e *env) checkMustStaple(addr string, leaf *responder.Leaf) {
	e.t.Helper()
	staple, _, err := e.handshake(addr, func(c *tls.Config) { c.ServerName = "must.test" })
	if err != nil {
		return // refused: fine
	}
	resp, perr := ocsp.ParseResponseForCert(staple, leaf.Cert, e.ca.Cert)
	if perr != nil || resp.Status != ocsp.Good || !e.clock.Now().Before(resp.NextUpdate) {
		e.t.Fatalf("must-staple certificate served with an invalid staple: %v", perr)
	}
}

// TestFaultMatrix runs every fault the responder can inject against a
// certificate with a good staple (and a must-staple one beside it), on an
// injected clock, and checks what the client sees, what Status says, how
// many retries happen and when, and that recovery is immediate.
func TestFaultMatrix(t *testing.T) {
	for _, kind := range responder.AllFaults() {
		t.Run(kind.String(), func(t *testing.T) {
			t.Parallel()
			msg, ok := faultMessages[kind]
			if !ok {
				t.Fatalf("no expectation for fault %v", kind)
			}
			const maxTries = 2
			// The Stapler's own client (its redirect rules included),
			// watched: every exchange must be bounded by response_timeout.
			client := ocspfetch.NewHTTPClient()
			deadlines := &deadlineRecorder{next: client.Transport}
			client.Transport = deadlines
			e := newEnv(t, config.OCSP{OCSPFunctionality: true, QueryFrequency: 3600, ResponseTimeout: 1, RecoveryFrequency: 60, RecoveryMaxTries: maxTries}, WithHTTPClient(client))
			e.r.SetWindow(responder.Window{Backdate: time.Minute, Lifetime: 4 * time.Hour})
			ms, err := e.srv.Issue(responder.LeafOptions{DNSNames: []string{"must.test"}, MustStaple: true})
			if err != nil {
				t.Fatal(err)
			}
			addr := e.wrapAndServe(e.leaf.Certificate, ms.Certificate)
			good := e.mustGetStaple(addr, e.leaf, ocsp.Good)
			e.waitStapled(ms)
			queries := e.waitQueries(e.leaf, 1).Queries
			e.expectEvent(e.leaf, StateNone, StateGood)

			for _, l := range []*responder.Leaf{e.leaf, ms} {
				e.r.SetSerialFault(l.Cert.SerialNumber, responder.Fault{Kind: kind})
			}
			// The regular refresh fails: the fault is named, a retry is
			// planned one recovery_frequency later, the good staple stays.
			e.clock.Advance(time.Hour)
			queries++
			st := e.waitQueries(e.leaf, queries)
			e.waitQueries(ms, queries)
			if !strings.Contains(st.LastError, msg) {
				t.Fatalf("last error %q does not name the fault (%q)", st.LastError, msg)
			}
			if st.Tries != 1 || st.State != StateGood || !st.Stapled {
				t.Fatalf("after the first failure: %+v", st)
			}
			for try := 2; try <= maxTries+1; try++ {
				if d := st.NextRefresh.Sub(e.clock.Now()); d > time.Minute || d < 53*time.Second {
					t.Fatalf("retry %d planned in %v, want recovery_frequency less jitter", try, d)
				}
				if got := e.mustGetStaple(addr, e.leaf, ocsp.Good); !got.ThisUpdate.Equal(good.ThisUpdate) {
					t.Fatal("the good staple was replaced")
				}
				e.checkMustStaple(addr, ms)
				e.clock.Advance(time.Minute)
				queries++
				st = e.waitQueries(e.leaf, queries)
				e.waitQueries(ms, queries) // both quiet before the clock moves again
				if st.Queries != queries {
					t.Fatalf("%d queries after retry %d, want %d", st.Queries, try, queries)
				}
			}
			// The tries are used up: failed, reported once, regular schedule.
			if st.State != StateFailed || st.Tries != 0 || !strings.Contains(st.LastError, msg) {
				t.Fatalf("after %d retries: %+v", maxTries, st)
			}
			e.expectEvent(e.leaf, StateGood, StateFailed)
			if d := st.NextRefresh.Sub(e.clock.Now()); d < 53*time.Minute || d > time.Hour {
				t.Fatalf("after failing, next query in %v, want query_frequency", d)
			}
			// Lenient: the last good staple is served until just before its
			// nextUpdate, and never after.
			// The jump crosses one regular query of each: let both finish
			// before the clock moves on (a response signed before a jump and
			// checked after it would be judged at the wrong time).
			e.clock.Advance(good.NextUpdate.Sub(e.clock.Now()) - time.Minute)
			queries++
			e.waitQueries(e.leaf, queries)
			e.waitQueries(ms, queries)
			e.mustGetStaple(addr, e.leaf, ocsp.Good)
			e.checkMustStaple(addr, ms)
			e.clock.Advance(2 * time.Minute)
			e.mustGetNoStaple(addr)
			if _, _, err := e.handshake(addr, func(c *tls.Config) { c.ServerName = "must.test" }); err == nil {
				t.Fatal("must-staple certificate served with no valid staple")
			}
			if st := e.status(e.leaf); st.Stapled {
				t.Fatalf("status says stapled past nextUpdate: %+v", st)
			}
			// Healed: the next attempt succeeds.
			for _, l := range []*responder.Leaf{e.leaf, ms} {
				e.r.SetSerialFault(l.Cert.SerialNumber, responder.Fault{})
			}
			st = e.waitQueries(e.leaf, e.advanceToNextRefresh(e.leaf)+1)
			if st.State != StateGood || st.LastError != "" || !st.Stapled {
				t.Fatalf("not recovered: %+v", st)
			}
			e.expectEvent(e.leaf, StateFailed, StateGood)
			e.mustGetStaple(addr, e.leaf, ocsp.Good)
			// Each change was reported once: none -> good, good -> failed,
			// failed -> good, and nothing else.
			e.noMoreEvents(e.leaf)
			deadlines.check(t, time.Second)
		})
	}
}

// TestMustStapleIsNeverServedWithoutAValidStaple starts a must-staple
// certificate against a responder that misbehaves from the first request.
func TestMustStapleIsNeverServedWithoutAValidStaple(t *testing.T) {
	for _, kind := range responder.AllFaults() {
		t.Run(kind.String(), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, config.OCSP{OCSPFunctionality: true, ResponseTimeout: 1}, WithColdWait(50*time.Millisecond))
			ms, err := e.srv.Issue(responder.LeafOptions{DNSNames: []string{"must.test"}, MustStaple: true})
			if err != nil {
				t.Fatal(err)
			}
			e.r.SetSerialFault(ms.Cert.SerialNumber, responder.Fault{Kind: kind})
			addr := e.wrapAndServe(ms.Certificate)
			for range 3 {
				if _, _, err := e.handshake(addr, func(c *tls.Config) { c.ServerName = "must.test" }); err == nil {
					t.Fatal("must-staple certificate served without a valid staple")
				}
			}
			e.waitQueries(ms, 1)
			if _, _, err := e.handshake(addr, func(c *tls.Config) { c.ServerName = "must.test" }); err == nil {
				t.Fatal("must-staple certificate served without a valid staple")
			}
		})
	}
}

// TestSimulatedWeek runs seven days on an injected clock: the responder is
// up for two days, down for three, up again, and the certificate is revoked
// on day six. Every query and every staple served is checked against the
// documented behaviour; nothing is ever stapled past its nextUpdate.
func TestSimulatedWeek(t *testing.T) {
	const day = 24 * time.Hour
	e := newEnv(t, config.OCSP{OCSPFunctionality: true, QueryFrequency: 3600, ResponseTimeout: 1, RecoveryFrequency: 60, RecoveryMaxTries: 5})
	e.r.SetWindow(responder.Window{Backdate: time.Minute, Lifetime: day})
	cfg := e.s.Wrap(tlsConfigFor(e.leaf))
	addr := e.serve(cfg)
	e.mustGetStaple(addr, e.leaf, ocsp.Good)
	e.waitQueries(e.leaf, 1)
	e.expectEvent(e.leaf, StateNone, StateGood)

	t0 := e.clock.Now()
	type phase struct {
		at    time.Duration
		apply func()
	}
	phases := []phase{
		{2 * day, func() { e.r.SetFault(responder.Fault{Kind: responder.FaultHTTP503HTML}) }},
		{5 * day, func() { e.r.SetFault(responder.Fault{}) }},
		{6 * day, func() {
			e.r.SetStatus(e.leaf.Cert.SerialNumber, responder.Revoked(e.clock.Now(), ocsp.KeyCompromise))
		}},
	}
	end := t0.Add(7 * day)

	// served checks what a handshake gets now: a staple that verifies and
	// has not expired, or none. It returns the staple's status (-1: none).
	served := func() int {
		t.Helper()
		c, err := cfg.GetCertificate(helloFor())
		if err != nil {
			t.Fatalf("handshake refused at %v: %v", e.clock.Now().Sub(t0), err)
		}
		if c.OCSPStaple == nil {
			return -1
		}
		resp, err := ocsp.ParseResponseForCert(c.OCSPStaple, e.leaf.Cert, e.ca.Cert)
		if err != nil {
			t.Fatalf("at %v the staple does not verify: %v", e.clock.Now().Sub(t0), err)
		}
		if !e.clock.Now().Before(resp.NextUpdate) {
			t.Fatalf("at %v a staple is served past its nextUpdate %v", e.clock.Now().Sub(t0), resp.NextUpdate.Sub(t0))
		}
		return resp.Status
	}

	queriesPerDay := make([]int, 7)
	var lastGoodNext time.Time
	var sawFailed, sawBack, sawRevoked bool
	unstapledFrom := time.Time{}
	for e.clock.Now().Before(end) {
		now := e.clock.Now()
		m, _ := e.s.lookup(CertificateID(e.leaf.Cert.Raw))
		var due time.Time
		eventually(t, "a planned query", func() bool { due = e.s.sched.DueAt(m); return !due.IsZero() })
		// Stop at phase changes and at the staple's expiry on the way.
		if len(phases) > 0 && !t0.Add(phases[0].at).After(due) {
			e.clock.Advance(t0.Add(phases[0].at).Sub(now))
			phases[0].apply()
			phases = phases[1:]
			continue
		}
		if !lastGoodNext.IsZero() && lastGoodNext.After(now) && !lastGoodNext.After(due) {
			e.clock.Advance(lastGoodNext.Sub(now) - time.Second)
			if served() != ocsp.Good {
				t.Fatalf("at %v, a second before nextUpdate, the good staple is gone", e.clock.Now().Sub(t0))
			}
			e.clock.Advance(time.Second)
			if got := served(); got != -1 {
				t.Fatalf("at nextUpdate a staple (%d) is still served", got)
			}
			unstapledFrom = e.clock.Now()
			continue
		}
		before := e.status(e.leaf).Queries
		e.clock.Advance(due.Sub(now))
		st := e.waitQueries(e.leaf, before+1)
		elapsed := e.clock.Now().Sub(t0)
		if elapsed < 7*day {
			queriesPerDay[elapsed/day]++
		}
		status := served()
		switch {
		case elapsed < 2*day:
			if st.State != StateGood || status != ocsp.Good {
				t.Fatalf("day %d, responder up: state %s, staple %d", elapsed/day, st.State, status)
			}
		case elapsed < 5*day:
			if st.LastError == "" {
				t.Fatalf("at %v the responder is down but the query succeeded", elapsed)
			}
			if st.State == StateFailed && !sawFailed {
				sawFailed = true
				e.expectEvent(e.leaf, StateGood, StateFailed)
				if elapsed > 2*day+time.Hour+10*time.Minute {
					t.Fatalf("failed only at %v: five retries a minute apart should take minutes", elapsed)
				}
			}
		case elapsed < 6*day:
			if !sawBack {
				sawBack = true
				if st.State != StateGood || status != ocsp.Good || elapsed > 5*day+time.Hour {
					t.Fatalf("back at %v: state %s, staple %d", elapsed, st.State, status)
				}
				e.expectEvent(e.leaf, StateFailed, StateGood)
			}
		default:
			if st.State == StateRevoked && !sawRevoked {
				sawRevoked = true
				if status != ocsp.Revoked || elapsed > 6*day+time.Hour {
					t.Fatalf("revoked seen at %v with staple %d", elapsed, status)
				}
				e.expectEvent(e.leaf, StateGood, StateRevoked)
			}
		}
		if st.LastError == "" && (status == ocsp.Good || status == ocsp.Revoked) {
			c, _ := cfg.GetCertificate(helloFor())
			resp, _ := ocsp.ParseResponseForCert(c.OCSPStaple, e.leaf.Cert, e.ca.Cert)
			lastGoodNext = resp.NextUpdate
		}
	}
	if !sawFailed || !sawBack || !sawRevoked || unstapledFrom.IsZero() {
		t.Fatalf("failed %v, back %v, revoked %v, unstapled %v", sawFailed, sawBack, sawRevoked, unstapledFrom)
	}
	// The staple outlived the outage's start by a day (its nextUpdate), no more.
	if gap := unstapledFrom.Sub(t0.Add(2 * day)); gap > day || gap < 22*time.Hour {
		t.Fatalf("the staple lasted %v into the outage, want about a day", gap)
	}
	t.Logf("queries per day: %v", queriesPerDay)
	for d, n := range queriesPerDay {
		up := d < 2 || d >= 5
		if up && (n < 24 || n > 27) {
			t.Errorf("day %d (up): %d queries, want one an hour (24-27 with jitter)", d, n)
		}
		// Down: cycles of a query and 5 retries a minute apart, then the
		// regular schedule (an hour less jitter): 22 to 25 cycles a day. On
		// day 2 the held staple nears its expiry, and retries come at half
		// the time it has left (an hour, half an hour, ... a second: up to
		// 13 more), so that it is renewed the moment the responder is back.
		extra := 0
		if d == 2 {
			extra = 13
		}
		if !up && (n < 6*22 || n > 6*25+extra) {
			t.Errorf("day %d (down): %d queries, want 6 per cycle of about an hour", d, n)
		}
	}
	// A real handshake at the end gets the revoked staple (lenient policy).
	e.mustGetStaple(addr, e.leaf, ocsp.Revoked)
}
