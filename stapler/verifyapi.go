package stapler

import (
	"crypto/x509"
	"time"

	"github.com/staplerkit/ocsp/internal/ocspcheck"
	"github.com/staplerkit/ocsp/internal/record"
	"golang.org/x/crypto/ocsp"
)

// Response is an OCSP response that VerifyResponse accepted: the answer
// about one certificate, and who signed it.
type Response struct {
	// Status is ocsp.Good or ocsp.Revoked; an unknown answer is refused
	// with ErrUnknownStatus.
	Status                 int
	ProducedAt, ThisUpdate time.Time
	// NextUpdate is zero when the response has none.
	NextUpdate time.Time
	// Expires is when the response stops being relied on: its nextUpdate
	// (for one without, thisUpdate plus NoNextUpdateLifetime), or sooner
	// the leaf's or the delegated signer's NotAfter.
	Expires time.Time
	// RevokedAt and RevocationReason (an RFC 5280 reason code, as
	// ocsp.KeyCompromise) are set for a revoked certificate.
	RevokedAt        time.Time
	RevocationReason int
	// Signer is the delegated responder certificate that signed the
	// response, or nil when the issuer signed it.
	Signer *x509.Certificate
	// Raw is the response as it should be stapled: the signed part, its
	// signature, and only the signer's certificate (anything else that
	// rode outside the signature is dropped).
	Raw []byte
}

// VerifyOptions tune VerifyResponse; the zero value checks as of now, with
// 5 minutes of clock skew, and refuses SHA-1.
type VerifyOptions struct {
	// CurrentTime is the time the response is checked at. If zero, the
	// current time is used.
	CurrentTime time.Time
	// ClockSkew is how far thisUpdate, and a delegated responder's
	// notBefore, may be ahead of CurrentTime. Zero means 5 minutes; a
	// negative value allows none (as for Verifier.ClockSkew and the
	// Stapler's WithClockSkew).
	ClockSkew time.Duration
	// AllowSHA1 accepts SHA-1 signatures on the response and on a
	// delegated responder's certificate, for legacy private PKI (see the
	// Stapler's WithAllowSHA1).
	AllowSHA1 bool
	// NoNextUpdateLifetime is how long after its thisUpdate a response
	// without nextUpdate is accepted: zero means
	// DefaultNoNextUpdateLifetime, a negative value refuses such
	// responses with ErrNoNextUpdate (the Stapler's WithNoNextUpdateLifetime).
	NoNextUpdateLifetime time.Duration
}

// VerifyResponse verifies raw as the OCSP response about leaf, issued by
// issuer, with every check the Stapler applies before it staples a
// response, and returns the answer. It is a stricter replacement for
// x/crypto's ocsp.ParseResponseForCert:
//
//   - strict DER: no element added to any SEQUENCE, certStatus exactly one
//     of good, revoked and unknown, every embedded certificate parses,
//     signatureAlgorithm parameters NULL or absent, nothing trailing
//     (ErrMalformedResponse), and at most MaxResponseBytes
//     (ErrResponseTooLarge);
//   - the full CertID must be the leaf's: hash algorithm, issuer name hash,
//     issuer key hash and serial, not the serial alone (ErrWrongCertificate);
//   - the signer is the issuer or a delegate it issued with
//     id-kp-OCSPSigning, valid at the time checked (with the skew for its
//     notBefore), with no unknown critical extension and a keyUsage that
//     allows digitalSignature (ErrUnauthorizedSigner); SHA-1 signatures
//     are refused (ErrSHA1Signature) unless opts.AllowSHA1;
//   - thisUpdate at most the skew ahead (ErrNotYetValid), nextUpdate
//     ahead (ErrExpired) or, for a response without one, thisUpdate less
//     than opts.NoNextUpdateLifetime ago (ErrExpired; ErrNoNextUpdate when
//     such responses are refused), no unknown critical
//     extension (ErrCriticalExtension), a successful responseStatus
//     (*ResponseStatusError), and an answer other than unknown
//     (ErrUnknownStatus).
//
// It does not ask whether a delegated responder is itself revoked (that
// needs a network request; the Stapler and the Verifier do it).
func VerifyResponse(raw []byte, leaf, issuer *x509.Certificate, opts VerifyOptions) (*Response, error) {
	now := opts.CurrentTime
	if now.IsZero() {
		now = time.Now()
	}
	e, signer, err := ocspcheck.VerifySigner(raw, leaf, issuer, now, ocspcheck.Options{Skew: skewOrDefault(opts.ClockSkew), AllowSHA1: opts.AllowSHA1, Undated: opts.NoNextUpdateLifetime})
	if err != nil {
		return nil, err
	}
	r := &Response{
		ProducedAt: e.ProducedAt.Time(),
		ThisUpdate: e.ThisUpdate.Time(),
		NextUpdate: e.NextUpdate.Time(),
		Expires:    e.Expires.Time(),
		Signer:     signer,
		Raw:        e.Raw,
	}
	switch e.Status {
	case record.Good:
		r.Status = ocsp.Good
	case record.Revoked:
		r.Status = ocsp.Revoked
		r.RevokedAt, r.RevocationReason = e.RevokedAt.Time(), int(e.RevocationReason)
	default:
		return nil, ErrUnknownStatus
	}
	return r, nil
}
