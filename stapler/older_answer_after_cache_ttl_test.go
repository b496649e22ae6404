package stapler

import (
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/staplerkit/ocsp/config"
)

// AttackOlderValidAnswerAfterCacheTTL: a responder behind a CDN whose edges
// disagree (one edge answers with a response produced earlier, still valid
// for a day). cache_ttl is 60 s. The Stapler holds the newer response; once
// cache_ttl has passed it may no longer serve it, and every answer the
// responder gives is a valid good response for the certificate, only older
// than the one held (which is itself no longer served). Rollback protection
// refuses it, and staleBackoff, finding nothing left of the held staple,
// waits 30 minutes: the certificate goes unstapled (must-staple and Strict
// handshakes refused) for half an hour at a time while the responder answers
// every query with a valid good response. Expected: within a couple of
// recovery periods after cache_ttl ran out, a valid good staple is served
// again (accepting an older good answer is no rollback when the held good
// one can no longer be served; at least, retry on the recovery schedule).
func TestOlderValidAnswerAfterCacheTTLLeavesNoStaple(t *testing.T) {
	e := newEnv(t, on, WithDefaultStapling(config.Stapling{Enabled: true, CacheTTL: 60}))
	srv, tamper := tamperingResponder(t, e.r)
	e.s.opts.responderURL = srv.URL

	older := mustFetchRaw(t, e, e.leaf) // what the stale edge keeps serving
	e.clock.Advance(10 * time.Second)
	addr := e.wrapAndServe(e.leaf.Certificate)
	e.waitStapled(e.leaf)
	e.mustGetStaple(addr, e.leaf, ocsp.Good)
	heldFetched := e.clock.Now()

	stale := func([]byte) []byte { return older }
	tamper.Store(&stale)

	// Follow the Stapler's own plan, on the injected clock, up to three
	// recovery periods after the held staple's cache_ttl ran out.
	bound := heldFetched.Add(60*time.Second + 3*time.Duration(config.DefaultRecoveryFrequency)*time.Second)
	m, err := e.s.lookup(CertificateID(e.leaf.Cert.Raw))
	if err != nil {
		t.Fatal(err)
	}
	for {
		var due time.Time
		eventually(t, "a planned query", func() bool {
			due = e.s.sched.DueAt(m)
			return !due.IsZero()
		})
		if due.After(bound) {
			break
		}
		q := e.status(e.leaf).Queries
		e.clock.Advance(max(0, due.Sub(e.clock.Now())))
		e.waitQueries(e.leaf, q+1)
	}
	e.clock.Advance(max(0, bound.Sub(e.clock.Now())))
	st := e.status(e.leaf)
	staple, _, err := e.handshake(addr)
	if err != nil {
		t.Fatal(err)
	}
	if staple == nil {
		t.Fatalf("%v after the held staple's cache_ttl ran out, with the responder answering every query with a valid good response: no staple (state %s, queries %d, last error %q, next query %s from now)",
			e.clock.Now().Sub(heldFetched.Add(60*time.Second)), st.State, st.Queries, st.LastError, e.s.sched.DueAt(m).Sub(e.clock.Now()).Round(time.Second))
	}
	if resp, err := ocsp.ParseResponseForCert(staple, e.leaf.Cert, e.ca.Cert); err != nil || resp.Status != ocsp.Good {
		t.Fatalf("staple does not verify as good: %v", err)
	}
}
