package stapler

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/staplerkit/ocsp/config"
	"github.com/staplerkit/ocsp/internal/record"
	"github.com/staplerkit/ocsp/responder"
	"golang.org/x/crypto/ocsp"
)

func TestSupersedes(t *testing.T) {
	at := func(this, produced int64, st record.Status) *record.Entry {
		return &record.Entry{ThisUpdate: record.Instant(this), ProducedAt: record.Instant(produced), Status: st, Expires: 1 << 62}
	}
	expired := func(e *record.Entry) *record.Entry { e.Expires = 1; return e }
	good, revoked := record.Good, record.Revoked
	for _, tc := range []struct {
		name     string
		e, held  *record.Entry
		replaces bool
	}{
		{"nothing held", at(1, 1, good), nil, true},
		{"newer thisUpdate", at(2, 2, good), at(1, 1, good), true},
		{"older thisUpdate", at(1, 3, good), at(2, 2, good), false},
		{"older good over newer revoked", at(1, 1, good), at(2, 2, revoked), false},
		{"same thisUpdate, later producedAt", at(1, 2, good), at(1, 1, good), true},
		{"same thisUpdate, earlier producedAt", at(1, 1, good), at(1, 2, good), false},
		{"same times, same answer", at(1, 1, good), at(1, 1, good), true},
		{"same times, good over revoked", at(1, 1, good), at(1, 1, revoked), false},
		{"same times, revoked over good", at(1, 1, revoked), at(1, 1, good), true},
		{"newer good over revoked", at(2, 2, good), at(1, 1, revoked), true},
		{"older good over a good that can no longer be served", at(1, 1, good), expired(at(2, 2, good)), true},
		{"older good over a revoked that can no longer be served", at(1, 1, good), expired(at(2, 2, revoked)), false},
	} {
		if got := supersedes(tc.e, tc.held, time.Unix(0, 100)); got != tc.replaces {
			t.Errorf("%s: supersedes = %v, want %v", tc.name, got, tc.replaces)
		}
	}
}

// TestOlderGoodNeverReplacesRevoked: after a revoked answer, a good response
// produced two days earlier and still valid (a stale CDN edge, a replay on
// the plain-HTTP path) is refused, and Strict keeps refusing the leaf.
func TestOlderGoodNeverReplacesRevoked(t *testing.T) {
	e := newEnv(t, on, WithPolicy(Strict))
	srv, tamper := tamperingResponder(t, e.r)
	e.s.opts.responderURL = srv.URL
	// A good response from two days ago, valid for a week.
	e.r.SetWindow(responder.Window{Backdate: 2 * 24 * time.Hour, Lifetime: 7 * 24 * time.Hour})
	old := mustFetchRaw(t, e, e.leaf)
	e.r.SetWindow(responder.Window{})

	addr := e.wrapAndServe(e.leaf.Certificate)
	e.waitStapled(e.leaf)
	e.r.SetStatus(e.leaf.Cert.SerialNumber, responder.Revoked(e.clock.Now(), ocsp.KeyCompromise))
	id := CertificateID(e.leaf.Cert.Raw)
	if _, err := e.s.Test(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	if st := e.status(e.leaf); st.State != StateRevoked {
		t.Fatalf("state %s after the revocation, want revoked", st.State)
	}
	replay := func([]byte) []byte { return old }
	tamper.Store(&replay)
	// The test call never reports an answer it refused to cache
	// (TestTestReportsAnOlderAnswerItDidNotCache).
	if _, err := e.s.Test(t.Context(), id); !errors.Is(err, ErrOlderResponse) {
		t.Fatalf("Test with the replay: %v, want ErrOlderResponse", err)
	}
	st := e.status(e.leaf)
	if st.State != StateRevoked || !strings.Contains(st.LastError, "older") {
		t.Fatalf("after the replay: state %s, last error %q; want revoked, and the older response named", st.State, st.LastError)
	}
	if _, _, err := e.handshake(addr); err == nil {
		t.Fatal("Strict served the revoked leaf after an older good response was replayed")
	}
	// A scheduled refresh that gets the replay keeps revoked too.
	e.advanceToNextRefresh(e.leaf)
	e.waitQueries(e.leaf, st.Queries+1)
	if st := e.status(e.leaf); st.State != StateRevoked {
		t.Fatalf("after a refresh with the replay: state %s", st.State)
	}
}

// TestRetryPlannedBeforeTheStapleExpires: with the recovery tries used up,
// the next query still comes before the held staple expires, so that a
// must-staple leaf is stapled again as soon as the responder is back.
func TestRetryPlannedBeforeTheStapleExpires(t *testing.T) {
	e := newEnv(t, config.OCSP{OCSPFunctionality: true, QueryFrequency: 3600, RecoveryFrequency: 60, RecoveryMaxTries: 2})
	e.r.SetWindow(responder.Window{Backdate: time.Minute, Lifetime: 40 * time.Minute})
	must, err := e.srv.Issue(responder.LeafOptions{MustStaple: true, DNSNames: []string{"must.test"}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := e.s.Wrap(tlsConfigFor(must))
	e.waitStapled(must)
	expires := e.status(must).StapleExpires.Time
	e.r.SetFault(responder.Fault{Kind: responder.FaultHTTP500})
	for e.status(must).State != StateFailed {
		n := e.advanceToNextRefresh(must)
		e.waitQueries(must, n+1)
		if e.clock.Now().After(expires) {
			t.Fatal("the staple expired before the recovery tries were used up")
		}
	}
	m, _ := e.s.lookup(CertificateID(must.Cert.Raw))
	var due time.Time
	eventually(t, "a planned query", func() bool { due = e.s.sched.DueAt(m); return !due.IsZero() })
	if !due.Before(expires) {
		t.Fatalf("tries used up at %v; next query at %v, after the staple expires at %v", e.clock.Now(), due, expires)
	}
	e.r.SetFault(responder.Fault{})
	n := e.advanceToNextRefresh(must)
	e.waitQueries(must, n+1)
	if !e.clock.Now().Before(expires) {
		t.Fatal("queried only once the staple had expired")
	}
	e.clock.Advance(expires.Sub(e.clock.Now()) + time.Second)
	if _, err := cfg.GetCertificate(helloFor()); err != nil {
		t.Fatalf("the must-staple leaf is refused after its old staple expired: %v", err)
	}
}

// TestStaleResponderIsNotPolled: a responder that keeps serving responses
// produced four days ago (past their half-life) is asked about twice an
// hour, not every minute.
func TestStaleResponderIsNotPolled(t *testing.T) {
	for _, same := range []bool{false, true} {
		name := map[bool]string{false: "backdated answers", true: "the very same response"}[same]
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, on)
			srv, tamper := tamperingResponder(t, e.r)
			e.s.opts.responderURL = srv.URL
			e.r.SetWindow(responder.Window{Backdate: 4 * 24 * time.Hour, Lifetime: 7 * 24 * time.Hour})
			if same {
				fixed := mustFetchRaw(t, e, e.leaf)
				f := func([]byte) []byte { return fixed }
				tamper.Store(&f)
			}
			e.wrapAndServe(e.leaf.Certificate)
			e.waitStapled(e.leaf)
			start := e.clock.Now()
			queries := 0
			for e.clock.Now().Sub(start) < 24*time.Hour {
				n := e.advanceToNextRefresh(e.leaf)
				e.waitQueries(e.leaf, n+1)
				queries++
			}
			if queries < 24 || queries > 60 {
				t.Fatalf("%d queries in a day, want about two an hour", queries)
			}
			if !e.status(e.leaf).Stapled {
				t.Fatal("no staple after a day")
			}
		})
	}
}

