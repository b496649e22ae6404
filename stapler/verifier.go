package stapler

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/staplerkit/ocsp/cache"
	"github.com/staplerkit/ocsp/stapler/clock"
)

// ErrNoVerifiedChain: the verifier was asked to hard-fail but the
// connection has no verified chain to check a staple against (the config
// sets InsecureSkipVerify, or a server does not verify client certificates).
var ErrNoVerifiedChain = errors.New("no verified certificate chain to check the OCSP staple against")

// RevokedError is a peer certificate that a valid OCSP response says is
// revoked. A Verifier always refuses such a connection.
type RevokedError struct {
	Subject   string
	Serial    *big.Int
	RevokedAt time.Time
	// Reason is the RFC 5280 reason code (ocsp.KeyCompromise, ...).
	Reason int
}

// Error implements error.
func (e *RevokedError) Error() string {
	return fmt.Sprintf("certificate %q (serial %x) was revoked at %s (reason %d)", e.Subject, e.Serial, e.RevokedAt.UTC().Format(time.RFC3339), e.Reason)
}

// StapleError is a connection a Verifier refused for want of a valid OCSP
// response: Err is ErrNoStaple, a verification error (ErrWrongCertificate,
// ErrExpired, ...) or ErrNoVerifiedChain.
type StapleError struct {
	Subject string
	// MustStaple says the peer's certificate carries the RFC 7633 extension.
	MustStaple bool
	Err        error
}

// Error implements error.
func (e *StapleError) Error() string {
	why := "hard fail"
	if e.MustStaple {
		why = "must-staple certificate"
	}
	return fmt.Sprintf("OCSP check of certificate %q failed (%s): %v", e.Subject, why, e.Err)
}

// Unwrap returns the cause.
func (e *StapleError) Unwrap() error { return e.Err }

// VerifierOption configures a Verifier.
type VerifierOption func(*Verifier)

// HardFail refuses connections whose peer sent no valid staple (and, with
// FetchWhenMissing, whose responder gave no valid answer either). By default
// only must-staple certificates hard-fail.
func HardFail() VerifierOption { return func(v *Verifier) { v.hardFail = true } }

// FetchWhenMissing asks the peer certificate's responder when no valid
// staple came, waiting at most timeout. Answers are cached until they
// expire and concurrent connections share one request. It also lets the
// Verifier ask whether a delegated responder that signed a staple is
// revoked, as the Stapler does.
func FetchWhenMissing(timeout time.Duration) VerifierOption {
	return func(v *Verifier) { v.fetchTimeout = timeout }
}

// VerifierAllowSHA1 accepts staples signed with SHA-1, and delegated
// responder certificates signed with SHA-1, for legacy private PKI; see
// AllowSHA1.
func VerifierAllowSHA1() VerifierOption { return func(v *Verifier) { v.allowSHA1 = true } }

// VerifierClock sets the verifier's clock (the system clock by default).
func VerifierClock(c Clock) VerifierOption { return func(v *Verifier) { v.clock = c } }

// VerifierHTTPClient sets the client for FetchWhenMissing.
func VerifierHTTPClient(c *http.Client) VerifierOption { return func(v *Verifier) { v.client = c } }

// VerifierClockSkew sets how far thisUpdate may be ahead of the local clock
// (5 minutes by default).
func VerifierClockSkew(d time.Duration) VerifierOption { return func(v *Verifier) { v.skew = d } }

// Verifier checks the OCSP staple a peer sends, exactly as a Stapler checks
// the responses it staples (full CertID, authorized signer, times), for
// tls.Config.VerifyConnection on either side: a client checks the server's
// staple, an mTLS server the staple a TLS 1.3 client sends.
//
// A revoked certificate is always refused, and so is a staple for another
// certificate (a server stapling the wrong response). A missing, expired or
// otherwise invalid staple is allowed (soft fail, as browsers do) unless the
// peer's certificate is must-staple (RFC 7633) or HardFail is set.
//
// It needs ConnectionState.VerifiedChains: with InsecureSkipVerify, or on a
// server that does not verify client certificates, there is no chain and so
// nothing to check; the connection is allowed, or refused with
// ErrNoVerifiedChain under HardFail. A chain of the trusted root alone has
// no issuer to ask about, and is allowed.
type Verifier struct {
	hardFail     bool
	fetchTimeout time.Duration
	clock        Clock
	client       *http.Client
	skew         time.Duration
	allowSHA1    bool

	flight    singleflight.Group
	mu        sync.Mutex
	cached    map[string]*cache.Entry
	delegates *delegateChecker
}

