// Package crlcache holds the CRLs a verifier has fetched: per issuer and
// distribution point, per scope (all certificates, user certificates only,
// CA certificates only), refreshed in the background, downloaded once
// however many callers wait, bounded in memory and in the number of
// points, with a remembered failure and its backoff per point and kind of
// certificate, and refusing a CRL older than one it accepted there before
// (a rollback).
//
// Its host gives it the download (an HTTP GET with its caps), the sharing
// of downloads among callers, a clock and a hook for each download's
// outcome. It knows nothing of OCSP, TLS handshakes, what a certificate's
// status means to a policy, or what a missing CRL means: parsing and
// verification are internal/crl's, the policy is stapler's Verifier's.
package crlcache
