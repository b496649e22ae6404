package stapler

import (
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/staplerkit/ocsp/config"
	"github.com/staplerkit/ocsp/responder"
)

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
