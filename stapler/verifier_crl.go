package stapler

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"time"

	"github.com/staplerkit/ocsp/internal/crl"
	"github.com/staplerkit/ocsp/internal/crlcache"
	"github.com/staplerkit/ocsp/internal/ocspfetch"
	"github.com/staplerkit/ocsp/internal/record"
)

// Why a CRL did not establish a certificate's status; matched with
// errors.Is through a StapleError. A CRL refused for any of them is never
// used, and its failure is remembered as an OCSP failure is (see
// Verifier.FetchTimeout).
var (
	// ErrCRLMalformed: the body is not a DER (or PEM "X509 CRL") CRL.
	ErrCRLMalformed = crl.ErrMalformed
	// ErrCRLWrongIssuer: the CRL names another issuer than the one the
	// peer's chain verified with, or that issuer did not sign it (another
	// key, or a certificate whose keyUsage does not allow cRLSign).
	ErrCRLWrongIssuer = crl.ErrWrongIssuer
	// ErrCRLSHA1Signature: the CRL is signed with SHA-1 and AllowSHA1 is
	// not set.
	ErrCRLSHA1Signature = crl.ErrSHA1
	// ErrCRLNotYetValid: the CRL's thisUpdate is ahead of the clock by
	// more than ClockSkew.
	ErrCRLNotYetValid = crl.ErrNotYetValid
	// ErrCRLExpired: the CRL's nextUpdate has passed.
	ErrCRLExpired = crl.ErrExpired
	// ErrCRLNoNextUpdate: the CRL has no nextUpdate, so nothing says how
	// long it may be relied on.
	ErrCRLNoNextUpdate = crl.ErrNoNextUpdate
	// ErrCRLCriticalExtension: the CRL or one of its entries carries a
	// critical extension the Verifier does not understand.
	ErrCRLCriticalExtension = crl.ErrCriticalExtension
	// ErrIndirectCRL: an indirect CRL (its issuing distribution point says
	// indirectCRL, or an entry names a certificateIssuer), which lists
	// certificates of other issuers. Not supported: refused.
	ErrIndirectCRL = crl.ErrIndirect
	// ErrDeltaCRL: a delta CRL (deltaCRLIndicator), which lists only what
	// changed since a base CRL. Not supported: refused.
	ErrDeltaCRL = crl.ErrDelta
	// ErrCRLScope: the CRL's issuing distribution point does not cover the
	// certificate: it names other URLs than the one fetched (or a name
	// relative to the issuer), it lists user certificates only and this is
	// a CA, CA certificates only and this is not, some reasons only, or
	// attribute certificates only; or it does not cover the kind of
	// certificate (user, CA) whose check fetched it (an ARL served at a
	// user CRL's URL), and is then neither held nor remembered.
	ErrCRLScope = crl.ErrScope
	// ErrNoCRLDistributionPoint: the certificate names no http or https
	// CRL distribution point of a direct, full CRL.
	ErrNoCRLDistributionPoint = crl.ErrNoDistributionPoint
	// ErrCRLTooLarge: the CRL is larger than MaxCRLBytes, or its index
	// alone is larger than MaxCRLMemory.
	ErrCRLTooLarge = crlcache.ErrTooLarge
	// ErrCRLRollback: the CRL is older (a lower cRLNumber, or, without
	// numbers, an earlier thisUpdate) than one of its scope (all, user or
	// CA certificates) the Verifier already accepted from that
	// distribution point: a stale mirror or a replay.
	ErrCRLRollback = crlcache.ErrRollback
)

// errCRLOff is why no CRL was asked when MaxCRLBytes is negative.
var errCRLOff = errors.New("CRL checking is off (MaxCRLBytes is negative)")

// The CRL caps' defaults.
const (
	// DefaultMaxCRLBytes is the largest CRL downloaded when
	// Verifier.MaxCRLBytes is zero: 10 MiB, about 250,000 revoked
	// serials, larger than the CRLs of public CAs' largest shards.
	DefaultMaxCRLBytes = 10 << 20
	// DefaultMaxCRLMemory is how much memory the CRLs a Verifier holds may
	// take when Verifier.MaxCRLMemory is zero: 64 MiB, room for several
	// CRLs of DefaultMaxCRLBytes (an index takes about 30 bytes per
	// serial, less than the DER).
	DefaultMaxCRLMemory = 64 << 20
)

