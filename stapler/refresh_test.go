package stapler

import (
	"crypto/tls"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/staplerkit/ocsp/config"
	"github.com/staplerkit/ocsp/internal/ocsptest"
	"github.com/staplerkit/ocsp/responder"
	"golang.org/x/crypto/ocsp"
)

// With the recovery tries used up, the next query still comes before the
// held staple expires, so that a must-staple leaf is stapled again as soon
// as the responder is back.
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

// A responder that keeps serving responses produced four days ago (past
// their half-life) is asked about twice an hour, not every minute.
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

// A leaf past its NotAfter is no longer queried.
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

// A certificate re-queued while its fetch hangs (SetStapling) shares that
// one request, and its failure counts one try, not two.
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

func TestRefreshHappensBeforeExpiry(t *testing.T) {
	e := newEnv(t, config.OCSP{OCSPFunctionality: true, QueryFrequency: 600})
	e.r.SetWindow(responder.Window{Backdate: time.Minute, Lifetime: time.Hour})
	addr := e.wrapAndServe(e.leaf.Certificate)
	first := e.mustGetStaple(addr, e.leaf, ocsp.Good)
	st := e.waitQueries(e.leaf, 1)
	if next := st.NextRefresh.Sub(e.clock.Now()); next > 600*time.Second || next < 540*time.Second {
		t.Fatalf("next refresh in %v, want query_frequency (600s) less up to 10%% jitter", next)
	}
	e.clock.Advance(600 * time.Second)
	e.waitQueries(e.leaf, 2)
	second := e.mustGetStaple(addr, e.leaf, ocsp.Good)
	if !second.ThisUpdate.After(first.ThisUpdate) {
		t.Fatal("staple was not replaced by the refreshed one")
	}
}

func TestRefreshAtHalfTheValidityWhenThatIsSooner(t *testing.T) {
	e := newEnv(t, on) // query_frequency 3600
	e.r.SetWindow(responder.Window{Lifetime: 20 * time.Minute})
	e.wrapAndServe(e.leaf.Certificate)
	st := e.waitQueries(e.leaf, 1)
	if next := st.NextRefresh.Sub(e.clock.Now()); next > 10*time.Minute || next < 9*time.Minute {
		t.Fatalf("next refresh in %v, want half of a 20 minute validity", next)
	}
}

func TestResponderDownKeepsLastGoodStapleUntilNextUpdate(t *testing.T) {
	e := newEnv(t, config.OCSP{OCSPFunctionality: true, QueryFrequency: 600, RecoveryFrequency: 60, RecoveryMaxTries: 100})
	e.r.SetWindow(responder.Window{Lifetime: 2 * time.Hour})
	addr := e.wrapAndServe(e.leaf.Certificate)
	good := e.mustGetStaple(addr, e.leaf, ocsp.Good)
	e.waitQueries(e.leaf, 1)
	e.srv.Close()

	queries := 1
	for e.clock.Now().Before(good.NextUpdate.Add(-time.Minute)) {
		e.clock.Advance(10 * time.Minute)
		queries++
		e.waitQueries(e.leaf, queries)
		if e.clock.Now().Before(good.NextUpdate) {
			if got := e.mustGetStaple(addr, e.leaf, ocsp.Good); !got.ThisUpdate.Equal(good.ThisUpdate) {
				t.Fatal("staple changed while the responder was down")
			}
		}
	}
	e.clock.Advance(good.NextUpdate.Sub(e.clock.Now()))
	e.mustGetNoStaple(addr)
	st := e.status(e.leaf)
	if st.Stapled || st.LastError == "" || st.Tries == 0 {
		t.Fatalf("status %+v", st)
	}
}

