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

	"github.com/staplerkit/ocsp/internal/ocspcheck"
	"github.com/staplerkit/ocsp/internal/record"
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
// response: Err is ErrNoStaple (the peer sent none), a verification error
// (ErrWrongCertificate, ErrExpired, ...) or ErrNoVerifiedChain, with what
// asking the responder gave when the Verifier has a FetchTimeout.
type StapleError struct {
	Subject string
	// MustStaple says the peer's certificate carries the RFC 7633 extension.
	MustStaple bool
	// HardFail says the Verifier has HardFail set.
	HardFail bool
	Err      error
}

// Error implements error.
func (e *StapleError) Error() string {
	switch {
	case errors.Is(e.Err, ErrWrongCertificate):
		// Refused whatever the policy.
	case e.MustStaple:
		return fmt.Sprintf("OCSP check of certificate %q failed (must-staple certificate): %v", e.Subject, e.Err)
	case e.HardFail:
		return fmt.Sprintf("OCSP check of certificate %q failed (hard fail): %v", e.Subject, e.Err)
	}
	return fmt.Sprintf("OCSP check of certificate %q failed: %v", e.Subject, e.Err)
}

// Unwrap returns the cause.
func (e *StapleError) Unwrap() error { return e.Err }

// errPeerSentNoStaple is ErrNoStaple as the verifying side sees it.
var errPeerSentNoStaple error = peerSentNoStaple{}

type peerSentNoStaple struct{}

func (peerSentNoStaple) Error() string        { return "the peer sent no OCSP staple" }
func (peerSentNoStaple) Is(target error) bool { return target == ErrNoStaple }

// The backoff after failed requests for one certificate.
const (
	verifierRetryMin = 5 * time.Second
	verifierRetryMax = 5 * time.Minute
)

