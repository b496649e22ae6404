package stapler

// How the deadline of one check is shared between distribution points.
// From an attacker session's findings on issue 29 (CRL checking).

import (
	"errors"
	"testing"
	"time"
)

// One hanging distribution point does not take the whole deadline: each
// point is waited for at most its share of the time left. Found by an
// attack session: a certificate naming two points, the first hanging (an
// attacker's mirror, or one down), never had its second asked before the
// deadline: every handshake of a good client was refused under HardFail,
// and a revoked one accepted without it, although the second point
// answered at once.
func TestVerifierCRLHangingFirstPointLeavesTimeForTheNext(t *testing.T) {
	p := newCRLPKI(t)
	s := newPointServer(t)
	s.hang("/hang.crl")
	s.serve("/good.crl", p.crl(1, []int64{5}))
	points := []string{s.url("/hang.crl"), s.url("/good.crl")}
	t.Run("HardFail, a good client", func(t *testing.T) {
		v := &Verifier{HardFail: true, FetchTimeout: 2 * time.Second, Time: p.clock.Now}
		if err := v.VerifyConnection(p.state(p.leaf(6, leafOpts{points: points}))); err != nil {
			t.Errorf("good by its second CRL: %v", err)
		}
	})
	t.Run("soft fail, a revoked client", func(t *testing.T) {
		v := &Verifier{FetchTimeout: 2 * time.Second, Time: p.clock.Now}
		var revoked *RevokedError
		if err := v.VerifyConnection(p.state(p.leaf(5, leafOpts{points: points}))); !errors.As(err, &revoked) {
			t.Errorf("revoked by its second CRL: %v", err)
		}
	})
}
