// Package ocspcheck parses and verifies OCSP responses (RFC 6960) strictly:
// bytes, a leaf, its issuer, a time and options in; a verified answer (a
// record.Entry, its bytes in canonical DER) or a precise error out.
//
// Parsing is strict DER: nothing outside the signature is accepted, since
// the bytes would be stapled verbatim. Verification checks the full CertID,
// an authorized and currently valid signer (the issuer, or a delegate it
// issued with id-kp-OCSPSigning), the times against the skew, unknown
// critical extensions and SHA-1 signatures.
//
// It keeps no state of its own beyond a bounded cache of delegate
// signatures already checked, reads no clock (the caller passes now) and
// makes no network request: asking a responder, asking it about a
// delegate, caching answers and deciding what a failure means belong to
// the caller (the stapler package: the Stapler, the Verifier,
// VerifyResponse). It knows nothing of TLS, of stapling or of stores.
package ocspcheck
