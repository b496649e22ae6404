package stapler

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/staplerkit/ocsp/internal/crl"
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
	ErrCRLTooLarge = errors.New("CRL larger than the cap")
	// ErrCRLRollback: the CRL is older (a lower cRLNumber, or, without
	// numbers, an earlier thisUpdate) than one of its scope (all, user or
	// CA certificates) the Verifier already accepted from that
	// distribution point: a stale mirror or a replay.
	ErrCRLRollback = errors.New("CRL older than one already seen")
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

const (
	// minCRLFetchTimeout is the least time a CRL download is given: a
	// handshake waits for it at most FetchTimeout, and the download goes
	// on for the handshakes after it.
	minCRLFetchTimeout = 30 * time.Second
	// crlRefreshMax is the longest a held CRL goes without a refresh.
	crlRefreshMax = time.Hour
	// maxCRLPoints bounds how many distribution points a Verifier
	// remembers, all issuers together.
	maxCRLPoints = 1024
)

// crlCache holds a Verifier's CRLs: per issuer (the SHA-256 of its
// certificate, so that two CAs that name one URL never share a CRL) and
// distribution point URL.
type crlCache struct {
	mu     sync.Mutex
	points map[[32]byte]map[string]*crlPoint
	n      int   // points
	bytes  int64 // MemoryBytes of the CRLs held
	held   int   // CRLs held

	fetches [len(crlFetchOutcomes)]atomic.Uint64
}

// crlPoint is what is known of one distribution point of one issuer.
type crlPoint struct {
	url string
	// scopes holds, per scope (all certificates, user certificates only,
	// CA certificates only), the CRL of that scope held and the newest one
	// ever accepted: CRLs of two scopes (a CA's user CRL and its authority
	// revocation list, which it may number apart) are never ordered
	// against each other, and a CRL of one scope never displaces another.
	scopes   [crl.Scopes]crlSlot
	lastUsed time.Time
	// kinds is the state of the fetches made for the checks of user
	// certificates (kinds[0]) and of CA certificates (kinds[1]): a CRL is
	// fetched for a kind, and kept only when it covers that kind.
	kinds [2]crlFetches
}

// crlSlot is a point's CRL of one scope.
type crlSlot struct {
	held *crl.CRL // the current CRL; nil when none
	// refreshAt is when held is fetched again (by the first handshake that
	// looks it up after).
	refreshAt time.Time
	// newest is the newest CRL of this scope ever accepted here (held, or
	// one since dropped), by its number and thisUpdate only (not its
	// index): nothing older of this scope is accepted again.
	newest crlVersion
}

// crlFetches is the state of a point's fetches for one kind of
// certificate.
type crlFetches struct {
	refreshing bool // a refresh, in the background, is under way
	// downloading is set while a download runs; stalled, once a handshake
	// has waited its whole share of its deadline for that download, is
	// why the point is a remembered failure until the download ends (so
	// that the handshakes after do not each wait their whole share).
	downloading bool
	stalled     error
	// After failed fetches: how many in a row, the last error, and when
	// the point may be asked again.
	failures int
	failed   error
	retryAt  time.Time
}

// crlKind is the index in crlPoint.kinds of cert's kind: 1 for a CA
// certificate, 0 for a user certificate (as Covers tells them apart).
func crlKind(cert *x509.Certificate) int {
	if cert.BasicConstraintsValid && cert.IsCA {
		return 1
	}
	return 0
}

// holds reports whether p holds a CRL.
func (p *crlPoint) holds() bool {
	for i := range p.scopes {
		if p.scopes[i].held != nil {
			return true
		}
	}
	return false
}

// current returns the newest CRL held at p that covers certificates of
// kind and may be relied on at now, and its scope (nil when none).
func (p *crlPoint) current(kind int, now time.Time, skew time.Duration) (*crl.CRL, crl.Scope) {
	var best *crl.CRL
	var scope crl.Scope
	for s := range p.scopes {
		held := p.scopes[s].held
		if !crl.Scope(s).CoversKind(kind == 1) || !crlCurrent(held, now, skew) {
			continue
		}
		if best == nil || versionOf(best).older(versionOf(held)) {
			best, scope = held, crl.Scope(s)
		}
	}
	return best, scope
}