func TestFailedQueryRetriesThenFails(t *testing.T) {
	e := newEnv(t, config.OCSP{OCSPFunctionality: true, QueryFrequency: 3600, RecoveryFrequency: 60, RecoveryMaxTries: 3})
	addr := e.wrapAndServe(e.leaf.Certificate)
	e.mustGetStaple(addr, e.leaf, ocsp.Good)
	e.waitQueries(e.leaf, 1)
	e.expectEvent(e.leaf, StateNone, StateGood)
	e.r.SetFault(responder.Fault{Kind: responder.FaultTryLater})
	e.clock.Advance(time.Hour)
	st := e.waitQueries(e.leaf, 2)
	if st.Tries != 1 || !strings.Contains(st.LastError, "tryLater") {
		t.Fatalf("after first failure: %+v", st)
	}
	if d := st.NextRefresh.Sub(e.clock.Now()); d > time.Minute || d < 54*time.Second {
		t.Fatalf("retry in %v, want recovery_frequency", d)
	}
	for i := 0; i < 3; i++ {
		e.clock.Advance(time.Minute)
		st = e.waitQueries(e.leaf, 3+i)
	}
	if st.State != StateFailed || st.Tries != 0 {
		t.Fatalf("after the tries: %+v", st)
	}
	e.expectEvent(e.leaf, StateGood, StateFailed)
	// Lenient default: the last good response is still served.
	e.mustGetStaple(addr, e.leaf, ocsp.Good)
	if d := st.NextRefresh.Sub(e.clock.Now()); d < 54*time.Minute {
		t.Fatalf("after failing, next query in %v, want the regular schedule", d)
	}
	// Recovery is immediate once the responder is healthy.
	e.r.SetFault(responder.Fault{})
	e.clock.Advance(time.Hour)
	st = e.waitQueries(e.leaf, 6)
	if st.State != StateGood || st.LastError != "" {
		t.Fatalf("after recovery: %+v", st)
	}
}

func TestDropOnFailureDropsTheStaple(t *testing.T) {
	e := newEnv(t, config.OCSP{OCSPFunctionality: true, RecoveryMaxTries: 1}, WithDropOnFailure())
	addr := e.wrapAndServe(e.leaf.Certificate)
	e.mustGetStaple(addr, e.leaf, ocsp.Good)
	e.waitQueries(e.leaf, 1)
	e.r.SetFault(responder.Fault{Kind: responder.FaultHTTP500})
	e.clock.Advance(time.Hour)
	e.waitQueries(e.leaf, 2)
	e.mustGetStaple(addr, e.leaf, ocsp.Good)
	e.clock.Advance(time.Minute)
	e.waitQueries(e.leaf, 3)
	e.mustGetNoStaple(addr)
}

func TestCacheTTLCapsTheStaple(t *testing.T) {
	e := newEnv(t, config.OCSP{OCSPFunctionality: true, RecoveryMaxTries: 100}, WithDefaultStapling(config.Stapling{Enabled: true, CacheTTL: 120}))
	addr := e.wrapAndServe(e.leaf.Certificate)
	e.mustGetStaple(addr, e.leaf, ocsp.Good)
	st := e.waitQueries(e.leaf, 1)
	if got := st.StapleExpires.Sub(e.clock.Now()); got != 120*time.Second {
		t.Fatalf("staple expires in %v, want cache_ttl", got)
	}
	e.srv.Close()
	e.clock.Advance(121 * time.Second)
	e.mustGetNoStaple(addr)
}

func TestCoarseClockWithdrawsTheStapleBeforeItExpires(t *testing.T) {
	s, err := New(on, WithLogger(quietLogger()))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.coarse == nil {
		t.Fatal("the system clock should use the coarse clock")
	}
	expires := time.Now().Add(time.Hour)
	v := &view{expires: expires.UnixNano()}
	for _, tc := range []struct {
		now  time.Time
		want bool
	}{
		{expires.Add(-2 * time.Second), true},
		{expires.Add(-coarseMargin), false},
		{expires.Add(-time.Millisecond), false},
		{expires, false},
	} {
		s.coarse.set(tc.now)
		if got := s.usable(v); got != tc.want {
			t.Errorf("%v before expiry: usable %v, want %v", expires.Sub(tc.now), got, tc.want)
		}
	}
	// After Close the coarse clock stops, so the real clock decides.
	s.Close()
	s.coarse.stop()
	if !s.usable(v) {
		t.Fatal("after Close a valid staple is withdrawn")
	}
	if s.usable(&view{expires: time.Now().Add(-time.Second).UnixNano()}) {
		t.Fatal("after Close an expired staple is served")
	}
}

