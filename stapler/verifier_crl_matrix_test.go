package stapler

import (
	"errors"
	"fmt"
	"net/http"
	"testing"
)

// The soft/hard-fail matrix, checked against a reference model: every
// combination of what the responder says, what the CRL says, HardFail
// and must-staple.
func TestVerifierRevocationSourcesMatrix(t *testing.T) {
	type source int
	const (
		none source = iota // not named by the certificate
		good
		revoked
		down
	)
	names := [...]string{"none", "good", "revoked", "down"}
	// model is the documented rule: a must-staple certificate without a
	// staple is refused; else the responder decides when it answers, then
	// the CRL; a revocation is always refused; with neither, HardFail
	// decides.
	model := func(ocspSrc, crlSrc source, hard, mustStaple bool) string {
		switch {
		case mustStaple:
			return "refused"
		case ocspSrc == revoked:
			return "revoked"
		case ocspSrc == good:
			return "accepted"
		case crlSrc == revoked:
			return "revoked"
		case crlSrc == good:
			return "accepted"
		case hard:
			return "refused"
		}
		return "accepted"
	}
	for _, ocspSrc := range []source{none, good, revoked, down} {
		for _, crlSrc := range []source{none, good, revoked, down} {
			for _, hard := range []bool{false, true} {
				for _, mustStaple := range []bool{false, true} {
					name := fmt.Sprintf("ocsp=%s/crl=%s/hard=%v/muststaple=%v", names[ocspSrc], names[crlSrc], hard, mustStaple)
					t.Run(name, func(t *testing.T) {
						p := newCRLPKI(t)
						p.mu.Lock()
						p.ocspState = map[source]int{good: 0, revoked: 1, down: -1, none: -1}[ocspSrc]
						switch crlSrc {
						case good:
							p.body = p.crl(1, nil)
						case revoked:
							p.body = p.crl(1, []int64{5})
						case down:
							p.status = http.StatusBadGateway
						}
						p.mu.Unlock()
						o := leafOpts{ocsp: ocspSrc != none, mustStaple: mustStaple}
						if crlSrc == none {
							o.points = []string{}
						}
						err := p.verifier(hard).VerifyConnection(p.state(p.leaf(5, o)))
						var rev *RevokedError
						var se *StapleError
						got := "accepted"
						switch {
						case errors.As(err, &rev):
							got = "revoked"
						case errors.As(err, &se):
							got = "refused"
						case err != nil:
							t.Fatalf("unexpected error %v", err)
						}
						if want := model(ocspSrc, crlSrc, hard, mustStaple); got != want {
							t.Fatalf("%s, want %s (%v)", got, want, err)
						}
					})
				}
			}
		}
	}
}
