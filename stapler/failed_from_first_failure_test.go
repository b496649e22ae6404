package stapler

import (
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/staplerkit/ocsp/responder"
)

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
