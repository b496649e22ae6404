package stapler

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/staplerkit/ocsp/cache"
	"github.com/staplerkit/ocsp/config"
	"github.com/staplerkit/ocsp/responder"
	"golang.org/x/crypto/ocsp"
)

// heldFront signs each answer when the request arrives (so its thisUpdate is
// the clock's then) and holds it until released: a query in flight for as
// long as the test wants.
type heldFront struct {
	next    http.Handler
	arrived chan struct{}
	release chan struct{}
	once    sync.Once
}

func (f *heldFront) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := httptest.NewRecorder()
	f.next.ServeHTTP(rec, r)
	f.once.Do(func() { close(f.arrived) })
	select {
	case <-f.release:
	case <-time.After(hangLimit):
	}
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	w.Write(rec.Body.Bytes())
}

// The staple hook's last call about a certificate says what it is served
// with: a query that was in flight when the certificate was removed, and
// that ends after the certificate was added again and given a newer
// staple, must not leave the hook's last word as "no staple" (a consumer
// such as examples/ocspfiles removes the response file, and switches
// nginx's stapling off, while the Stapler staples).
func TestStapleHookLastCallIsTheServedStapleAfterALateQueryOfARemovedRegistration(t *testing.T) {
	var mu sync.Mutex
	var calls []StapleChange
	e := newEnv(t, config.OCSP{OCSPFunctionality: true}, WithStapleHook(func(c StapleChange) {
		mu.Lock()
		calls = append(calls, c)
		mu.Unlock()
	}))
	front := &heldFront{next: e.r, arrived: make(chan struct{}), release: make(chan struct{})}
	srv := httptest.NewServer(front)
	defer srv.Close()
	leaf, err := e.ca.Issue(responder.LeafOptions{OCSPServer: []string{srv.URL}, DNSNames: []string{"held.test"}})
	if err != nil {
		t.Fatal(err)
	}
	e.r.SetStatus(leaf.Cert.SerialNumber, responder.Good())

	// The first registration's query is in flight (signed now, held).
	id, err := e.s.Add(&leaf.Certificate)
	if err != nil {
		t.Fatal(err)
	}
	first, _ := e.s.lookup(id)
	select {
	case <-front.arrived:
	case <-time.After(hangLimit):
		t.Fatal("the first query never reached the responder")
	}
	if err := e.s.Remove(id); err != nil {
		t.Fatal(err)
	}

	// Added again, and given a newer response by Push.
	e.clock.Advance(time.Minute)
	if _, err := e.s.Add(&leaf.Certificate); err != nil {
		t.Fatal(err)
	}
	raw, err := e.r.Respond(leaf.Cert)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.s.Push(t.Context(), id, raw); err != nil {
		t.Fatal(err)
	}

	// The held (older) answer now reaches the removed registration.
	close(front.release)
	eventually(t, "the removed registration's query to be applied", func() bool {
		first.mu.Lock()
		defer first.mu.Unlock()
		return first.applied != nil
	})

	// A sentinel change on another certificate: once the hook reports it,
	// every change made before it was reported.
	sentinel := e.leaf
	sid, _ := e.s.Add(&sentinel.Certificate)
	e.waitStapled(sentinel)
	eventually(t, "the sentinel's staple to be reported", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range calls {
			if c.ID == sid && c.Staple != nil {
				return true
			}
		}
		return false
	})

	// Every change made before the sentinel was reported: from now on the
	// hook's last word about the certificate must be (or become, should a
	// query of the new registration still be reported) what it is served
	// with.
	lastWord := func() (seen []string, last []byte, ok bool) {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range calls {
			if c.ID == id {
				seen = append(seen, map[bool]string{true: "staple", false: "none"}[c.Staple != nil])
				last, ok = c.Staple, true
			}
		}
		return seen, last, ok
	}
	deadline := time.Now().Add(hangLimit)
	for {
		served, _, err := e.s.Staple(id)
		if err != nil {
			t.Fatalf("Staple: %v; the new registration holds the pushed response", err)
		}
		seen, last, ok := lastWord()
		if ok && bytes.Equal(last, served) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the hook's calls for the certificate were %v: its last word is not the staple served (%d bytes)", seen, len(served))
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// waitStapleChange waits for the hook's next call about id.
func waitStapleChange(t *testing.T, changes chan StapleChange, id string) StapleChange {
	t.Helper()
	deadline := time.After(hangLimit)
	for {
		select {
		case c := <-changes:
			if c.ID == id {
				return c
			}
		case <-deadline:
			t.Fatal("the staple hook was not called")
		}
	}
}

// Staple(id) and the staple hook say what handshakes are stapled with.
// Turning OCSP off (Update, PUT /v1/ocsp) or stapling off for one
// certificate (SetStapling, PATCH /v1/certificates/{id}) stops the stapling
// of handshakes at once: Staple must then say ErrNoStaple, and the hook
// must report the staple withdrawn, or whatever feeds other servers from
// them (examples/ocspfiles: nginx and HAProxy, the admin API's GET
// .../ocsp_response) keeps stapling what the operator turned off.
func TestStapleAndHookFollowOCSPTurnedOff(t *testing.T) {
	changes := make(chan StapleChange, 100)
	e := newEnv(t, on, WithStapleHook(func(c StapleChange) { changes <- c }))
	addr := e.wrapAndServe(e.leaf.Certificate)
	id := CertificateID(e.leaf.Cert.Raw)
	e.mustGetStaple(addr, e.leaf, ocsp.Good)
	if c := waitStapleChange(t, changes, id); c.Staple == nil {
		t.Fatal("the hook reported no staple once stapled")
	}

	off := false
	if _, err := e.s.Update(config.OCSPUpdate{OCSPFunctionality: &off}); err != nil {
		t.Fatal(err)
	}
	e.mustGetNoStaple(addr)
	if st := e.status(e.leaf); st.Stapled {
		t.Fatalf("Status says stapled with OCSP off: %+v", st)
	}
	if der, _, err := e.s.Staple(id); !errors.Is(err, ErrNoStaple) {
		t.Errorf("with OCSP off, handshakes get no staple, but Staple returns %d bytes (err %v)", len(der), err)
	}
	if c := waitStapleChange(t, changes, id); c.Staple != nil {
		t.Errorf("with OCSP off, the hook reported a staple of %d bytes", len(c.Staple))
	}
}

func TestStapleAndHookFollowStaplingDisabledForTheCertificate(t *testing.T) {
	changes := make(chan StapleChange, 100)
	e := newEnv(t, on, WithStapleHook(func(c StapleChange) { changes <- c }))
	addr := e.wrapAndServe(e.leaf.Certificate)
	id := CertificateID(e.leaf.Cert.Raw)
	e.mustGetStaple(addr, e.leaf, ocsp.Good)
	if c := waitStapleChange(t, changes, id); c.Staple == nil {
		t.Fatal("the hook reported no staple once stapled")
	}

	if err := e.s.SetStapling(id, config.Stapling{Enabled: false}); err != nil {
		t.Fatal(err)
	}
	e.mustGetNoStaple(addr)
	if der, _, err := e.s.Staple(id); !errors.Is(err, ErrNoStaple) {
		t.Errorf("with stapling disabled, handshakes get no staple, but Staple returns %d bytes (err %v)", len(der), err)
	}
	if c := waitStapleChange(t, changes, id); c.Staple != nil {
		t.Errorf("with stapling disabled, the hook reported a staple of %d bytes", len(c.Staple))
	}
}

// A pushed response that will not be stapled (OCSP off) is not reported
// as accepted and stapled: Push says so, and Staple does not return it.
func TestPushWithOCSPOffIsNotReportedAsStapled(t *testing.T) {
	e := newEnv(t, on)
	addr := e.wrapAndServe(e.leaf.Certificate)
	id := CertificateID(e.leaf.Cert.Raw)
	e.mustGetStaple(addr, e.leaf, ocsp.Good)
	off := false
	if _, err := e.s.Update(config.OCSPUpdate{OCSPFunctionality: &off}); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Minute)
	st, err := e.s.Push(t.Context(), id, mustFetchRaw(t, e, e.leaf))
	e.mustGetNoStaple(addr)
	if err == nil {
		if der, _, serr := e.s.Staple(id); serr == nil {
			t.Fatalf("Push with OCSP off returned no error (state %s, stapled %v) and Staple returns its %d bytes, yet handshakes get no staple", st.State, st.Stapled, len(der))
		}
	}
}