// A certificate that has never had an answer is failed from its first
// failed query, not after the recovery tries: nothing is stapled, and an
// alert on failed says so at once. The next success makes it good.
func TestStateIsFailedFromTheFirstFailureWithNoStaple(t *testing.T) {
	e := newEnv(t, on, WithColdWait(time.Millisecond))
	e.r.SetFault(responder.Fault{Kind: responder.FaultHTTP500})
	addr := e.wrapAndServe(e.leaf.Certificate)
	st := e.waitQueries(e.leaf, 1)
	if st.State != StateFailed || st.Tries != 1 || st.LastError == "" {
		t.Fatalf("after the first failed query with no staple: state %s, tries %d, error %q", st.State, st.Tries, st.LastError)
	}
	e.expectEvent(e.leaf, StateNone, StateFailed)
	e.r.SetFault(responder.Fault{})
	if _, err := e.s.Test(t.Context(), CertificateID(e.leaf.Cert.Raw)); err != nil {
		t.Fatal(err)
	}
	e.mustGetStaple(addr, e.leaf, ocsp.Good)
	e.expectEvent(e.leaf, StateFailed, StateGood)
}

// A response without nextUpdate (RFC 6960 allows one; openssl ocsp sends
// them by default) is stapled for DefaultNoNextUpdateLifetime after its
// thisUpdate, refreshed at half of that, and never served past it.
func TestResponseWithoutNextUpdateIsStapledForItsLifetimeAndRefreshedAtHalf(t *testing.T) {
	e := newEnv(t, config.OCSP{OCSPFunctionality: true, QueryFrequency: 24 * 3600, RecoveryFrequency: 60, RecoveryMaxTries: 5})
	// Signed when asked, as openssl ocsp does: thisUpdate is the fetch
	// time, so that half the life after it is half the life after now.
	e.r.SetWindow(responder.Window{NoNextUpdate: true})
	addr := e.wrapAndServe(e.leaf.Certificate)
	resp := e.mustGetStaple(addr, e.leaf, ocsp.Good)
	if !resp.NextUpdate.IsZero() {
		t.Fatalf("the responder sent nextUpdate %v", resp.NextUpdate)
	}
	st := e.status(e.leaf)
	thisUpdate := st.ThisUpdate.Time
	if !st.NextUpdate.IsZero() {
		t.Fatalf("Status shows next_update %v for a response that has none", st.NextUpdate)
	}
	if want := thisUpdate.Add(DefaultNoNextUpdateLifetime); !st.StapleExpires.Time.Equal(want) {
		t.Fatalf("staple expires %v, want thisUpdate + %v = %v", st.StapleExpires.Time, DefaultNoNextUpdateLifetime, want)
	}
	// Refreshed at half its life (jittered earlier, never later).
	m, _ := e.s.lookup(CertificateID(e.leaf.Cert.Raw))
	due := e.s.sched.DueAt(m)
	if half := thisUpdate.Add(DefaultNoNextUpdateLifetime / 2); due.After(half.Add(time.Second)) || due.Before(half.Add(-DefaultNoNextUpdateLifetime/10)) {
		t.Fatalf("next refresh at %v, want at half the life (%v)", due, half)
	}
	before := e.advanceToNextRefresh(e.leaf)
	e.waitQueries(e.leaf, before+1)
	if got := e.status(e.leaf).ThisUpdate.Time; !got.After(thisUpdate) {
		t.Fatalf("the refresh did not install the newer response: thisUpdate %v", got)
	}

	// The responder fails from now on: the staple is served until its
	// lifetime ends, and not a second longer.
	e.r.SetFault(responder.Fault{Kind: responder.FaultHTTP500})
	expires := e.status(e.leaf).StapleExpires.Time
	e.clock.Advance(expires.Add(-time.Second).Sub(e.clock.Now()))
	e.mustGetStaple(addr, e.leaf, ocsp.Good)
	e.clock.Advance(time.Second)
	e.mustGetNoStaple(addr)
}