// crlCurrent reports whether c may be relied on at now (Parse checked it
// once; the clock has moved since).
func crlCurrent(c *crl.CRL, now time.Time, skew time.Duration) bool {
	return c != nil && now.Before(c.NextUpdate) && !c.ThisUpdate.After(now.Add(skew))
}

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
		held, err := v.crlFor(ctx, issuer, url, c.issuer, crlKind(c.leaf))
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
	if held, _ := c.heldCRL(issuer); held != nil && (fetched == nil || !versionOf(held).older(versionOf(fetched))) {
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
		held := v.crls.lookup(v, issuer, url, c.issuer, crlKind(c.leaf), c.now)
		if held == nil || held.Covers(c.leaf) != nil {
			return true
		}
		if newest == nil || versionOf(newest).older(versionOf(held)) {
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
	if v.MaxCRLBytes < 0 || !v.crls.holdsAny() {
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
	if askResponder && resolveResponder(c.leaf, "", v.ResponderOverrides) != "" {
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

// holdsAny reports whether any CRL is held.
func (cc *crlCache) holdsAny() bool {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return cc.held > 0
}

// lookup returns the newest current CRL held for issuer's point url that
// covers certificates of kind, or nil, without allocating. A CRL due for
// its refresh is fetched again for that kind in the background (once, and
// not while the kind's failure backoff lasts); an expired one is dropped.
func (cc *crlCache) lookup(v *Verifier, issuer [32]byte, url []byte, issuerCert *x509.Certificate, kind int, now time.Time) *crl.CRL {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	p := cc.points[issuer][string(url)]
	if p == nil {
		return nil
	}
	for s := range p.scopes {
		if sl := &p.scopes[s]; sl.held != nil && !now.Before(sl.held.NextUpdate) {
			cc.dropSlot(sl)
		}
	}
	held, scope := p.current(kind, now, skewOrDefault(v.ClockSkew))
	if held == nil {
		return nil
	}
	p.lastUsed = now
	f := &p.kinds[kind]
	if !now.Before(p.scopes[scope].refreshAt) && !now.Before(f.retryAt) && !f.refreshing {
		f.refreshing = true
		go v.sharedCRLFetch(context.Background(), issuer, p.url, issuerCert, kind)
	}
	return held
}

// drop forgets p's CRLs (not the newest seen); cc.mu is held.
func (cc *crlCache) drop(p *crlPoint) {
	for s := range p.scopes {
		cc.dropSlot(&p.scopes[s])
	}
}

// dropSlot forgets sl's CRL (not the newest seen); cc.mu is held.
func (cc *crlCache) dropSlot(sl *crlSlot) {
	if sl.held != nil {
		cc.bytes -= sl.held.MemoryBytes()
		cc.held--
		sl.held = nil
	}
}

// crlFor returns the current CRL of issuer's point url for certificates
// of kind: the newest held that covers them, else a failure remembered,
// else one fetched for every caller that asks meanwhile, waited for until
// ctx ends.
func (v *Verifier) crlFor(ctx context.Context, issuer [32]byte, url string, issuerCert *x509.Certificate, kind int) (*crl.CRL, error) {
	now := v.now()
	cc := v.crls
	cc.mu.Lock()
	if p := cc.points[issuer][url]; p != nil {
		if held, _ := p.current(kind, now, skewOrDefault(v.ClockSkew)); held != nil {
			cc.mu.Unlock()
			return held, nil
		}
		if f := &p.kinds[kind]; f.failed != nil && now.Before(f.retryAt) {
			err := fmt.Errorf("%w (remembered; asked again at %s)", f.failed, f.retryAt.UTC().Format(time.RFC3339))
			cc.mu.Unlock()
			return nil, err
		}
		if f := &p.kinds[kind]; f.stalled != nil {
			err := fmt.Errorf("%w (remembered until that download ends)", f.stalled)
			cc.mu.Unlock()
			return nil, err
		}
	}
	cc.mu.Unlock()
	if dl, ok := ctx.Deadline(); ctx.Err() != nil || ok && !time.Now().Before(dl) {
		return nil, fmt.Errorf("no time left to fetch it: %w", context.DeadlineExceeded)
	}
	c, err := v.sharedCRLFetch(ctx, issuer, url, issuerCert, kind)
	if c == nil && ctx.Err() != nil {
		// This handshake waited its whole share and the download goes on:
		// the handshakes after do not wait for it again.
		err = fmt.Errorf("the download under way took more than a handshake's share of FetchTimeout: %w", err)
		cc.stall(issuer, url, kind, err)
	}
	return c, err
}

// stall remembers err as the failure of issuer's point url for
// certificates of kind while the download under way runs (nothing when
// it has ended).
func (cc *crlCache) stall(issuer [32]byte, url string, kind int, err error) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if p := cc.points[issuer][url]; p != nil && p.kinds[kind].downloading {
		p.kinds[kind].stalled = err
	}
}

// downloading marks a download of issuer's point url for certificates of
// kind as under way.
func (cc *crlCache) downloading(issuer [32]byte, url string, kind int, now time.Time) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	cc.point(issuer, url, now).kinds[kind].downloading = true
}

// sharedCRLFetch is fetchCRL, once for every caller that asks while it
// runs, waited for until ctx ends.
func (v *Verifier) sharedCRLFetch(ctx context.Context, issuer [32]byte, url string, issuerCert *x509.Certificate, kind int) (*crl.CRL, error) {
	type result struct {
		c   *crl.CRL
		err error
	}
	r, err := v.fetcher.share(ctx, crlFlightKey(issuer, url, kind), func() any {
		c, err := v.fetchCRL(issuer, url, issuerCert, kind)
		return result{c, err}
	})
	if err != nil {
		return nil, err
	}
	return r.(result).c, r.(result).err
}

// crlFlightKey is the key of a CRL download for certificates of kind
// among the fetcher's shared requests (whose other keys are certificate
// IDs, in hex).
func crlFlightKey(issuer [32]byte, url string, kind int) string {
	return fmt.Sprintf("crl %x %d %s", issuer, kind, url)
}

// fetchCRL downloads, verifies and keeps the CRL of issuer's point url for
// certificates of kind, and returns it. A failure is remembered, with the
// backoff of OCSP failures; a CRL held stays until its nextUpdate.
func (v *Verifier) fetchCRL(issuer [32]byte, url string, issuerCert *x509.Certificate, kind int) (*crl.CRL, error) {
	ctx, cancel := context.WithTimeout(context.Background(), max(v.FetchTimeout, minCRLFetchTimeout))
	defer cancel()
	v.crls.downloading(issuer, url, kind, v.now())
	der, err := v.downloadCRL(ctx, url)
	now := v.now()
	var c *crl.CRL
	if err == nil {
		c, err = crl.Parse(der, issuerCert, crl.Options{URL: url, Now: now, Skew: skewOrDefault(v.ClockSkew), AllowSHA1: v.AllowSHA1})
	}
	if err == nil {
		c, err = v.crls.keep(v, issuer, url, c, kind, now)
	}
	v.crls.count(err)
	if err != nil {
		v.crls.failed(issuer, url, kind, err, now)
	}
	return c, err
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
	resp, err := v.fetcher.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		drain(resp.Body, 64<<10)
		return nil, &httpStatusError{code: resp.StatusCode, status: resp.Status}
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

// crlVersion is what orders the CRLs of one point.
type crlVersion struct {
	number     *big.Int // nil when the CRL has none
	thisUpdate time.Time
}

func versionOf(c *crl.CRL) crlVersion { return crlVersion{c.Number, c.ThisUpdate} }

// older reports whether a is older than b: a lower cRLNumber, or, at the
// same number or when either has none, an earlier thisUpdate.
func (a crlVersion) older(b crlVersion) bool {
	if a.number != nil && b.number != nil {
		if c := a.number.Cmp(b.number); c != 0 {
			return c < 0
		}
	}
	return a.thisUpdate.Before(b.thisUpdate)
}

// keep holds c, just fetched from issuer's point url for certificates of
// kind, in place of the CRL of its scope held there, unless it does not
// cover that kind (ErrCRLScope: an ARL served at a user CRL's URL is
// neither held nor remembered as the newest of anything), it is older
// than one of its scope accepted there before (ErrCRLRollback; a current
// CRL held stays), or its index alone is over MaxCRLMemory. The CRLs used
// longest ago are dropped to make room.
func (cc *crlCache) keep(v *Verifier, issuer [32]byte, url string, c *crl.CRL, kind int, now time.Time) (*crl.CRL, error) {
	limit := v.MaxCRLMemory
	if limit <= 0 {
		limit = DefaultMaxCRLMemory
	}
	if !c.Scope().CoversKind(kind == 1) {
		return nil, fmt.Errorf("%w: the CRL fetched lists %s certificates only, and it was fetched for a %s certificate", ErrCRLScope, kindName(1-kind), kindName(kind))
	}
	if c.MemoryBytes() > limit {
		return nil, fmt.Errorf("%w: its %d serials take %d bytes, more than MaxCRLMemory (%d)", ErrCRLTooLarge, c.Len(), c.MemoryBytes(), limit)
	}
	cc.mu.Lock()
	defer cc.mu.Unlock()
	p := cc.point(issuer, url, now)
	sl := &p.scopes[c.Scope()]
	if !sl.newest.thisUpdate.IsZero() && versionOf(c).older(sl.newest) {
		return nil, fmt.Errorf("%w: number %v of %s, after number %v of %s", ErrCRLRollback, c.Number, c.ThisUpdate.UTC().Format(time.RFC3339), sl.newest.number, sl.newest.thisUpdate.UTC().Format(time.RFC3339))
	}
	cc.dropSlot(sl)
	for cc.bytes+c.MemoryBytes() > limit {
		lru := cc.leastRecentlyUsed()
		if lru == nil {
			break
		}
		cc.drop(lru)
	}
	sl.held, sl.newest = c, versionOf(c)
	cc.bytes += c.MemoryBytes()
	cc.held++
	p.lastUsed = now
	refreshAt := now.Add(min(crlRefreshMax, max(c.NextUpdate.Sub(now)/2, 0)))
	sl.refreshAt = refreshAt
	for s := range p.scopes {
		// The fetch for this kind brought c: the other CRLs held here for
		// it are not fetched again before c is.
		if other := &p.scopes[s]; crl.Scope(s).CoversKind(kind == 1) && other.refreshAt.Before(refreshAt) {
			other.refreshAt = refreshAt
		}
	}
	for k := range p.kinds {
		if c.Scope().CoversKind(k == 1) {
			p.kinds[k].failures, p.kinds[k].failed, p.kinds[k].retryAt = 0, nil, time.Time{}
		}
	}
	p.kinds[kind].refreshing = false
	p.kinds[kind].downloading, p.kinds[kind].stalled = false, nil
	return c, nil
}

// kindName names a kind of certificate, as crlKind numbers them.
func kindName(kind int) string {
	if kind == 1 {
		return "CA"
	}
	return "user"
}

// failed remembers a failed fetch of issuer's point url for certificates
// of kind.
func (cc *crlCache) failed(issuer [32]byte, url string, kind int, err error, now time.Time) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	f := &cc.point(issuer, url, now).kinds[kind]
	f.refreshing, f.downloading, f.stalled = false, false, nil
	f.failures++
	f.failed = err
	f.retryAt = now.Add(min(verifierRetryMin<<min(f.failures-1, 16), verifierRetryMax))
}

// leastRecentlyUsed is the point holding a CRL that was looked up longest
// ago; cc.mu is held and some CRL is held.
func (cc *crlCache) leastRecentlyUsed() *crlPoint {
	var lru *crlPoint
	for _, urls := range cc.points {
		for _, p := range urls {
			if p.holds() && (lru == nil || p.lastUsed.Before(lru.lastUsed)) {
				lru = p
			}
		}
	}
	return lru
}

// point returns issuer's point url, making it; cc.mu is held. At
// maxCRLPoints, the points that hold nothing and whose backoff has passed
// are forgotten, then those used longest ago.
func (cc *crlCache) point(issuer [32]byte, url string, now time.Time) *crlPoint {
	if p := cc.points[issuer][url]; p != nil {
		return p
	}
	for cc.n >= maxCRLPoints {
		var victim *crlPoint
		var victimIssuer [32]byte
		idle := false
		for is, urls := range cc.points {
			for _, p := range urls {
				pIdle := !p.holds() && !now.Before(p.kinds[0].retryAt) && !now.Before(p.kinds[1].retryAt)
				if victim == nil || pIdle && !idle || pIdle == idle && p.lastUsed.Before(victim.lastUsed) {
					victim, victimIssuer, idle = p, is, pIdle
				}
			}
		}
		cc.drop(victim)
		delete(cc.points[victimIssuer], victim.url)
		if len(cc.points[victimIssuer]) == 0 {
			delete(cc.points, victimIssuer)
		}
		cc.n--
	}
	if cc.points[issuer] == nil {
		cc.points[issuer] = map[string]*crlPoint{}
	}
	p := &crlPoint{url: url}
	cc.points[issuer][url] = p
	cc.n++
	return p
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
	url := resolveResponder(c.leaf, "", v.ResponderOverrides)
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
