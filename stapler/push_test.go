package stapler

import (
	"bytes"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/staplerkit/ocsp/cache"
	"github.com/staplerkit/ocsp/config"
	"github.com/staplerkit/ocsp/responder"
)

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