// Staple "returns the DER response the certificate is stapled with now,
// and when it stops being served", and the staple hook's Expires is "when
// Staple stops being served". With the system clock, handshakes withdraw a
// staple coarseMargin (a second) before its expiry (wrap.go, usable and
// hitView); Staple and the hook read the exact clock and report the staple
// as served, with the later expiry, through that last second. A consumer
// that relies on Staple (an admin GET of ocsp_response, a sidecar holding a
// copy "not used past Expires") keeps serving a staple the Stapler's own
// handshakes no longer carry. Staple and a handshake made at the same
// moment must agree.
func TestStapleAgreesWithAHandshakeInTheStaplesLastSecond(t *testing.T) {
	ca, err := responder.NewCA(responder.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r := responder.New(ca) // the system clock, as the Stapler's
	// The responder refuses every query: the pushed staple stays, and no
	// refresh replaces it.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	leaf, err := ca.Issue(responder.LeafOptions{OCSPServer: []string{srv.URL}})
	if err != nil {
		t.Fatal(err)
	}
	r.SetStatus(leaf.Cert.SerialNumber, responder.Good())
	// Lifetime 2s from a thisUpdate truncated to the second: nextUpdate
	// falls 1 to 2 seconds from now.
	r.SetWindow(responder.Window{Lifetime: 2 * time.Second})

	e := &env{t: t, ca: ca, r: r}
	s, err := New(on, WithLogger(quietLogger()), WithColdWait(0))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	e.s = s
	addr := e.wrapAndServe(leaf.Certificate)
	id := CertificateID(leaf.Cert.Raw)

	for attempt := 0; attempt < 20; attempt++ {
		raw, err := r.Respond(leaf.Cert)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Push(t.Context(), id, raw); err != nil {
			continue // already expired (a slow machine): another
		}
		_, expires, err := s.Staple(id)
		if err != nil {
			continue
		}
		// Into the staple's last second, by the wall clock.
		time.Sleep(time.Until(expires.Add(-coarseMargin / 2)))
		staple, expiresNow, staErr := s.Staple(id)
		served, _, hsErr := e.handshake(addr)
		if hsErr != nil {
			t.Fatalf("handshake: %v", hsErr)
		}
		if !time.Now().Before(expires) {
			continue // the machine was too slow to look within the second: again
		}
		if staErr == nil && !bytes.Equal(served, staple) {
			t.Fatalf("Staple reports a staple served until %s, but a handshake at %s, before that, carried %d bytes (the handshake path withdraws it %s early)",
				expiresNow.Format(time.StampMilli), time.Now().Format(time.StampMilli), len(served), coarseMargin)
		}
		return
	}
	t.Skip("could not look at the staple within its last second")
}

// airGapped is an env whose Stapler cannot reach the responder (its URL is
// a closed port): its staples come from Push alone. The responder itself
// still answers the test, as a sidecar would fetch from it.
func airGapped(t *testing.T, opts ...Option) (*env, chan StapleChange) {
	changes := make(chan StapleChange, 16)
	opts = append([]Option{WithResponderURL("http://127.0.0.1:1"), WithColdWait(time.Millisecond),
		WithStapleHook(func(c StapleChange) { changes <- c })}, opts...)
	return newEnv(t, config.OCSP{OCSPFunctionality: true, RecoveryMaxTries: 2}, opts...), changes
}

func nextChange(t *testing.T, changes chan StapleChange) StapleChange {
	t.Helper()
	select {
	case c := <-changes:
		return c
	case <-time.After(hangLimit):
		t.Fatal("the staple hook was not called")
	}
	return StapleChange{}
}

// A pushed response is verified as a fetched one, stapled at once, shown
// in Status, reported to the staple hook, and planned from; it is not a
// query.
func TestPushedResponseIsVerifiedStapledAndReported(t *testing.T) {
	e, changes := airGapped(t)
	addr := e.wrapAndServe(e.leaf.Certificate)
	id := CertificateID(e.leaf.Cert.Raw)
	e.waitQueries(e.leaf, 1) // the first fetch failed: nothing to staple
	e.mustGetNoStaple(addr)
	if _, _, err := e.s.Staple(id); !errors.Is(err, ErrNoStaple) {
		t.Fatalf("Staple before a push: %v", err)
	}
	queries := e.status(e.leaf).Queries

	raw := mustFetchRaw(t, e, e.leaf)
	st, err := e.s.Push(t.Context(), id, raw)
	if err != nil {
		t.Fatalf("Push: %v", err)
	}
	if !st.Stapled || st.CertStatus != config.CertGood || st.LastError != "" || st.Tries != 0 || st.Queries != queries {
		t.Fatalf("status after the push: %+v", st)
	}
	resp := e.mustGetStaple(addr, e.leaf, ocsp.Good)
	c := nextChange(t, changes)
	if c.ID != id || !bytes.Equal(c.Staple, resp.Raw) || !c.Expires.Equal(st.StapleExpires.Time) {
		t.Fatalf("staple hook got %s, %d bytes, expires %v", c.ID, len(c.Staple), c.Expires)
	}
	got, expires, err := e.s.Staple(id)
	if err != nil || !bytes.Equal(got, resp.Raw) || !expires.Equal(c.Expires) {
		t.Fatalf("Staple: %d bytes, %v, %v", len(got), expires, err)
	}
	if next := e.status(e.leaf).NextRefresh.Time; !next.After(e.clock.Now().Add(30 * time.Minute)) {
		t.Fatalf("the next refresh (%v) is not planned from the pushed response", next)
	}
}

// What is refused changes nothing: not the staple, not the recovery, not
// the last error; an older answer never replaces a newer one, and a good
// one never replaces a revocation.
func TestPushedResponseIsRefusedWhenOlderBadOrUnknown(t *testing.T) {
	e, changes := airGapped(t)
	addr := e.wrapAndServe(e.leaf.Certificate)
	id := CertificateID(e.leaf.Cert.Raw)
	e.waitQueries(e.leaf, 1)
	// Newer answers come from the responder's clock moved ahead (within
	// the skew): the Stapler's stands still, so that no retry of its own
	// runs while the status is compared.
	var ahead atomic.Int64
	e.r.SetClock(func() time.Time { return e.clock.Now().Add(time.Duration(ahead.Load())) })
	older := mustFetchRaw(t, e, e.leaf)
	ahead.Add(int64(time.Minute))
	newer := mustFetchRaw(t, e, e.leaf)
	if _, err := e.s.Push(t.Context(), id, newer); err != nil {
		t.Fatal(err)
	}
	nextChange(t, changes)
	before := e.status(e.leaf)

	other := e.mustIssue(responder.ECDSA, "other.test")
	e.r.SetStatus(other.Cert.SerialNumber, responder.Good())
	for name, tc := range map[string]struct {
		raw  []byte
		want error
	}{
		"older":            {older, ErrOlderResponse},
		"garbage":          {[]byte("<html>not OCSP</html>"), ErrMalformedResponse},
		"empty":            {nil, ErrMalformedResponse},
		"another's answer": {mustFetchRaw(t, e, other), ErrWrongCertificate},
		"tryLater":         {ocsp.TryLaterErrorResponse, nil},
	} {
		_, err := e.s.Push(t.Context(), id, tc.raw)
		var rse *ResponseStatusError
		if err == nil || tc.want != nil && !errors.Is(err, tc.want) || tc.want == nil && !errors.As(err, &rse) {
			t.Fatalf("%s: Push returned %v, want %v", name, err, tc.want)
		}
		after := e.status(e.leaf)
		if after.LastError != before.LastError || after.Tries != before.Tries || after.ThisUpdate != before.ThisUpdate || after.NextRefresh != before.NextRefresh {
			t.Fatalf("%s: a refused push changed the status: %+v, was %+v", name, after, before)
		}
	}
	e.mustGetStaple(addr, e.leaf, ocsp.Good)

	// Revoked is stapled; a good answer from before it is refused after.
	e.r.SetStatus(e.leaf.Cert.SerialNumber, responder.Revoked(e.clock.Now().Add(-time.Second), ocsp.KeyCompromise))
	ahead.Add(int64(time.Minute))
	if _, err := e.s.Push(t.Context(), id, mustFetchRaw(t, e, e.leaf)); err != nil {
		t.Fatal(err)
	}
	e.mustGetStaple(addr, e.leaf, ocsp.Revoked)
	if _, err := e.s.Push(t.Context(), id, newer); !errors.Is(err, ErrOlderResponse) {
		t.Fatalf("a good answer from before the revocation: %v", err)
	}
	e.mustGetStaple(addr, e.leaf, ocsp.Revoked)

	// An unknown answer about this very certificate.
	e.r.SetStatus(e.leaf.Cert.SerialNumber, responder.Status{Kind: ocsp.Unknown})
	ahead.Add(int64(time.Minute))
	if _, err := e.s.Push(t.Context(), id, mustFetchRaw(t, e, e.leaf)); !errors.Is(err, ErrUnknownStatus) {
		t.Fatalf("unknown: %v", err)
	}
	if _, err := e.s.Push(t.Context(), "00", newer); !errors.Is(err, ErrUnknownCertificate) {
		t.Fatalf("unknown ID: %v", err)
	}
}

// A pushed response is kept in the store: a server started later with the
// same store staples it before any query.
func TestPushedResponseIsKeptInTheStore(t *testing.T) {
	dir := cache.DirStore(t.TempDir())
	e, changes := airGapped(t, WithStore(dir))
	e.wrapAndServe(e.leaf.Certificate)
	e.waitQueries(e.leaf, 1)
	if _, err := e.s.Push(t.Context(), CertificateID(e.leaf.Cert.Raw), mustFetchRaw(t, e, e.leaf)); err != nil {
		t.Fatal(err)
	}
	nextChange(t, changes)
	e.s.Close() // writes what is pending

	later, err := New(config.OCSP{OCSPFunctionality: true}, WithClock(e.clock), WithLogger(quietLogger()), WithStore(dir),
		WithResponderURL("http://127.0.0.1:1"), WithColdWait(hangLimit))
	if err != nil {
		t.Fatal(err)
	}
	defer later.Close()
	e.s = later
	e.mustGetStaple(e.wrapAndServe(e.leaf.Certificate), e.leaf, ocsp.Good)
}