// NewVerifier returns a Verifier. Use its VerifyConnection method as
// tls.Config.VerifyConnection.
func NewVerifier(opts ...VerifierOption) *Verifier {
	v := &Verifier{clock: clock.System{}, skew: 5 * time.Minute, cached: map[string]*cache.Entry{}}
	for _, o := range opts {
		o(v)
	}
	if v.client == nil {
		v.client = &http.Client{CheckRedirect: checkRedirect}
	}
	v.delegates = newDelegateChecker(v.client, verifyOptions{skew: v.skew, allowSHA1: v.allowSHA1})
	return v
}

// VerifyConnection checks the peer's staple; see Verifier.
func (v *Verifier) VerifyConnection(cs tls.ConnectionState) error {
	if len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		if v.hardFail && len(cs.PeerCertificates) > 0 {
			return &StapleError{Subject: cs.PeerCertificates[0].Subject.String(), Err: ErrNoVerifiedChain}
		}
		return nil
	}
	chain := cs.VerifiedChains[0]
	if len(chain) < 2 {
		return nil
	}
	leaf, issuer := chain[0], chain[1]
	mustStaple := hasMustStaple(leaf)
	now := v.clock.Now()

	var err error = ErrNoStaple
	if len(cs.OCSPResponse) > 0 {
		var e *cache.Entry
		if e, err = v.verify(cs.OCSPResponse, leaf, issuer, now); err == nil {
			if done, verdict := judge(e, leaf); done {
				return verdict
			}
			err = ErrUnknownStatus
		}
		if errors.Is(err, ErrWrongCertificate) {
			// A staple that belongs to another certificate is a server
			// stapling the wrong thing (a stale swap, a mix-up, or worse):
			// refused whatever the policy.
			return &StapleError{Subject: leaf.Subject.String(), MustStaple: mustStaple, Err: err}
		}
	}
	if v.fetchTimeout > 0 && !mustStaple {
		e, ferr := v.fetch(leaf, issuer, now)
		if ferr == nil {
			if done, verdict := judge(e, leaf); done {
				return verdict
			}
			ferr = ErrUnknownStatus
		}
		err = fmt.Errorf("%w; asking the responder: %w", err, ferr)
	}
	if mustStaple || v.hardFail {
		return &StapleError{Subject: leaf.Subject.String(), MustStaple: mustStaple, Err: err}
	}
	return nil
}

// verify checks a response as the Stapler does. With FetchWhenMissing (the
// caller allows network requests), a delegated signer is also checked for
// revocation at the leaf's responder.
func (v *Verifier) verify(raw []byte, leaf, issuer *x509.Certificate, now time.Time) (*cache.Entry, error) {
	e, signer, err := verifyResponseSigner(raw, leaf, issuer, now, verifyOptions{skew: v.skew, allowSHA1: v.allowSHA1})
	if err != nil || signer == nil || v.fetchTimeout <= 0 {
		return e, err
	}
	if url := responderURL(leaf); url != "" {
		ctx, cancel := context.WithTimeout(context.Background(), v.fetchTimeout)
		defer cancel()
		if err := v.delegates.check(ctx, signer, issuer, url, now); err != nil {
			return nil, err
		}
	}
	return e, nil
}

// judge turns a verified answer into a verdict: good passes, revoked is
// refused, unknown decides nothing.
func judge(e *cache.Entry, leaf *x509.Certificate) (bool, error) {
	switch e.Status {
	case cache.Good:
		return true, nil
	case cache.Revoked:
		return true, &RevokedError{Subject: leaf.Subject.String(), Serial: leaf.SerialNumber, RevokedAt: e.RevokedAt.Time(), Reason: e.RevocationReason}
	}
	return false, nil
}

// fetch asks the leaf's responder, sharing requests and caching answers.
func (v *Verifier) fetch(leaf, issuer *x509.Certificate, now time.Time) (*cache.Entry, error) {
	id := CertificateID(leaf.Raw)
	v.mu.Lock()
	if e := v.cached[id]; e.Usable(now) {
		v.mu.Unlock()
		return e, nil
	}
	v.mu.Unlock()
	url := responderURL(leaf)
	if url == "" {
		return nil, ErrNoResponderURL
	}
	r, err, _ := v.flight.Do(id, func() (any, error) {
		ctx, cancel := context.WithTimeout(context.Background(), v.fetchTimeout)
		defer cancel()
		raw, _, err := fetchResponse(ctx, v.client, url, leaf, issuer)
		if err != nil {
			return nil, err
		}
		e, err := v.verify(raw, leaf, issuer, v.clock.Now())
		if err != nil {
			return nil, err
		}
		v.mu.Lock()
		for k, old := range v.cached { // drop what has expired, so the map stays small
			if !old.Usable(now) {
				delete(v.cached, k)
			}
		}
		v.cached[id] = e
		v.mu.Unlock()
		return e, nil
	})
	if err != nil {
		return nil, err
	}
	return r.(*cache.Entry), nil
}
