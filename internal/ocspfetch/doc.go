// Package ocspfetch asks OCSP responders and verifies what they answer:
// the way from a question about a certificate to a verified answer, for
// the Stapler and the Verifier alike.
//
// It sends RFC 5019 GETs when the URL fits, POSTs otherwise, falls back
// from a refused method to the other (and remembers a responder that only
// takes POST), follows at most a few http(s) redirects, refuses non-200
// answers, other content types and bodies over ocspcheck.MaxResponseBytes,
// verifies answers with internal/ocspcheck, checks a delegated signer's own
// status, and shares each request among the callers that ask at the same
// time on a context of its owner's, never a caller's. It also downloads a
// certificate's issuer from its AIA URLs.
//
// It knows nothing of stapling, TLS handshakes, stores, schedules or what
// a failure means to its owner: it gives an answer or a precise error.
package ocspfetch