// maxSessionLifetime is the longest a TLS session can be resumed after it
// began (RFC 8446 4.6.1; crypto/tls applies it to TLS 1.2 tickets too).
const maxSessionLifetime = 7 * 24 * time.Hour

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
// The Verifier remembers, per certificate, the newest valid answer it has
// seen (from a staple on any connection, or from the responder), newest by
// thisUpdate, then producedAt. An older answer never overrides it: once a
// revocation is known, an older good staple (a replay by a server whose key
// was stolen) is refused. A revocation a CRL lists (one held, read on every
// check without a request, or one fetched) is known the same way, dated
// by the CRL's thisUpdate (not by a revocation date after it), and kept
// until the certificate's NotAfter: only a good OCSP answer whose
// thisUpdate is strictly later replaces it. A hold (certificateHold) is
// also released by a current CRL, newer than the one that listed it, that
// no longer lists the certificate, and, with FetchTimeout, the responder
// is asked about a held certificate (with the backoff of failures while
// it has nothing newer). It remembers up to 65,536 certificates, and
// forgets revocations last.
//
// Resumed sessions (ConnectionState.DidResume): crypto/tls hands back the
// staple of the handshake that began the session, and the peer sends no
// certificate and no staple. A known revocation is refused all the same. A
// staple still valid is checked as on a full handshake. Otherwise the
// session is accepted when a current good answer is known or, with
// FetchTimeout, comes from the responder; failing both, when the
// restored staple was a valid good answer when the session began (it is
// only expired, and a session lives at most 7 days): a connection is never
// refused for resuming a session whose peer holds a current staple. Without
// FetchTimeout, a revocation the Verifier has not seen is not detected
// on resumption; disable session resumption
// (tls.Config.SessionTicketsDisabled, no ClientSessionCache) where that
// matters.
//
// It needs ConnectionState.VerifiedChains: with InsecureSkipVerify, or on a
// server that does not verify client certificates, there is no chain and so
// nothing to check; the connection is allowed, or refused with
// ErrNoVerifiedChain under HardFail. A chain of the trusted root alone has
// no issuer to ask about, and is allowed.
//
// A Verifier is configured through its fields, whose zero values are the
// defaults (&stapler.Verifier{} is a soft-fail verifier on the system
// clock that never makes a network request), and is then used as
//
//	cfg.VerifyConnection = (&stapler.Verifier{HardFail: true}).VerifyConnection
//
// It starts no goroutines but those of its requests, each of which ends
// with its request (FetchTimeout, at least 30 seconds for a CRL). It is safe for concurrent use; its fields must
// not be changed, and it must not be copied, once it has checked a
// connection.
type Verifier struct {
	// HardFail refuses connections whose peer sent no valid staple (and,
	// with FetchTimeout, whose status neither the responder nor a CRL
	// established). When false, only must-staple certificates hard-fail,
	// and a revocation, known or found, is the only other refusal.
	//
	// On an mTLS server, mind TLS 1.2: a TLS 1.2 client cannot send a
	// staple for its certificate (status_request covers the server's
	// certificate only), so HardFail alone refuses every TLS 1.2 client.
	// Either require TLS 1.3 (tls.Config.MinVersion) or set FetchTimeout,
	// which asks the client certificate's responder instead.
	HardFail bool

	// FetchTimeout, when positive, makes the Verifier ask the peer
	// certificate's responder when no valid staple came, and ask whether a
	// delegated responder that signed a staple is revoked, as the Stapler
	// does. It bounds the whole check of one connection: every request the
	// check makes (delegate checks and the fetch) shares that one deadline.
	// Zero (the default) means no network request is ever made.
	//
	// With it, a certificate that names no OCSP responder, or whose
	// responder gave no answer, is checked against the CRLs of its http
	// and https CRL distribution points (when it names both, the
	// responder is waited for at most half the time left, and each of
	// several points at most its share of what is left). A CRL is used
	// only when its issuer is the one the chain verified with, it is
	// current (nextUpdate present and not passed, thisUpdate within
	// ClockSkew), it has no unknown critical extension, and its issuing
	// distribution point, if any, covers the certificate; indirect and
	// delta CRLs are refused (ErrIndirectCRL, ErrDeltaCRL). CRLs are held
	// per issuer, URL and scope (all, user or CA certificates; one that
	// does not cover the kind of certificate checked is refused and not
	// held) until nextUpdate, downloaded once for all the connections
	// waiting, fetched again in the background at most an hour after
	// download, never replaced by one of the same scope with a lower CRL
	// number (ErrCRLRollback), and bounded by MaxCRLBytes and MaxCRLMemory; a
	// failed download is remembered with the backoff below, and one still
	// running after a handshake waited its share for it is remembered as a
	// failure until it ends. Once the leaf
	// is allowed, each CA certificate of the chain below the root that
	// names such a distribution point is checked against its CRL the same
	// way, within the same deadline: a revocation is refused, and a status
	// no CRL established is refused under HardFail (intermediates are not
	// asked about by OCSP, and one naming no http(s) point is not checked).
	//
	// Answers are kept until they expire and concurrent connections share
	// one request. A failed request (an error, a response refused, or an
	// unknown answer) is remembered too: the responder is not
	// asked again for that certificate for 5 seconds, doubling with each
	// further failure up to 5 minutes (by Time), and connections in between
	// get the remembered failure at once.
	FetchTimeout time.Duration

	// Client makes the requests of FetchTimeout. If nil, the Verifier uses
	// its own transport, made on first use (a clone of
	// http.DefaultTransport's settings, never that transport itself), and
	// follows at most 3 redirects, to http and https only, as the Stapler
	// does.
	Client *http.Client

	// ClockSkew is how far a response's thisUpdate, and a delegated
	// responder's notBefore, may be ahead of the local clock. Zero means 5
	// minutes (as nginx and HAProxy allow); a negative value allows none.
	// The Stapler's WithClockSkew reads its value the same way.
	ClockSkew time.Duration

	// AllowSHA1 accepts staples signed with SHA-1, and delegated responder
	// certificates signed with SHA-1, for legacy private PKI; see the
	// Stapler's WithAllowSHA1. They are refused with ErrSHA1Signature when
	// false.
	AllowSHA1 bool
	// ResponderOverrides replaces the responder of peer certificates whose
	// AIA OCSP URL is a key (matched exactly) with the value, for
	// FetchTimeout's requests; an empty value means no request for those
	// certificates. As the Stapler's WithResponderOverrides.
	ResponderOverrides map[string]string

	// NoNextUpdateLifetime is how long after its thisUpdate a response
	// without nextUpdate is relied on: zero means
	// DefaultNoNextUpdateLifetime, a negative value refuses such
	// responses (ErrNoNextUpdate), as the Stapler's WithNoNextUpdateLifetime.
	NoNextUpdateLifetime time.Duration

	// Time returns the current time, for response validity and the backoff
	// of failed requests. If nil, the Verifier uses time.Now.
	Time func() time.Time

	// MaxCRLBytes is the largest CRL downloaded, in bytes (see
	// FetchTimeout): a larger one is refused with ErrCRLTooLarge. Zero
	// means DefaultMaxCRLBytes (10 MiB); a negative value turns CRL
	// checking off.
	MaxCRLBytes int64
	// MaxCRLMemory bounds the memory, in bytes, that the CRLs held take
	// together (their serial indexes, about 30 bytes per revoked serial);
	// the CRLs looked up longest ago are dropped to make room, and a CRL
	// that alone needs more is refused with ErrCRLTooLarge. Zero or less
	// means DefaultMaxCRLMemory (64 MiB).
	MaxCRLMemory int64

	once    sync.Once // makes fetcher, known and crls on first use
	fetcher *fetcher
	crls    *crlCache

	mu sync.Mutex // guards known and pruned
	// known is what the Verifier knows of each certificate, by ID, up to
	// maxKnown of them (maxKnownPeers when zero).
	known    map[string]*peerState
	maxKnown int
	pruned   int // len(known) after the last prune
}