// checkCRL establishes c.leaf's status from its issuer's CRLs: nil when a
// current CRL that covers it does not list it, a *RevokedError when one
// lists it, otherwise why none could tell. The CRLs held answer first,
// without a request (the newest of them that covers the certificate
// decides); then each distribution point is asked in turn, within c.ctx,
// each waited for at most its share of the time left.
// A listing is learnt as a known revocation (see learnCRLRevocation).
func (c *peerCheck) checkCRL() error {
	v := c.v
	if v.MaxCRLBytes < 0 {
		return errCRLOff
	}
	issuer := sha256.Sum256(c.issuer.Raw)
	serial := crl.SerialBytes(c.leaf)
	// First what is held: no request, no allocation.
	held, derr := c.heldCRL(issuer)
	if derr != nil {
		return derr
	}
	if held != nil {
		return c.crlVerdict(held, serial)
	}
	// Then each point in turn, over the network.
	var errs []error
	var fetched *crl.CRL
	left := 0 // the points not asked yet
	crl.RangeDistributionPoints(c.leaf, func([]byte) bool { left++; return true })
	crl.RangeDistributionPoints(c.leaf, func(b []byte) bool {
		url := string(b)
		// Each point is waited for at most its share of the time left, so
		// that one that hangs leaves time for the next (its download goes
		// on in the background, for the handshakes after).
		ctx := c.ctx
		if dl, ok := ctx.Deadline(); ok && left > 1 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithDeadline(ctx, time.Now().Add(time.Until(dl)/time.Duration(left)))
			defer cancel()
		}
		left--
		held, err := v.crls.Get(ctx, v.crlOptions(), issuer, url, c.issuer, crlcache.KindOf(c.leaf))
		if err == nil {
			err = held.Covers(c.leaf)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("CRL %s: %w", url, err))
			return c.ctx.Err() == nil
		}
		fetched = held
		return false
	})
	// The newest of what the points gave and what is held decides.
	if held, _ := c.heldCRL(issuer); held != nil && (fetched == nil || !crlcache.Older(held, fetched)) {
		fetched = held
	}
	if fetched != nil {
		return c.crlVerdict(fetched, serial)
	}
	if len(errs) == 0 {
		return ErrNoCRLDistributionPoint // not reached: every point failed or was held
	}
	return errors.Join(errs...)
}

// heldCRL returns the newest current CRL held, from any of c.leaf's
// distribution points, that covers it (nil when none), without a request
// or an allocation. The error is why the certificate has no point.
func (c *peerCheck) heldCRL(issuer [32]byte) (*crl.CRL, error) {
	v := c.v
	var newest *crl.CRL
	err := crl.RangeDistributionPoints(c.leaf, func(url []byte) bool {
		held := v.crls.Lookup(v.crlOptions(), issuer, url, c.issuer, crlcache.KindOf(c.leaf), c.now)
		if held == nil || held.Covers(c.leaf) != nil {
			return true
		}
		if newest == nil || crlcache.Older(newest, held) {
			newest = held
		}
		return true
	})
	return newest, err
}

// learnHeldCRL learns the revocation of c.leaf that the CRLs held (no
// request) list, for the newest answer known to decide against a staple
// or an OCSP answer older than the CRL.
func (c *peerCheck) learnHeldCRL() {
	v := c.v
	if v.MaxCRLBytes < 0 || !v.crls.HoldsAny() {
		return
	}
	held, _ := c.heldCRL(sha256.Sum256(c.issuer.Raw))
	if held == nil {
		return
	}
	if e, listed := held.Lookup(crl.SerialBytes(c.leaf)); listed {
		c.learnCRLRevocation(held, e)
	} else {
		c.releaseHold(held)
	}
}

// crlVerdict is what held says of c.leaf (whose serial is serial).
func (c *peerCheck) crlVerdict(held *crl.CRL, serial []byte) error {
	e, listed := held.Lookup(serial)
	if !listed {
		c.releaseHold(held)
		return nil
	}
	c.learnCRLRevocation(held, e)
	return &RevokedError{Subject: c.leaf.Subject.String(), Serial: c.leaf.SerialNumber, RevokedAt: e.RevokedAt, Reason: e.Reason}
}

// learnCRLRevocation records e, held's listing of c.leaf, as a known
// revocation, kept until the leaf's NotAfter as an OCSP revocation is. It
// is dated by the CRL's thisUpdate (what the CRL knew then; a revocation
// date after it, a CA's bug or a revocation planned ahead, is reported
// as listed but dates nothing), and after any OCSP answer of that same
// thisUpdate: only a good OCSP answer strictly newer than the CRL
// replaces it.
func (c *peerCheck) learnCRLRevocation(held *crl.CRL, e crl.Entry) {
	c.v.learn(c.id, c.leaf, &record.Entry{
		Status:           record.Revoked,
		RevocationReason: int32(e.Reason),
		ThisUpdate:       record.At(held.ThisUpdate),
		ProducedAt:       crlProducedAt, // after any OCSP answer of the same thisUpdate
		NextUpdate:       record.At(held.NextUpdate),
		RevokedAt:        record.At(e.RevokedAt),
		FetchedAt:        record.At(c.now),
		Expires:          record.At(c.leaf.NotAfter),
	}, c.now)
}

