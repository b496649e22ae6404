// Package fleet is the fleet protocol of the stapler: how the servers that
// share a store implementing cache.Leaser coordinate their OCSP queries.
// One server at a time queries the responder for a certificate (the holder
// of the certificate's lease) and writes the answer and the recovery state
// (tries, failed, the last error, when to try next) to the store; the
// others adopt what it stored when the store announces a change, after
// verifying it themselves. While a certificate's keys cannot be reached,
// that certificate is queried alone; the others go on coordinating.
//
// It holds the protocol and nothing else: leases and the shared state
// (lease.go, stored.go), a due refresh (refresh.go), the sharing of a
// response got outside a refresh (share.go), notifications and adoption
// (notices.go) and the store's health (health.go). A Source runs it for
// one host, the Stapler, which implements Host: it queries the responder,
// verifies what the store holds, applies or adopts an outcome and plans
// the next query. A certificate is the host's handle (Cert), opaque but
// for its ID.
//
// It must never know about TLS handshakes, the views handshakes read, the
// wrapped configs, certificate selection, the responder's protocol or how
// a response is verified: those are the host's. It imports nothing of the
// stapler package.
package fleet
