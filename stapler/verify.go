package stapler

import "github.com/staplerkit/ocsp/internal/ocspcheck"

// Verification failures. A response that fails any of these is never
// stapled; errors.Is matches them through the wrapping.
var (
	// ErrMalformedResponse: the bytes are not a well-formed basic OCSP response.
	ErrMalformedResponse = ocspcheck.ErrMalformedResponse
	// ErrWrongCertificate: the response carries no answer whose full CertID
	// (hash algorithm, issuer name hash, issuer key hash, serial) is this
	// certificate's.
	ErrWrongCertificate = ocspcheck.ErrWrongCertificate
	// ErrUnauthorizedSigner: no key allowed to answer for the issuer (the
	// issuer itself, or a currently valid certificate it issued with
	// id-kp-OCSPSigning) made the signature.
	ErrUnauthorizedSigner = ocspcheck.ErrUnauthorizedSigner
	// ErrNotYetValid: thisUpdate is later than now plus the allowed skew.
	ErrNotYetValid = ocspcheck.ErrNotYetValid
	// ErrExpired: nextUpdate has passed.
	ErrExpired = ocspcheck.ErrExpired
	// ErrNoNextUpdate: the response has no nextUpdate and the caller
	// refused such responses (a negative NoNextUpdateLifetime). By default
	// one is accepted for DefaultNoNextUpdateLifetime after its thisUpdate.
	ErrNoNextUpdate = ocspcheck.ErrNoNextUpdate
	// ErrCriticalExtension: the response carries a critical extension this
	// package does not understand.
	ErrCriticalExtension = ocspcheck.ErrCriticalExtension
	// ErrSHA1Signature: the response, or the delegated responder certificate
	// that signed it, is signed with SHA-1, which is refused unless
	// WithAllowSHA1 (Stapler), Verifier.AllowSHA1 or VerifyOptions.AllowSHA1 is set.
	ErrSHA1Signature = ocspcheck.ErrSHA1Signature
)

// ResponseStatusError is a response whose responseStatus is not successful
// (malformedRequest, internalError, tryLater, sigRequired, unauthorized).
// Its one field, Status (an ocsp.ResponseStatus), is the status received;
// match it with errors.As:
//
//	var rs *stapler.ResponseStatusError
//	if errors.As(err, &rs) && rs.Status == ocsp.TryLater { ... }
type ResponseStatusError = ocspcheck.ResponseStatusError

// DefaultNoNextUpdateLifetime is how long after its thisUpdate a response
// without nextUpdate is relied on, unless WithNoNextUpdateLifetime,
// Verifier.NoNextUpdateLifetime or VerifyOptions.NoNextUpdateLifetime says
// otherwise. RFC 6960 (4.2.2.1) lets a responder leave nextUpdate out to
// say that newer information is always available; openssl ocsp does so by
// default, as EJBCA does, and Vault and OpenBao with ocsp_expiry 0. Such a
// responder signs each answer when asked, so its thisUpdate is the time of
// the request: an hour bounds how long a revocation can stay hidden behind
// a staple (the Stapler refreshes at half of it, two requests an hour per
// certificate), as NATS and s2n bound it too.
const DefaultNoNextUpdateLifetime = ocspcheck.DefaultNoNextUpdateLifetime