// init sets up what the zero Verifier lacks, once.
func (v *Verifier) init() {
	v.once.Do(func() {
		v.known = map[string]*peerState{}
		v.crls = &crlCache{points: map[[32]byte]map[string]*crlPoint{}}
		if v.maxKnown == 0 {
			v.maxKnown = maxKnownPeers
		}
		client := v.Client
		if client == nil {
			// Its own transport, made on first use as the Stapler's is:
			// never the process-wide http.DefaultTransport.
			client = newHTTPClient()
		}
		v.fetcher = newFetcher(client, v.verifyOptions(), context.Background(),
			func() time.Duration { return v.FetchTimeout }, nil)
	})
}

// now is the Verifier's current time.
func (v *Verifier) now() time.Time {
	if v.Time != nil {
		return v.Time()
	}
	return time.Now()
}

// verifyOptions are the checks the fields ask for.
func (v *Verifier) verifyOptions() ocspcheck.Options {
	return ocspcheck.Options{Skew: skewOrDefault(v.ClockSkew), AllowSHA1: v.AllowSHA1, Undated: v.NoNextUpdateLifetime}
}

// defaultClockSkew is the clock skew allowed when none is set.
const defaultClockSkew = 5 * time.Minute

// skewOrDefault reads a ClockSkew field: zero is the default, a negative
// value none.
func skewOrDefault(d time.Duration) time.Duration {
	switch {
	case d == 0:
		return defaultClockSkew
	case d < 0:
		return 0
	}
	return d
}

// peerState is what a Verifier knows of one peer certificate.
type peerState struct {
	// newest is the newest valid answer seen, kept until it expires, or
	// until the certificate's NotAfter when it says revoked.
	newest    *record.Entry
	keepUntil time.Time
	// After a failed request: how many in a row, the last error, and when
	// the responder may be asked again.
	failures int
	failed   error
	retryAt  time.Time
}

