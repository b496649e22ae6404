package stapler

import "errors"

// Policy decides what a handshake does when no good staple is at hand.
type Policy int

const (
	// Lenient staples a valid response when there is one (good or revoked)
	// and otherwise completes the handshake without a staple. The client
	// decides; browsers soft-fail.
	Lenient Policy = iota
	// Strict is Lenient, but refuses the handshake when the certificate is
	// known to be revoked, or when its last response has expired: the client
	// sees a TLS handshake failure instead of a certificate it should not trust.
	Strict
	// MustStaple is Strict, and also refuses the handshake whenever no valid
	// staple is available (RFC 7633: a must-staple client hard-fails without
	// one anyway, so failing here says why in the server's log). A leaf with
	// the TLS feature extension is always MustStaple.
	MustStaple
)

// String names the policy.
func (p Policy) String() string {
	switch p {
	case Strict:
		return "strict"
	case MustStaple:
		return "must-staple"
	}
	return "lenient"
}

// ParsePolicy reads "lenient", "strict" or "must-staple".
func ParsePolicy(s string) (Policy, error) {
	for _, p := range []Policy{Lenient, Strict, MustStaple} {
		if p.String() == s {
			return p, nil
		}
	}
	return Lenient, errors.New("stapler: unknown policy " + s + ": want lenient, strict or must-staple")
}

// Handshake refusals; errors.Is matches them in the error a refused
// handshake reports on the server side.
var (
	// ErrRevoked: Strict or MustStaple refused a certificate whose valid
	// response says it is revoked.
	ErrRevoked = errors.New("certificate is revoked")
	// ErrStapleExpired: Strict or MustStaple refused a certificate whose last
	// response has expired.
	ErrStapleExpired = errors.New("OCSP response for the certificate has expired")
	// ErrNoStaple: MustStaple refused a certificate with no valid response.
	ErrNoStaple = errors.New("no valid OCSP response to staple")
)