// WithNoNextUpdateLifetime sets the lifetime; cache_ttl still caps it; a
// negative value refuses such responses, and says why.
func TestNoNextUpdateLifetimeOptionAndCacheTTLBoundTheStaple(t *testing.T) {
	t.Run("option", func(t *testing.T) {
		e := newEnv(t, on, WithNoNextUpdateLifetime(10*time.Minute))
		e.r.SetWindow(responder.Window{Backdate: time.Minute, NoNextUpdate: true})
		e.mustGetStaple(e.wrapAndServe(e.leaf.Certificate), e.leaf, ocsp.Good)
		st := e.status(e.leaf)
		if got := st.StapleExpires.Time.Sub(st.ThisUpdate.Time); got != 10*time.Minute {
			t.Fatalf("staple expires %v after thisUpdate, want 10m", got)
		}
	})
	t.Run("cache_ttl", func(t *testing.T) {
		e := newEnv(t, on, WithDefaultStapling(config.Stapling{Enabled: true, CacheTTL: 120}))
		e.r.SetWindow(responder.Window{Backdate: time.Minute, NoNextUpdate: true})
		e.mustGetStaple(e.wrapAndServe(e.leaf.Certificate), e.leaf, ocsp.Good)
		st := e.status(e.leaf)
		if got := st.StapleExpires.Time.Sub(st.LastSuccess.Time); got != 120*time.Second {
			t.Fatalf("staple expires %v after the fetch, want cache_ttl (120s)", got)
		}
	})
	t.Run("refused", func(t *testing.T) {
		e := newEnv(t, on, WithNoNextUpdateLifetime(-1), WithColdWait(50*time.Millisecond))
		e.r.SetWindow(responder.Window{Backdate: time.Minute, NoNextUpdate: true})
		addr := e.wrapAndServe(e.leaf.Certificate)
		st := e.waitQueries(e.leaf, 1)
		if st.Stapled || st.LastError == "" {
			t.Fatalf("stapled %v, last error %q", st.Stapled, st.LastError)
		}
		e.mustGetNoStaple(addr)
		_, err := e.s.Test(t.Context(), CertificateID(e.leaf.Cert.Raw))
		if !errors.Is(err, ErrNoNextUpdate) {
			t.Fatalf("Test: %v, want ErrNoNextUpdate", err)
		}
	})
}