// releaseHold lifts a hold that a CRL listed and held, a current CRL newer
// than that one that covers c.leaf, no longer lists: a known revocation
// learnt from a CRL with reason certificateHold (the only one a CA may take
// back, RFC 5280 5.3.1) gives way to a good answer dated by held's
// thisUpdate, known until its nextUpdate. Any other revocation stays.
func (c *peerCheck) releaseHold(held *crl.CRL) {
	known := c.v.newest(c.id, c.now)
	if !crlHold(known) || record.At(held.ThisUpdate) <= known.ThisUpdate {
		return
	}
	c.v.learn(c.id, c.leaf, &record.Entry{
		Status:     record.Good,
		ThisUpdate: record.At(held.ThisUpdate),
		ProducedAt: crlProducedAt,
		NextUpdate: record.At(held.NextUpdate),
		FetchedAt:  record.At(c.now),
		Expires:    record.At(held.NextUpdate),
	}, c.now)
}

// crlReasonHold is the reasonCode certificateHold (RFC 5280 5.3.1).
const crlReasonHold = 6

// crlHold reports whether e is a revocation learnt from a CRL with reason
// certificateHold.
func crlHold(e *record.Entry) bool {
	return e != nil && e.Status == record.Revoked && e.ProducedAt == crlProducedAt && e.RevocationReason == crlReasonHold
}

// recheckHold asks again about known, c.leaf's revocation, when it is a
// hold learnt from a CRL and FetchTimeout allows requests, and reports
// whether a newer good answer replaced it: the responder's (when
// askResponder and c.leaf names one), asked with the backoff of failures
// (an answer not newer than the hold counts as one), then c.leaf's CRLs
// (a current one held, else fetched, newer than the one that listed the
// hold and no longer listing it), within c.ctx.
func (c *peerCheck) recheckHold(known *record.Entry, askResponder bool) bool {
	v := c.v
	if v.FetchTimeout <= 0 || !crlHold(known) {
		return false
	}
	crls := v.MaxCRLBytes >= 0 && hasCRLPoints(c.leaf)
	if askResponder && ocspfetch.Resolve(c.leaf, "", v.ResponderOverrides) != "" {
		ctx := c.ctx
		if dl, ok := ctx.Deadline(); ok && crls {
			// Half the time left is kept for the CRL, as in ask.
			var cancel context.CancelFunc
			ctx, cancel = context.WithDeadline(ctx, time.Now().Add(time.Until(dl)/2))
			defer cancel()
		}
		v.answerPastHold(ctx, c.id, c.leaf, c.issuer)
		if e := v.newest(c.id, c.now); e != nil && e.Status == record.Good {
			return true
		}
	}
	if crls {
		c.checkCRL() // a newer CRL that does not list c.leaf releases the hold
	}
	e := v.newest(c.id, c.now)
	return e != nil && e.Status == record.Good
}

// crlProducedAt is the producedAt of what the Verifier learns from a CRL:
// after any OCSP answer's, and so the mark of an answer learnt from a CRL.
const crlProducedAt = math.MaxInt64

// crlOptions are the settings of the Verifier's CRL cache, as they stand.
func (v *Verifier) crlOptions() crlcache.Options {
	limit := v.MaxCRLMemory
	if limit <= 0 {
		limit = DefaultMaxCRLMemory
	}
	return crlcache.Options{
		Skew:         skewOrDefault(v.ClockSkew),
		AllowSHA1:    v.AllowSHA1,
		MaxMemory:    limit,
		FetchTimeout: v.FetchTimeout,
		RetryMin:     verifierRetryMin,
		RetryMax:     verifierRetryMax,
	}
}

