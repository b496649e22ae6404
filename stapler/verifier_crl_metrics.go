package stapler

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"syscall"
	"time"
)

// CRLFetchOutcome names how a CRL download ended, for metrics.
type CRLFetchOutcome string

// The outcomes of CRL downloads.
const (
	// CRLFetchOK: a CRL accepted and held.
	CRLFetchOK CRLFetchOutcome = "ok"
	// CRLFetchInvalid: a CRL refused by its verification (malformed, not
	// the issuer's, SHA-1, not current, an unknown critical extension,
	// indirect, delta, or an issuing distribution point for another URL).
	CRLFetchInvalid CRLFetchOutcome = "invalid"
	// CRLFetchTooLarge: over MaxCRLBytes, or its index over MaxCRLMemory.
	CRLFetchTooLarge CRLFetchOutcome = "too_large"
	// CRLFetchRollback: older than a CRL already accepted from the point.
	CRLFetchRollback CRLFetchOutcome = "rollback"
	// CRLFetchHTTPStatus: an HTTP status other than 200.
	CRLFetchHTTPStatus CRLFetchOutcome = "http_status"
	// CRLFetchTimeout: the download did not end in time.
	CRLFetchTimeout CRLFetchOutcome = "timeout"
	// CRLFetchConnection: the server could not be reached (DNS, refused,
	// reset, a TLS failure).
	CRLFetchConnection CRLFetchOutcome = "connection"
	// CRLFetchOther: anything else.
	CRLFetchOther CRLFetchOutcome = "other"
)

// crlFetchOutcomes lists the outcomes, in a fixed order.
var crlFetchOutcomes = [...]CRLFetchOutcome{CRLFetchOK, CRLFetchInvalid, CRLFetchTooLarge, CRLFetchRollback, CRLFetchHTTPStatus, CRLFetchTimeout, CRLFetchConnection, CRLFetchOther}

// CRLMetrics is a snapshot of a Verifier's CRLs, for any metrics system
// (cheap to take: counters and one pass over the CRLs held).
type CRLMetrics struct {
	// Fetches counts the CRL downloads since the Verifier's first check,
	// by outcome (every outcome is present).
	Fetches map[CRLFetchOutcome]uint64
	// Held is how many CRLs are held, and Bytes how much memory their
	// indexes take (bounded by MaxCRLMemory).
	Held  int
	Bytes int64
	// NextUpdate is the nextUpdate of each CRL held, by distribution point
	// URL (the earliest, when two issuers' CRLs, or two scopes', share a
	// URL).
	NextUpdate map[string]time.Time
}

// CRLMetrics returns the CRL counters and what is held as they stand.
func (v *Verifier) CRLMetrics() CRLMetrics {
	v.init()
	m := CRLMetrics{Fetches: make(map[CRLFetchOutcome]uint64, len(crlFetchOutcomes))}
	for i, o := range crlFetchOutcomes {
		m.Fetches[o] = v.crlFetches[i].Load()
	}
	held := v.crls.Held()
	m.Held, m.Bytes, m.NextUpdate = held.CRLs, held.Bytes, held.NextUpdate
	return m
}

// countCRLFetch records the outcome of one CRL download.
func (v *Verifier) countCRLFetch(err error) {
	o := classifyCRLFetch(err)
	for i, k := range crlFetchOutcomes {
		if k == o {
			v.crlFetches[i].Add(1)
		}
	}
}

// classifyCRLFetch names the outcome of a CRL download.
func classifyCRLFetch(err error) CRLFetchOutcome {
	var netErr net.Error
	var dnsErr *net.DNSError
	var opErr *net.OpError
	switch {
	case err == nil:
		return CRLFetchOK
	case errors.Is(err, ErrCRLTooLarge):
		return CRLFetchTooLarge
	case errors.Is(err, ErrCRLRollback):
		return CRLFetchRollback
	case errors.Is(err, ErrHTTPStatus):
		return CRLFetchHTTPStatus
	case errors.Is(err, ErrCRLMalformed), errors.Is(err, ErrCRLWrongIssuer), errors.Is(err, ErrCRLSHA1Signature),
		errors.Is(err, ErrCRLNotYetValid), errors.Is(err, ErrCRLExpired), errors.Is(err, ErrCRLNoNextUpdate),
		errors.Is(err, ErrCRLCriticalExtension), errors.Is(err, ErrIndirectCRL), errors.Is(err, ErrDeltaCRL), errors.Is(err, ErrCRLScope):
		return CRLFetchInvalid
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		return CRLFetchTimeout
	case errors.As(err, &dnsErr), errors.As(err, &opErr), errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET):
		return CRLFetchConnection
	case isTLSFailure(err):
		return CRLFetchConnection
	}
	return CRLFetchOther
}

// isTLSFailure reports whether err is the failure of a TLS handshake: the
// server's certificate not verified, an alert, or a record that is not
// TLS.
func isTLSFailure(err error) bool {
	var verifyErr *tls.CertificateVerificationError
	var alert tls.AlertError
	var record tls.RecordHeaderError
	var unknownAuthority x509.UnknownAuthorityError
	var invalid x509.CertificateInvalidError
	var hostname x509.HostnameError
	return errors.As(err, &verifyErr) || errors.As(err, &alert) || errors.As(err, &record) ||
		errors.As(err, &unknownAuthority) || errors.As(err, &invalid) || errors.As(err, &hostname)
}