// VerifyResponse and the Verifier apply the same rule: relied on for the
// lifetime after thisUpdate, expired after it, refused when told to.
func TestVerifyResponseAndVerifierAcceptResponsesWithoutNextUpdate(t *testing.T) {
	f := ocsptest.NewOCSPFixture(t)
	undated := func(age time.Duration) []byte {
		return f.Sign(t, f.CA.Cert, f.CA.Key, false, func(r *ocsp.Response) { r.ThisUpdate, r.NextUpdate = f.Now.Add(-age), time.Time{} })
	}
	r, err := VerifyResponse(undated(10*time.Minute), f.Leaf.Cert, f.CA.Cert, VerifyOptions{CurrentTime: f.Now})
	if err != nil {
		t.Fatal(err)
	}
	if !r.NextUpdate.IsZero() || !r.Expires.Equal(f.Now.Add(-10*time.Minute).Add(DefaultNoNextUpdateLifetime)) {
		t.Fatalf("nextUpdate %v, expires %v", r.NextUpdate, r.Expires)
	}
	if _, err := VerifyResponse(undated(61*time.Minute), f.Leaf.Cert, f.CA.Cert, VerifyOptions{CurrentTime: f.Now}); !errors.Is(err, ErrExpired) {
		t.Fatalf("an hour and a minute old: %v, want ErrExpired", err)
	}
	if _, err := VerifyResponse(undated(61*time.Minute), f.Leaf.Cert, f.CA.Cert, VerifyOptions{CurrentTime: f.Now, NoNextUpdateLifetime: 2 * time.Hour}); err != nil {
		t.Fatalf("within a 2h lifetime: %v", err)
	}
	if _, err := VerifyResponse(undated(time.Minute), f.Leaf.Cert, f.CA.Cert, VerifyOptions{CurrentTime: f.Now, NoNextUpdateLifetime: -1}); !errors.Is(err, ErrNoNextUpdate) {
		t.Fatalf("refused by the option: %v, want ErrNoNextUpdate", err)
	}

	// The Verifier, as a client, against a server stapling such responses.
	e := newEnv(t, on)
	e.r.SetWindow(responder.Window{Backdate: time.Minute, NoNextUpdate: true})
	addr := e.wrapAndServe(e.leaf.Certificate)
	e.waitStapled(e.leaf)
	if err := e.dialVerified(addr, &Verifier{HardFail: true, Time: e.clock.Now}); err != nil {
		t.Fatalf("a staple without nextUpdate refused: %v", err)
	}
	if err := e.dialVerified(addr, &Verifier{HardFail: true, Time: e.clock.Now, NoNextUpdateLifetime: -1}); !errors.Is(err, ErrNoNextUpdate) {
		t.Fatalf("with such responses refused: %v, want ErrNoNextUpdate", err)
	}
	// An hour on, the server holds a fresh one (its refresh ran); the same
	// staple checked by a Verifier whose clock is past its lifetime fails.
	staple, _, err := e.handshake(addr)
	if err != nil || staple == nil {
		t.Fatalf("handshake: %v", err)
	}
	late := e.clock.Now().Add(DefaultNoNextUpdateLifetime)
	plain := e.serve(&tls.Config{Certificates: []tls.Certificate{withStaple(e.leaf.Certificate, staple)}})
	if err := e.dialVerified(plain, &Verifier{HardFail: true, Time: func() time.Time { return late }}); !errors.Is(err, ErrExpired) {
		t.Fatalf("past its lifetime: %v, want ErrExpired", err)
	}
}

func withStaple(c tls.Certificate, staple []byte) tls.Certificate {
	c.OCSPStaple = staple
	return c
}

// The handshake clock reads the time it is even when the goroutine that
// refreshes it has not run for a long while (the process was paused: a VM
// pause, SIGSTOP): a staple that expired meanwhile is not served.
func TestHandshakeClockIsNotStaleAfterAPause(t *testing.T) {
	c := newCoarseClock()
	start := time.Now()
	c.set(start)
	// Ten minutes pass on the monotonic clock and the refreshing goroutine
	// never runs (moving the base back is what a pause looks like to it).
	c.base = c.base.Add(-10 * time.Minute)
	got := time.Unix(0, c.now())
	if d := got.Sub(start); d < 10*time.Minute || d > 10*time.Minute+time.Hour {
		t.Fatalf("after a 10-minute pause the clock moved %v", d)
	}
	s := &Stapler{coarse: c}
	staple := &view{expires: start.Add(5 * time.Minute).UnixNano(), hasStaple: true}
	if s.usable(staple) {
		t.Fatal("a staple that expired during the pause is still usable")
	}
	c.stop()
	if c.now() != 0 {
		t.Fatal("a stopped clock reads a time")
	}
}
