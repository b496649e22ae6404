// Package stapler staples fresh, fully verified OCSP responses into the TLS
// handshakes of any Go server.
//
// Adopting it takes three lines:
//
//	s, err := stapler.New(config.OCSP{OCSPFunctionality: true})
//	defer s.Close()
//	server.TLSConfig = s.Wrap(tlsConfig)
//
// A tour:
//
//   - Wrap clones a *tls.Config so that every certificate it serves is
//     stapled, however the config picks certificates (Certificates,
//     GetCertificate, GetConfigForClient; GetClientCertificate for mTLS
//     clients), with or without SNI: the clone selects every certificate
//     itself. Certificates are never modified: handshakes get stapled
//     copies, swapped atomically. A cache hit takes no lock and allocates
//     nothing.
//   - Verifier checks the staple a peer sends (clients, mTLS servers), with
//     the same verification, and remembers the newest answer per
//     certificate so that an older staple never rolls back a revocation.
//   - Fetching: the leaf's AIA OCSP URL (or WithResponderURL), GET when the
//     URL fits in 255 bytes and POST otherwise, bounded by response_timeout,
//     only 200 with Content-Type application/ocsp-response, at most
//     MaxResponseBytes. Concurrent handshakes, refreshes and Test calls for
//     one certificate share one request.
//   - Verification goes beyond golang.org/x/crypto/ocsp (and is public as
//     VerifyResponse): strict DER (nothing the signature does not cover is
//     accepted), the full CertID (hash algorithm, issuer name and key hashes,
//     serial), an authorized signer (the issuer, or a delegate it issued with
//     id-kp-OCSPSigning that is valid now, with no unknown critical extension
//     and a keyUsage allowing signatures; every embedded certificate is
//     tried), no SHA-1 unless WithAllowSHA1, thisUpdate within the clock skew, a
//     nextUpdate that has not passed (a response without one, as openssl
//     ocsp sends by default, is relied on for WithNoNextUpdateLifetime
//     after its thisUpdate, an hour by default), no unknown critical
//     extension.
//     skip_verify skips the signer checks only. What is stapled is the
//     canonical form: the signed part, its signature and only the signer's
//     certificate.
//   - Caching and refresh: a staple is served until the earliest of
//     fetched + cache_ttl, nextUpdate (or that lifetime), the leaf's NotAfter and a delegate's
//     NotAfter, and never after. One scheduler (a timer heap) refreshes every
//     certificate at the earliest of query_frequency, cache_ttl and half the
//     response's validity, with jitter, on a bounded pool of workers.
//     A refresh reads top to bottom (refresh.go, then apply.go): the mode's
//     source, picked once in New, queries, restores from a store
//     (persist.go) or adopts what a fleet shared (internal/fleet, behind
//     fleet.go); internal/ocspfetch asks and verifies for the Stapler and
//     the Verifier alike.
//   - Failures never replace a good staple: the last good one is served until
//     it expires while the query is retried every recovery_frequency, up to
//     recovery_max_tries times; then the certificate is in the failed state
//     (WithDropOnFailure drops the staple at that point) and the regular
//     schedule resumes, always with an attempt before the held staple
//     expires. A revoked answer replaces a good one at once; an unknown one
//     is never stapled; an answer older than the one held (by its own
//     thisUpdate, then producedAt) never replaces it. A leaf past its
//     NotAfter is retired. While any certificate is known revoked, wrapped
//     configs resume no TLS session (resumption would skip the policy).
//   - Policies: Lenient (the default), Strict and MustStaple decide what a
//     handshake does without a good staple; must-staple leaves are always
//     MustStaple.
//   - Get and Update mirror GET and PUT /v1/ocsp, Status and StatusOf GET
//     /v1/ocsp/status, Test POST /v1/ocsp/test; Stapling and SetStapling the
//     per-certificate ocsp_stapling object. WithStatusHook reports state
//     changes such as good -> revoked as they happen. Package
//     stapler/admin serves them over HTTP, with the documented error
//     bodies; this package's errors are plain Go errors, matched with
//     errors.Is and errors.As.
//
// # Configuration
//
// One convention, as in the standard library: a type that starts
// goroutines and owns resources until Close is made by a constructor that
// takes functional options (New(cfg, WithStore(...), WithLogger(...))),
// so that it is configured once, before anything runs; a value that starts
// nothing is a struct whose exported fields have documented, useful zero
// values, like tls.Config and autocert.Manager (Verifier, VerifyOptions,
// admin.Options, metrics.Options). Fields are read on first use and must
// not change after.
package stapler