// VerifyConnection checks the peer's staple; see Verifier.
func (v *Verifier) VerifyConnection(cs tls.ConnectionState) error {
	v.init()
	if len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		if v.HardFail && len(cs.PeerCertificates) > 0 {
			return &StapleError{Subject: cs.PeerCertificates[0].Subject.String(), HardFail: true, Err: ErrNoVerifiedChain}
		}
		return nil
	}
	chain := cs.VerifiedChains[0]
	if len(chain) < 2 {
		return nil
	}
	c := &peerCheck{
		v:          v,
		ctx:        context.Background(),
		leaf:       chain[0],
		issuer:     chain[1],
		id:         CertificateID(chain[0].Raw),
		mustStaple: hasMustStaple(chain[0]),
		now:        v.now(),
	}
	if v.FetchTimeout > 0 {
		// One deadline for every request of this check.
		var cancel context.CancelFunc
		c.ctx, cancel = context.WithTimeout(c.ctx, v.FetchTimeout)
		defer cancel()
	}
	if err := c.run(cs.OCSPResponse, cs.DidResume); err != nil {
		return err
	}
	return c.checkIntermediates(chain)
}

// peerCheck is the check of one connection.
type peerCheck struct {
	v            *Verifier
	ctx          context.Context // its deadline bounds every request
	leaf, issuer *x509.Certificate
	id           string
	mustStaple   bool
	now          time.Time
}

func (c *peerCheck) run(raw []byte, resumed bool) error {
	v := c.v
	var err error = errPeerSentNoStaple
	var staple *record.Entry
	if len(raw) > 0 {
		staple, err = v.verify(c.ctx, raw, c.leaf, c.issuer, c.now)
		if errors.Is(err, ErrWrongCertificate) {
			// A staple that belongs to another certificate is a server
			// stapling the wrong thing (a stale swap, a mix-up, or worse):
			// refused whatever the policy.
			return c.refuse(err)
		}
		if err == nil {
			v.learn(c.id, c.leaf, staple, c.now)
			if staple.Status == record.Revoked {
				// A valid revocation is final, whatever else is known.
				return c.revoked(staple)
			}
		}
	}
	// A revocation that a CRL held lists is known too (no request).
	c.learnHeldCRL()
	// The newest answer known decides, the staple's and the CRLs' included.
	newest := v.newest(c.id, c.now)
	if newest != nil && newest.Status == record.Revoked {
		// A hold a CRL listed may have been released since.
		if !c.recheckHold(newest, true) {
			return c.revoked(newest)
		}
		newest = v.newest(c.id, c.now)
	}
	if staple != nil {
		if staple.Status == record.Good || newest != nil && newest.Status == record.Good && newest.Usable(c.now) {
			return nil
		}
		err = ErrUnknownStatus
	}
	fetch := v.FetchTimeout > 0 && (!c.mustStaple || resumed)
	if resumed || fetch {
		// A current good answer, known or asked for, stands in for the
		// staple when fetching is allowed, and on a resumed session, where
		// the peer sends none.
		if newest != nil && newest.Status == record.Good && newest.Usable(c.now) {
			return nil
		}
	}
	if fetch {
		verdict, established := c.ask()
		if established {
			return verdict // nil (good) or a *RevokedError
		}
		err = fmt.Errorf("%w; %w", err, verdict)
	}
	if resumed && staple == nil && errors.Is(err, ErrExpired) && v.checkedWhenSessionBegan(raw, c.leaf, c.issuer, c.now) {
		return nil // only the passing of time failed the restored staple
	}
	if c.mustStaple || v.HardFail {
		return c.refuse(err)
	}
	return nil
}

func (c *peerCheck) refuse(err error) error {
	return &StapleError{Subject: c.leaf.Subject.String(), MustStaple: c.mustStaple, HardFail: c.v.HardFail, Err: err}
}

func (c *peerCheck) revoked(e *record.Entry) error {
	return &RevokedError{Subject: c.leaf.Subject.String(), Serial: c.leaf.SerialNumber, RevokedAt: e.RevokedAt.Time(), Reason: int(e.RevocationReason)}
}

