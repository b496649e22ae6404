// Package responder is an OCSP responder for tests and small private PKIs,
// with a test PKI to go with it.
//
// It feels like net/http/httptest: NewCA mints a root, NewServer starts a
// Responder on 127.0.0.1, and Server.Issue mints certificates whose AIA OCSP
// URL points at it. The Responder answers RFC 6960 POST and RFC 5019 GET
// requests, signs with the CA key or a delegated responder certificate
// (CA.NewDelegate, UseDelegate), and keeps a database of statuses that a test
// changes at any time (SetStatus, Forget); serials it never heard of are
// unknown.
//
// Faults (SetFault for every request, SetSerialFault for one certificate,
// QueueFaults for the next requests) make it misbehave the ways real
// responders and proxies do: hang, answer HTML error pages, truncated or
// huge bodies, OCSP error statuses, unauthorized or expired signers, answers
// for the wrong certificate, and bad times. Requests and RequestCount let a
// test count what a client asked.
//
// The package depends on no other package of this module.
package responder
