package responder

import (
	"fmt"
	"time"
)

// FaultKind is a way for the responder to misbehave. Each is something a
// real responder, proxy or attacker has done; a client that staples must
// survive every one of them.
type FaultKind int

const (
	// NoFault answers correctly.
	NoFault FaultKind = iota
	// FaultDelay answers correctly after Fault.Delay.
	FaultDelay
	// FaultHang sends nothing until the client gives up or the server closes.
	FaultHang
	// FaultHTTP500 answers 500 Internal Server Error with a text body.
	FaultHTTP500
	// FaultHTTP503HTML answers 503 Service Unavailable with an HTML page.
	FaultHTTP503HTML
	// FaultWrongContentType answers a valid response labelled text/html.
	FaultWrongContentType
	// FaultTruncatedBody answers the first half of a valid response.
	FaultTruncatedBody
	// FaultGarbageBody answers bytes that are not DER.
	FaultGarbageBody
	// FaultHugeBody answers 100 MiB, far larger than any real response.
	FaultHugeBody
	// FaultEndlessBody streams bytes until the client hangs up.
	FaultEndlessBody
	// FaultRedirectLoop redirects to itself, forever.
	FaultRedirectLoop
	// FaultRedirectScheme redirects to a non-HTTP URL (ftp://).
	FaultRedirectScheme
	// FaultMalformedRequest answers the OCSP status malformedRequest (1).
	FaultMalformedRequest
	// FaultInternalError answers the OCSP status internalError (2).
	FaultInternalError
	// FaultTryLater answers the OCSP status tryLater (3).
	FaultTryLater
	// FaultSigRequired answers the OCSP status sigRequired (5).
	FaultSigRequired
	// FaultUnauthorized answers the OCSP status unauthorized (6).
	FaultUnauthorized
	// FaultUnauthorizedSigner signs with a self-signed key the CA never
	// authorized, embedding its certificate.
	FaultUnauthorizedSigner
	// FaultDelegateWithoutEKU signs with a certificate issued by the CA but
	// lacking the id-kp-OCSPSigning extended key usage.
	FaultDelegateWithoutEKU
	// FaultExpiredDelegate signs with a delegated responder certificate that
	// expired an hour ago.
	FaultExpiredDelegate
	// FaultRevokedDelegate signs with a delegated responder certificate
	// (without id-pkix-ocsp-nocheck) that the responder's own database says
	// is revoked; asked about that delegate, the CA itself answers.
	FaultRevokedDelegate
	// FaultWrongSerial answers for another serial number.
	FaultWrongSerial
	// FaultWrongIssuerHash answers with the issuer name and key hashes of
	// another CA (the serial and the signature are right).
	FaultWrongIssuerHash
	// FaultThisUpdateInFuture sets thisUpdate an hour ahead of the clock.
	FaultThisUpdateInFuture
	// FaultNextUpdateInPast sets nextUpdate an hour behind the clock.
	FaultNextUpdateInPast
	// FaultNoNextUpdate leaves nextUpdate out and sets thisUpdate two hours
	// back: older than a response without nextUpdate is relied on by
	// default (stapler.DefaultNoNextUpdateLifetime, an hour).
	FaultNoNextUpdate
	faultKinds // the number of kinds; keep last
)

var faultNames = [...]string{
	NoFault:                 "none",
	FaultDelay:              "delay",
	FaultHang:               "hang",
	FaultHTTP500:            "http-500",
	FaultHTTP503HTML:        "http-503-html",
	FaultWrongContentType:   "wrong-content-type",
	FaultTruncatedBody:      "truncated-body",
	FaultGarbageBody:        "garbage-body",
	FaultHugeBody:           "huge-body",
	FaultEndlessBody:        "endless-body",
	FaultRedirectLoop:       "redirect-loop",
	FaultRedirectScheme:     "redirect-scheme",
	FaultMalformedRequest:   "malformed-request",
	FaultInternalError:      "internal-error",
	FaultTryLater:           "try-later",
	FaultSigRequired:        "sig-required",
	FaultUnauthorized:       "unauthorized",
	FaultUnauthorizedSigner: "unauthorized-signer",
	FaultDelegateWithoutEKU: "delegate-without-eku",
	FaultExpiredDelegate:    "expired-delegate",
	FaultRevokedDelegate:    "revoked-delegate",
	FaultWrongSerial:        "wrong-serial",
	FaultWrongIssuerHash:    "wrong-issuer-hash",
	FaultThisUpdateInFuture: "this-update-in-future",
	FaultNextUpdateInPast:   "next-update-in-past",
	FaultNoNextUpdate:       "no-next-update",
}

// String names the fault.
func (k FaultKind) String() string {
	if k >= 0 && k < faultKinds {
		return faultNames[k]
	}
	return fmt.Sprintf("fault(%d)", int(k))
}

// AllFaults lists every fault but NoFault and FaultDelay, for table-driven
// tests that must survive each.
func AllFaults() []FaultKind {
	var kinds []FaultKind
	for k := FaultHang; k < faultKinds; k++ {
		kinds = append(kinds, k)
	}
	return kinds
}

// Fault is what the responder does instead of, or before, answering
// correctly.
type Fault struct {
	Kind FaultKind
	// Delay is how long FaultDelay waits before answering.
	Delay time.Duration
}
