package crl

import "errors"

// Why a CRL is refused; errors.Is matches them through the wrapping.
var (
	// ErrMalformed: the bytes are not a well-formed DER (or PEM "X509 CRL")
	// CRL, version 2.
	ErrMalformed = errors.New("malformed CRL")
	// ErrWrongIssuer: the CRL names another issuer than the certificate's,
	// or its signature is not the issuer's.
	ErrWrongIssuer = errors.New("CRL not signed by the certificate's issuer")
	// ErrSHA1: the CRL is signed with SHA-1 and SHA-1 was not allowed.
	ErrSHA1 = errors.New("CRL signed with SHA-1")
	// ErrNotYetValid: thisUpdate is later than now plus the clock skew.
	ErrNotYetValid = errors.New("CRL not yet valid")
	// ErrExpired: nextUpdate has passed.
	ErrExpired = errors.New("CRL expired")
	// ErrNoNextUpdate: the CRL has no nextUpdate, so nothing says how long
	// it may be relied on.
	ErrNoNextUpdate = errors.New("CRL has no nextUpdate")
	// ErrCriticalExtension: the CRL, or one of its entries, carries a
	// critical extension this package does not understand.
	ErrCriticalExtension = errors.New("CRL has an unknown critical extension")
	// ErrIndirect: an indirect CRL (an issuing distribution point with
	// indirectCRL, or an entry with a certificateIssuer extension), which
	// lists certificates of other issuers. Not supported.
	ErrIndirect = errors.New("indirect CRL not supported")
	// ErrDelta: a delta CRL (deltaCRLIndicator), which lists only the
	// changes since a base CRL. Not supported.
	ErrDelta = errors.New("delta CRL not supported")
	// ErrScope: the CRL's issuing distribution point says it does not
	// cover the certificate (another distribution point, user or CA
	// certificates only, some reasons only, attribute certificates only).
	ErrScope = errors.New("CRL does not cover the certificate")
	// ErrNoDistributionPoint: the certificate names no http or https CRL
	// distribution point of a direct, full CRL.
	ErrNoDistributionPoint = errors.New("no http or https CRL distribution point")
)
