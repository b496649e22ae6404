package stapler

import (
	"errors"
	"testing"
	"time"
)

// DEFECT (one convention, two opposite meanings): issue 16 asked for "one
// option convention"; the Verifier's and VerifyOptions' ClockSkew say
// "zero means 5 minutes; a negative value allows none", but the Stapler's
// WithClockSkew ignores a negative value (keeping 5 minutes) and takes zero
// as none, and its doc says neither. A user who writes ClockSkew: -1 on
// the Verifier and WithClockSkew(-1) on the Stapler, to allow no skew on
// both sides, gets 5 minutes on the server: a response whose thisUpdate is
// a minute in the future is stapled, where VerifyResponse with the same
// setting refuses it (ErrNotYetValid).
func TestWithClockSkewNegativeMeansNoneAsOnTheVerifier(t *testing.T) {
	e := newEnv(t, on, WithClockSkew(-1))
	// The responder's clock runs two minutes ahead: thisUpdate (backdated a
	// minute) is a minute ahead of ours.
	e.r.SetClock(func() time.Time { return e.clock.Now().Add(2 * time.Minute) })
	raw := mustFetchRaw(t, e, e.leaf)
	if _, err := VerifyResponse(raw, e.leaf.Cert, e.ca.Cert, VerifyOptions{CurrentTime: e.clock.Now(), ClockSkew: -1}); !errors.Is(err, ErrNotYetValid) {
		t.Fatalf("VerifyResponse with ClockSkew -1: %v, want ErrNotYetValid", err)
	}
	e.wrapAndServe(e.leaf.Certificate)
	st := e.waitQueries(e.leaf, 1)
	if st.Stapled {
		t.Fatalf("WithClockSkew(-1) stapled a response whose thisUpdate is a minute ahead (5 minutes of skew allowed), while ClockSkew: -1 on VerifyOptions and the Verifier allows none")
	}
}