// checkedWhenSessionBegan reports whether raw, the staple restored with a
// resumed session, was a valid good answer when the session began: it
// verifies as of its own thisUpdate, and the session cannot have begun
// after its nextUpdate.
func (v *Verifier) checkedWhenSessionBegan(raw []byte, leaf, issuer *x509.Certificate, now time.Time) bool {
	if len(raw) == 0 {
		return false
	}
	// The times only, from the answer about leaf (a staple may carry
	// several); verified below.
	thisUpdate, until, ok := ocspcheck.AnswerTimes(raw, leaf, issuer, v.verifyOptions())
	if !ok || now.After(until.Add(maxSessionLifetime)) {
		return false
	}
	e, err := ocspcheck.Verify(raw, leaf, issuer, thisUpdate, v.verifyOptions())
	return err == nil && e.Status == record.Good
}

// newer reports whether a is a newer answer than b: a later thisUpdate, or
// the same and a later producedAt.
func newer(a, b *record.Entry) bool { return a.Newer(b) }

// learn records e, a valid answer about leaf, unless a newer one is known.
// An unknown status decides nothing and is not kept.
func (v *Verifier) learn(id string, leaf *x509.Certificate, e *record.Entry, now time.Time) {
	if e.Status != record.Good && e.Status != record.Revoked {
		return
	}
	keep := e.Expires.Time()
	if e.Status == record.Revoked {
		keep = leaf.NotAfter
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	st := v.state(id, now)
	// Newer replaces; at the same times a revocation replaces a good
	// answer (never the other way round).
	sameTimes := st.newest != nil && e.ThisUpdate == st.newest.ThisUpdate && e.ProducedAt == st.newest.ProducedAt
	if st.newest == nil || newer(e, st.newest) || sameTimes && e.Status == record.Revoked || !now.Before(st.keepUntil) {
		kept := *e
		kept.Raw = nil // the verdict needs the parsed fields only
		st.newest, st.keepUntil = &kept, keep
	}
}

// newest returns the newest answer known about id, or nil.
func (v *Verifier) newest(id string, now time.Time) *record.Entry {
	v.mu.Lock()
	defer v.mu.Unlock()
	if st := v.known[id]; st != nil && st.newest != nil && now.Before(st.keepUntil) {
		return st.newest
	}
	return nil
}

// maxKnownPeers bounds how many certificates a Verifier remembers (a few
// hundred bytes each), for a client that meets very many servers.
const maxKnownPeers = 1 << 16

// state returns id's state, making it; v.mu is held. The map is pruned of
// what is no longer worth keeping whenever it has doubled since the last
// prune; at v.maxKnown entries, good answers and failures are forgotten
// (revocations last) until a quarter of the room is free.
func (v *Verifier) state(id string, now time.Time) *peerState {
	if st := v.known[id]; st != nil {
		return st
	}
	if len(v.known) >= min(max(2*v.pruned, 64), v.maxKnown) {
		pruneMap(v.known, v.maxKnown,
			func(st *peerState) bool { return !now.Before(st.keepUntil) && !now.Before(st.retryAt) },
			func(st *peerState) bool { return st.newest != nil && st.newest.Status == record.Revoked })
		v.pruned = len(v.known)
	}
	st := &peerState{}
	v.known[id] = st
	return st
}

// verify checks a response as the Stapler does. With FetchTimeout (the
// caller allows network requests), a delegated signer is also checked for
// revocation at the leaf's responder, within ctx.
func (v *Verifier) verify(ctx context.Context, raw []byte, leaf, issuer *x509.Certificate, now time.Time) (*record.Entry, error) {
	v.init()
	url := ""
	if v.FetchTimeout > 0 {
		url = resolveResponder(leaf, "", v.ResponderOverrides)
	}
	return v.fetcher.verify(ctx, raw, leaf, issuer, url, now, false)
}

// answer returns the newest valid answer about leaf: a current one known,
// else the responder's, asked once for all concurrent connections and
// waited for until ctx ends. A failed request is remembered, and the
// responder not asked again until its backoff has passed.
func (v *Verifier) answer(ctx context.Context, id string, leaf, issuer *x509.Certificate) (*record.Entry, error) {
	return v.knownOrAsked(ctx, id, leaf, issuer, false)
}

// answerPastHold is answer, asking the responder although the answer known
// is a hold a CRL listed (see recheckHold).
func (v *Verifier) answerPastHold(ctx context.Context, id string, leaf, issuer *x509.Certificate) (*record.Entry, error) {
	return v.knownOrAsked(ctx, id, leaf, issuer, true)
}

// knownOrAsked is answer; pastHold asks the responder although the answer known is
// a hold a CRL listed.
func (v *Verifier) knownOrAsked(ctx context.Context, id string, leaf, issuer *x509.Certificate, pastHold bool) (*record.Entry, error) {
	v.init()
	now := v.now()
	v.mu.Lock()
	if st := v.known[id]; st != nil {
		if st.newest != nil && st.newest.Usable(now) && !(pastHold && crlHold(st.newest)) {
			v.mu.Unlock()
			return st.newest, nil
		}
		if st.failed != nil && now.Before(st.retryAt) {
			err := fmt.Errorf("%w (remembered; the responder is asked again at %s)", st.failed, st.retryAt.UTC().Format(time.RFC3339))
			v.mu.Unlock()
			return nil, err
		}
	}
	v.mu.Unlock()
	url := resolveResponder(leaf, "", v.ResponderOverrides)
	if url == "" {
		return nil, ErrNoResponderURL
	}
	// No time left: by the context, or by the clock when the deadline has
	// passed and the context's timer has not fired yet (a delegate check
	// that ran out its own time may return first).
	if dl, ok := ctx.Deadline(); ctx.Err() != nil || ok && !time.Now().Before(dl) {
		return nil, fmt.Errorf("no time left to ask %s: %w", url, context.DeadlineExceeded)
	}
	type result struct {
		e   *record.Entry
		err error
	}
	r, err := v.fetcher.share(ctx, id, func() any {
		// The request outlives a caller that gives up: it is shared.
		fctx, cancel := context.WithTimeout(context.Background(), v.FetchTimeout)
		defer cancel()
		e, err := v.fetcher.fetch(fctx, url, leaf, issuer, v.now, false)
		now := v.now()
		if err == nil && e.Status != record.Good && e.Status != record.Revoked {
			// An unknown answer decides nothing: remembered as a failure,
			// with the same backoff, so that a responder that does not know
			// the certificate is not asked again by every connection.
			err = ErrUnknownStatus
		}
		if err != nil {
			err = fmt.Errorf("%s: %w", url, err)
			v.mu.Lock()
			st := v.state(id, now)
			st.failures++
			st.failed = err
			st.retryAt = now.Add(min(verifierRetryMin<<min(st.failures-1, 16), verifierRetryMax))
			v.mu.Unlock()
			return result{err: err}
		}
		v.learn(id, leaf, e, now)
		v.mu.Lock()
		st := v.state(id, now)
		st.failures, st.failed, st.retryAt = 0, nil, time.Time{}
		if st.newest != nil && now.Before(st.keepUntil) && newer(st.newest, e) {
			e = st.newest // an older answer never replaces a newer one
			if crlHold(e) {
				// Asked past a CRL's hold, the responder said nothing newer:
				// not asked again before the backoff, as after a failure.
				st.failures++
				st.failed = fmt.Errorf("%s: its answer is not newer than the CRL that lists the certificate on hold", url)
				st.retryAt = now.Add(min(verifierRetryMin<<min(st.failures-1, 16), verifierRetryMax))
			}
		}
		v.mu.Unlock()
		return result{e: e}
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", url, err)
	}
	return r.(result).e, r.(result).err
}