// TestExpiredLeafRetires: a leaf past its NotAfter is no longer queried.
func TestExpiredLeafRetires(t *testing.T) {
	e := newEnv(t, on)
	short, err := e.srv.Issue(responder.LeafOptions{DNSNames: []string{"short.test"}, NotBefore: e.clock.Now().Add(-time.Hour), NotAfter: e.clock.Now().Add(2 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	e.s.Wrap(tlsConfigFor(short))
	e.waitStapled(short)
	for e.status(short).State != StateExpired {
		if e.clock.Now().After(short.Cert.NotAfter.Add(24 * time.Hour)) {
			t.Fatalf("a day past NotAfter the state is %s", e.status(short).State)
		}
		n := e.advanceToNextRefresh(short)
		eventually(t, "a query or retirement", func() bool {
			st := e.status(short)
			return st.Queries > n || st.State == StateExpired
		})
	}
	e.expectEvent(short, StateNone, StateGood)
	e.expectEvent(short, StateGood, StateExpired)
	before := e.r.CountFor(short.Cert.SerialNumber)
	m, _ := e.s.lookup(CertificateID(short.Cert.Raw))
	if due := e.s.sched.DueAt(m); !due.IsZero() {
		t.Fatalf("an expired leaf is still scheduled at %v", due)
	}
	e.clock.Advance(7 * 24 * time.Hour)
	if n := e.r.CountFor(short.Cert.SerialNumber); n != before {
		t.Fatalf("%d more requests for an expired leaf", n-before)
	}
}

// TestSharedQueryIsCountedOnce: a certificate re-queued while its fetch
// hangs (SetStapling) shares that one request, and its failure counts one
// try, not two.
func TestSharedQueryIsCountedOnce(t *testing.T) {
	e := newEnv(t, config.OCSP{OCSPFunctionality: true, ResponseTimeout: 30})
	var requests atomic.Int32
	arrived := make(chan struct{}, 10)
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		arrived <- struct{}{}
		<-release
		http.Error(w, "down", http.StatusInternalServerError)
	}))
	defer srv.Close()
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	e.s.opts.responderURL = srv.URL
	e.s.Wrap(tlsConfigFor(e.leaf))
	<-arrived
	id := CertificateID(e.leaf.Cert.Raw)
	if err := e.s.SetStapling(id, config.Stapling{Enabled: true, SkipVerify: true, CacheTTL: 3600}); err != nil {
		t.Fatal(err)
	}
	// Wait until a worker took the re-queued certificate, then give it a
	// moment to join the fetch in flight.
	m, _ := e.s.lookup(id)
	eventually(t, "the re-queued refresh to start", func() bool { return e.s.sched.DueAt(m).IsZero() })
	time.Sleep(50 * time.Millisecond)
	close(release)
	eventually(t, "the failure to be recorded", func() bool { return e.status(e.leaf).Queries > 0 })
	time.Sleep(50 * time.Millisecond) // a second recording, if any, lands now
	st := e.status(e.leaf)
	if n := int(requests.Load()); st.Tries != n || st.Queries != n {
		t.Fatalf("%d responder requests counted as %d tries and %d queries", n, st.Tries, st.Queries)
	}
}