// downloadCRL GETs url, refusing a non-200 answer and a body over
// MaxCRLBytes (by its Content-Length when it gives one, before reading).
func (v *Verifier) downloadCRL(ctx context.Context, url string) ([]byte, error) {
	limit := int64(v.MaxCRLBytes)
	if limit == 0 {
		limit = DefaultMaxCRLBytes
	}
	// The body is read up to limit+1 bytes: capped so that it cannot
	// overflow (math.MaxInt64, "no cap", would read nothing).
	limit = min(limit, math.MaxInt64-1)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	resp, err := v.fetcher.Client().Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		ocspfetch.Drain(resp.Body, 64<<10)
		return nil, &ocspfetch.StatusError{Code: resp.StatusCode, Status: resp.Status}
	}
	if resp.ContentLength > limit {
		return nil, fmt.Errorf("%w of %d bytes: %d bytes announced", ErrCRLTooLarge, limit, resp.ContentLength)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read body: %w", err)
	}
	if int64(len(body)) > limit {
		return nil, fmt.Errorf("%w of %d bytes", ErrCRLTooLarge, limit)
	}
	return body, nil
}

// ask establishes c.leaf's status over the network, within c.ctx: at its
// OCSP responder when it names one, and from its CRLs when it names none
// or the responder gave no answer. A revocation that a CRL already held
// lists was learnt before (run reads the CRLs held first), so that a
// replayed good answer older than that CRL is never taken from the
// responder. established is false when neither
// could tell, and verdict then says why; otherwise verdict is nil (good)
// or a *RevokedError.
func (c *peerCheck) ask() (verdict error, established bool) {
	v := c.v
	var errs []error
	url := ocspfetch.Resolve(c.leaf, "", v.ResponderOverrides)
	if url != "" {
		ctx := c.ctx
		if dl, ok := ctx.Deadline(); ok && v.MaxCRLBytes >= 0 && hasCRLPoints(c.leaf) {
			// Half the time left is kept for the CRL, should the responder
			// not answer (the request goes on for later connections).
			var cancel context.CancelFunc
			ctx, cancel = context.WithDeadline(ctx, time.Now().Add(time.Until(dl)/2))
			defer cancel()
		}
		e, err := v.answer(ctx, c.id, c.leaf, c.issuer)
		if err == nil {
			switch e.Status {
			case record.Revoked:
				return c.revoked(e), true
			case record.Good:
				return nil, true
			}
			err = ErrUnknownStatus
		}
		errs = append(errs, fmt.Errorf("asking the responder: %w", err))
	} else {
		errs = append(errs, fmt.Errorf("asking the responder: %w", ErrNoResponderURL))
	}
	err := c.checkCRL()
	var revoked *RevokedError
	switch {
	case err == nil:
		return nil, true
	case errors.As(err, &revoked):
		return err, true
	case url != "" && (errors.Is(err, ErrNoCRLDistributionPoint) || errors.Is(err, errCRLOff)):
		// A certificate with a responder and no CRL: the responder's
		// failure alone, as before CRLs were checked.
	default:
		errs = append(errs, fmt.Errorf("checking its CRL: %w", err))
	}
	if len(errs) == 1 {
		return errs[0], false
	}
	return fmt.Errorf("%w; %w", errs[0], errs[1]), false
}

// checkIntermediates checks each CA certificate of chain below the root
// against the CRLs of its own http(s) distribution points (those of the
// certificate above it), within c.ctx, once the leaf is allowed: a
// revocation is refused, and a status no CRL established is refused under
// HardFail, allowed otherwise. An intermediate that names no such point is
// not checked; nor is one when FetchTimeout is zero or CRLs are off.
func (c *peerCheck) checkIntermediates(chain []*x509.Certificate) error {
	v := c.v
	if v.FetchTimeout <= 0 || v.MaxCRLBytes < 0 {
		return nil
	}
	for i := 1; i+1 < len(chain); i++ {
		if !hasCRLPoints(chain[i]) {
			continue
		}
		ic := &peerCheck{v: v, ctx: c.ctx, leaf: chain[i], issuer: chain[i+1], id: CertificateID(chain[i].Raw), now: c.now}
		// A revocation of the intermediate learnt before decides first,
		// unless it is a hold a newer CRL released (never asked by OCSP).
		ic.learnHeldCRL()
		if e := v.newest(ic.id, c.now); e != nil && e.Status == record.Revoked {
			if !ic.recheckHold(e, false) {
				return ic.revoked(e)
			}
			continue
		}
		err := ic.checkCRL()
		var revoked *RevokedError
		switch {
		case err == nil:
		case errors.As(err, &revoked):
			return err
		case v.HardFail:
			return &StapleError{Subject: c.leaf.Subject.String(), HardFail: true,
				Err: fmt.Errorf("checking the CRL of the issuing CA %q: %w", chain[i].Subject.String(), err)}
		}
	}
	return nil
}

// hasCRLPoints reports whether cert names a CRL distribution point that
// checkCRL may fetch.
func hasCRLPoints(cert *x509.Certificate) bool {
	return crl.RangeDistributionPoints(cert, func([]byte) bool { return false }) == nil
}
