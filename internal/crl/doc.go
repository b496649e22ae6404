// Package crl parses and verifies X.509 certificate revocation lists
// (RFC 5280 section 5) for one question: does this CRL, fetched from this
// distribution point, signed by this issuer, say that this certificate is
// revoked, now?
//
// Parse checks everything a CRL can be refused for (signature and issuer
// name, thisUpdate within the clock skew, a nextUpdate that has not passed,
// unknown critical extensions of the CRL or of an entry, an issuing
// distribution point that does not name the URL it was fetched from or
// that limits it to some reasons or to attribute certificates) and refuses
// indirect CRLs and delta CRLs outright. What it keeps is a compact index
// of the revoked serials, sorted, looked up in O(log n) without
// allocating; the DER and the parsed entries are dropped.
//
// It knows nothing of TLS or OCSP and makes no network request: fetching,
// caching and the policy of what a missing CRL means are the caller's
// (stapler's Verifier).
package crl
