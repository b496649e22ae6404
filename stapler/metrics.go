package stapler

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/staplerkit/ocsp/internal/record"
	"golang.org/x/crypto/ocsp"
)

// QueryFailure names a kind of failed query, for metrics.
type QueryFailure string

// The kinds of failed queries.
const (
	// FailureHTTPStatus: an HTTP status other than 200.
	FailureHTTPStatus QueryFailure = "http_status"
	// FailureContentType: a body not labelled application/ocsp-response.
	FailureContentType QueryFailure = "content_type"
	// FailureTimeout: response_timeout passed.
	FailureTimeout QueryFailure = "timeout"
	// FailureInvalidResponse: an answer that does not verify (malformed,
	// for another certificate, an unauthorized signer, bad times, too
	// large, SHA-1).
	FailureInvalidResponse QueryFailure = "invalid_response"
	// FailureRateLimited: the responder asked to try later (tryLater).
	FailureRateLimited QueryFailure = "rate_limited"
	// FailureResponderStatus: another OCSP error status (internalError,
	// malformedRequest, unauthorized, sigRequired).
	FailureResponderStatus QueryFailure = "responder_status"
	// FailureUnknown: the responder does not know the certificate.
	FailureUnknown QueryFailure = "unknown"
	// FailureDNS: the responder's name did not resolve.
	FailureDNS QueryFailure = "dns"
	// FailureConnection: the responder could not be reached (connection
	// refused or reset, no route, a TLS handshake with it failed).
	FailureConnection QueryFailure = "connection"
	// FailureOther: anything else (a bad redirect, a request that could
	// not be made).
	FailureOther QueryFailure = "other"
)

// queryFailures lists the kinds, in a fixed order.
var queryFailures = [...]QueryFailure{FailureHTTPStatus, FailureContentType, FailureTimeout, FailureInvalidResponse, FailureRateLimited, FailureResponderStatus, FailureUnknown, FailureDNS, FailureConnection, FailureOther}

// QueryLatencyBounds are the upper bounds of the query latency histogram's
// buckets (the last bucket is everything slower).
var queryLatencyBounds = [...]time.Duration{
	10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond,
	250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2500 * time.Millisecond, 5 * time.Second, 10 * time.Second,
}

// Metrics is a snapshot of the Stapler's counters since New: cheap to keep
// (atomic adds; the handshake hit stays lock-free and allocation-free) and
// free of dependencies, for any metrics system (the metrics module exports
// them to Prometheus).
type Metrics struct {
	// Handshakes served, by outcome.
	HandshakesStapled   uint64 // with a staple
	HandshakesUnstapled uint64 // without one (no valid staple, lenient policy)
	HandshakesRefused   uint64 // refused by the policy (revoked, or no staple under MustStaple)
	// Queries answered good or revoked, and failed queries by kind.
	QueriesGood    uint64
	QueriesRevoked uint64
	QueryFailures  map[QueryFailure]uint64
	// QueryLatency is the latency of every query, successful or not.
	QueryLatency Histogram
	// Retired counts the certificates retired for want of handshakes (or
	// by WithMaxCertificates).
	Retired uint64
	// Store is the health of the store given with WithStore.
	Store StoreHealth
	// GETFallbacks counts the requests sent again by POST because the
	// responder refused the GET (a 4xx, an answer that is not an OCSP
	// response, or malformedRequest). A responder that refuses GET is then
	// asked by POST alone for an hour, so this grows by about one an hour
	// per such responder, not per certificate.
	GETFallbacks uint64
}

// StoreOp names an operation on the store, for metrics.
type StoreOp string

// The store operations counted.
const (
	StoreRead   StoreOp = "read"
	StoreWrite  StoreOp = "write"
	StoreLease  StoreOp = "lease" // a fleet's per-certificate lease
	StoreDelete StoreOp = "delete"
)

var storeOps = [...]StoreOp{StoreRead, StoreWrite, StoreLease, StoreDelete}

// StoreHealth is how the store (WithStore) has been answering.
type StoreHealth struct {
	// Configured is set when the Stapler has a store.
	Configured bool
	// Up is false while the store could not be reached at its last use:
	// in a fleet, for any certificate's keys (one Redis Cluster master
	// down is enough); with a DirStore, at the last write or read.
	Up bool
	// Errors counts the failed operations, by kind (a key that holds
	// nothing usable is not an error: it is replaced).
	Errors map[StoreOp]uint64
}

// Histogram is a latency histogram: Counts[i] queries took at most
// Bounds[i] (and more than Bounds[i-1]); Counts[len(Bounds)] took longer.
type Histogram struct {
	Bounds []time.Duration
	Counts []uint64
	Count  uint64
	Sum    time.Duration
}

