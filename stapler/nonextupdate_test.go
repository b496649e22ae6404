package stapler

import (
	"crypto/tls"
	"errors"
	"testing"
	"time"

	"github.com/staplerkit/ocsp/internal/ocsptest"

	"golang.org/x/crypto/ocsp"

	"github.com/staplerkit/ocsp/config"
	"github.com/staplerkit/ocsp/responder"
)

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