// counters are the atomics behind Metrics.
type counters struct {
	stapled, unstapled, refused atomic.Uint64
	retired                     atomic.Uint64
	getFallbacks                atomic.Uint64
	storeErrors                 [len(storeOps)]atomic.Uint64
	good, revoked               atomic.Uint64
	failures                    [len(queryFailures)]atomic.Uint64
	latency                     [len(queryLatencyBounds) + 1]atomic.Uint64
	latencySum                  atomic.Int64
}

// Metrics returns the counters as they stand.
func (s *Stapler) Metrics() Metrics {
	c := &s.counters
	m := Metrics{
		HandshakesStapled:   c.stapled.Load(),
		HandshakesUnstapled: c.unstapled.Load(),
		HandshakesRefused:   c.refused.Load(),
		QueriesGood:         c.good.Load(),
		QueriesRevoked:      c.revoked.Load(),
		Retired:             c.retired.Load(),
		GETFallbacks:        c.getFallbacks.Load(),
		QueryFailures:       make(map[QueryFailure]uint64, len(queryFailures)),
		QueryLatency:        Histogram{Bounds: queryLatencyBounds[:], Counts: make([]uint64, len(c.latency))},
	}
	for i, kind := range queryFailures {
		m.QueryFailures[kind] = c.failures[i].Load()
	}
	for i := range c.latency {
		m.QueryLatency.Counts[i] = c.latency[i].Load()
		m.QueryLatency.Count += m.QueryLatency.Counts[i]
	}
	m.QueryLatency.Sum = time.Duration(c.latencySum.Load())
	m.Store = StoreHealth{Configured: s.opts.store != nil, Up: !s.src.down(), Errors: make(map[StoreOp]uint64, len(storeOps))}
	for i, op := range storeOps {
		m.Store.Errors[op] = c.storeErrors[i].Load()
	}
	return m
}

// storeFailed counts a failed store operation.
func (c *counters) storeFailed(op StoreOp) {
	for i, o := range storeOps {
		if o == op {
			c.storeErrors[i].Add(1)
		}
	}
}

// countQuery records one query to the responder: its outcome and latency.
func (c *counters) countQuery(e *record.Entry, err error, took time.Duration) {
	i := len(queryLatencyBounds)
	for j, b := range queryLatencyBounds {
		if took <= b {
			i = j
			break
		}
	}
	c.latency[i].Add(1)
	c.latencySum.Add(int64(took))
	switch {
	case err == nil && e.Status == record.Good:
		c.good.Add(1)
	case err == nil && e.Status == record.Revoked:
		c.revoked.Add(1)
	default:
		kind := classifyFailure(e, err)
		for j, k := range queryFailures {
			if k == kind {
				c.failures[j].Add(1)
			}
		}
	}
}

// classifyFailure names the kind of a failed query.
func classifyFailure(e *record.Entry, err error) QueryFailure {
	var status *ResponseStatusError
	var netErr net.Error
	var dnsErr *net.DNSError
	var opErr *net.OpError
	var verifyErr *tls.CertificateVerificationError // an https responder's certificate
	var headerErr tls.RecordHeaderError             // not TLS
	var alertErr tls.AlertError                     // refused by the responder
	switch {
	case err == nil && e != nil && e.Status == record.Unknown, errors.Is(err, ErrUnknownStatus):
		return FailureUnknown
	case errors.Is(err, ErrHTTPStatus):
		return FailureHTTPStatus
	case errors.Is(err, ErrContentType):
		return FailureContentType
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		return FailureTimeout
	case errors.As(err, &dnsErr):
		return FailureDNS
	case errors.As(err, &opErr), errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET),
		errors.As(err, &verifyErr), errors.As(err, &headerErr), errors.As(err, &alertErr):
		return FailureConnection
	case errors.As(err, &status) && status.Status == ocsp.TryLater:
		return FailureRateLimited
	case errors.As(err, &status):
		return FailureResponderStatus
	case errors.Is(err, ErrMalformedResponse), errors.Is(err, ErrWrongCertificate), errors.Is(err, ErrUnauthorizedSigner),
		errors.Is(err, ErrNotYetValid), errors.Is(err, ErrExpired), errors.Is(err, ErrNoNextUpdate),
		errors.Is(err, ErrCriticalExtension), errors.Is(err, ErrSHA1Signature), errors.Is(err, ErrResponseTooLarge):
		return FailureInvalidResponse
	}
	return FailureOther
}
