package stapler

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/staplerkit/ocsp/cache"
	"github.com/staplerkit/ocsp/config"
)

// refresh is a scheduled query for m, run on a worker.
func (s *Stapler) refresh(m *managed) {
	cfg := s.cfg.Load()
	if !cfg.OCSPFunctionality || !m.settings.Load().stapling.Enabled || m.leaf == nil || s.urlFor(m) == "" || m.removed.Load() {
		m.disarm()
		return
	}
	if s.retireExpired(m, s.clock.Now()) {
		return
	}
	if s.leaser != nil {
		s.refreshFleet(m, m.syncPending.Swap(false))
		return
	}
	if s.persist != nil && s.restore(m) {
		return
	}
	o := s.query(s.ctx, m)
	if errors.Is(o.err, context.Canceled) && s.ctx.Err() != nil {
		m.disarm()
		return // closing
	}
	s.record(m, o)
}

// retireExpired retires m when its leaf is past its NotAfter: no responder
// answers for it usefully, so it is no longer queried. It reports whether
// it did.
func (s *Stapler) retireExpired(m *managed, now time.Time) bool {
	if !now.After(m.leaf.NotAfter) {
		return false
	}
	m.mu.Lock()
	already := m.expired
	m.expired = true
	from, to := m.state, m.stateLocked()
	m.state = to
	m.mu.Unlock()
	s.sched.unschedule(m)
	m.disarm()
	if !already {
		s.log.Info("ocsp: certificate expired; no longer queried", "id", m.ID(), "subject", m.leaf.Subject.String(), "not_after", m.leaf.NotAfter)
		s.reportChange(m, from, to)
	}
	return true
}

// outcome is the result of one query, shared by every caller that waited
// on it: its identity lets a query be counted once however many refreshes
// shared it.
type outcome struct {
	e   *cache.Entry
	err error
}

// query fetches and verifies m's response, sharing one request among all
// callers that ask at the same time.
func (s *Stapler) query(ctx context.Context, m *managed) *outcome {
	v, err := s.fetcher.share(ctx, m.ID(), func() any {
		e, err := s.fetchAndVerify(m)
		return &outcome{e: e, err: err}
	})
	if err != nil {
		return &outcome{err: err}
	}
	return v.(*outcome)
}

func (s *Stapler) fetchAndVerify(m *managed) (*cache.Entry, error) {
	url := s.urlFor(m)
	if url == "" {
		return nil, m.fetchError(url, ErrNoResponderURL)
	}
	if err := s.limit.wait(s.ctx); err != nil {
		return nil, m.fetchError(url, err)
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.Load().Timeout())
	defer cancel()
	issuer, err := s.issuerFor(ctx, m)
	if err != nil {
		return nil, m.fetchError(url, err)
	}
	var fetched time.Time
	now := func() time.Time { fetched = s.clock.Now(); return fetched }
	e, err := s.fetcher.fetch(ctx, url, m.leaf, issuer, now, m.settings.Load().stapling.SkipVerify)
	if err != nil {
		return nil, m.fetchError(url, err)
	}
	s.cacheTimes(m, e, fetched)
	e.ResponderURL = url
	return e, nil
}

// issuerFor returns m's issuer, downloading it from the leaf's AIA
// caIssuers URL the first time when neither the chain nor WithIssuer had it.
func (s *Stapler) issuerFor(ctx context.Context, m *managed) (*x509.Certificate, error) {
	m.mu.Lock()
	issuer, checked := m.issuer, m.issuerChecked
	m.mu.Unlock()
	if issuer != nil && checked {
		return issuer, nil
	}
	if issuer == nil || m.leaf.CheckSignatureFrom(issuer) != nil {
		issuer = nil
		for _, candidate := range s.opts.issuers {
			if m.leaf.CheckSignatureFrom(candidate) == nil {
				issuer = candidate
				break
			}
		}
	}
	if issuer == nil {
		var err error
		if issuer, err = fetchIssuer(ctx, s.client, m.leaf); err != nil {
			return nil, err
		}
	}
	m.mu.Lock()
	m.issuer, m.issuerChecked = issuer, true
	m.mu.Unlock()
	return issuer, nil
}

// verifyFor verifies raw, fetched at fetched, as m's response at now, with
// m's settings, and sets how long it may be served.
func (s *Stapler) verifyFor(ctx context.Context, m *managed, issuer *x509.Certificate, raw []byte, fetched, now time.Time) (*cache.Entry, error) {
	e, err := s.fetcher.verify(ctx, raw, m.leaf, issuer, s.urlFor(m), now, m.settings.Load().stapling.SkipVerify)
	if err != nil {
		return nil, err
	}
	s.cacheTimes(m, e, fetched)
	return e, nil
}

// cacheTimes sets when e, fetched at fetched, was fetched and until when it
// may be served, with m's cache_ttl.
func (s *Stapler) cacheTimes(m *managed, e *cache.Entry, fetched time.Time) {
	e.Raw = bytes.Clone(e.Raw) // exactly its size, not the read buffer's
	e.FetchedAt = cache.At(fetched)
	e.Expires = cache.At(cache.Expiry(fetched, m.settings.Load().stapling.CacheDuration(), e.NextUpdate.Time(), e.Expires.Time()))
}

// restore staples m's persisted response when it still verifies and is
// usable, so that a restart makes no responder request. It reports whether
// it did. A missing, corrupt or foreign value is logged and left to be
// replaced by a fresh fetch; it never stops the server.
func (s *Stapler) restore(m *managed) bool {
	m.mu.Lock()
	done := m.restored
	m.restored = true
	m.mu.Unlock()
	if done {
		return false
	}
	ctx, cancel := context.WithTimeout(s.ctx, storeTimeout)
	defer cancel()
	// A store that hangs must not hold up the first fetch past the cold
	// wait: handshakes are waiting for it.
	getCtx, getCancel := context.WithTimeout(ctx, s.coldWait())
	value, err := s.persist.store.Get(getCtx, m.ID())
	getCancel()
	if err != nil {
		if !errors.Is(err, cache.ErrCacheMiss) {
			s.log.Warn("ocsp: reading the stored response failed", "id", m.ID(), "err", err)
		}
		return false
	}
	e, err := s.loadStored(ctx, m, value)
	if err != nil {
		s.log.Warn("ocsp: ignoring the stored response; fetching a fresh one", "id", m.ID(), "err", err)
		return false
	}
	s.apply(m, &outcome{e: e}, false)
	return true
}

// errNotStapleable: a stored response that verifies but is no longer
// usable, or says unknown.
var errNotStapleable = errors.New("stored response expired or unknown")

// loadStored decodes a stored record and verifies it again, as if just
// fetched: the store is never trusted.
func (s *Stapler) loadStored(ctx context.Context, m *managed, value []byte) (*cache.Entry, error) {
	raw, fetched, err := cache.DecodeRecord(value)
	if err != nil {
		return nil, err
	}
	issuer, err := s.issuerFor(ctx, m)
	if err != nil {
		return nil, err
	}
	now := s.clock.Now()
	if fetched.After(now) { // a fetch time from the future is not believed
		fetched = now
	}
	e, err := s.verifyFor(ctx, m, issuer, raw, fetched, now)
	if err != nil {
		return nil, err
	}
	if !e.Usable(now) || e.Status == cache.Unknown {
		return nil, errNotStapleable
	}
	e.ResponderURL = s.urlFor(m)
	return e, nil
}

// record applies the outcome of a query to m: a new staple and the next
// regular refresh, or a retry after recovery_frequency and, when the tries
// are used up, the failed state.
func (s *Stapler) record(m *managed, o *outcome) {
	next, installed := s.apply(m, o, true)
	if s.leaser != nil { // a Test: share what it found
		s.writeShared(m, next, installed, "")
	}
}

// ErrOlderResponse: the responder answered with a valid response that is
// not newer (by thisUpdate, then producedAt) than the one held, or that
// would turn a revoked certificate good again at the same time. It is never
// installed: a stale cache or a replay cannot roll a staple back.
var ErrOlderResponse = errors.New("responder answered with a response older than the one held")

// supersedes reports whether e may replace held at now, by the responses'
// own times: a later thisUpdate, else a later producedAt; at equal times
// the same answer fetched again may replace held, but revoked never turns
// good. An older answer with held's status may replace a held response
// that can no longer be served (cache_ttl ran out): that rolls nothing
// back, and is better than no staple.
func supersedes(e, held *cache.Entry, now time.Time) bool {
	switch {
	case held == nil:
		return true
	case !held.Usable(now) && e.Status == held.Status:
		return true
	case e.ThisUpdate != held.ThisUpdate:
		return e.ThisUpdate > held.ThisUpdate
	case e.ProducedAt != held.ProducedAt:
		return e.ProducedAt > held.ProducedAt
	}
	return e.Status == held.Status || held.Status != cache.Revoked
}

// apply installs an outcome; queried says it came from the responder (and
// so counts as a query, and is persisted) rather than from the store. It
// returns when the next query is planned, and the response it installed
// (nil when none: a failure, an unknown status, an older answer), the only
// one that may be shared with a fleet.
func (s *Stapler) apply(m *managed, o *outcome, queried bool) (time.Time, *cache.Entry) {
	cfg := s.cfg.Load()
	st := m.settings.Load().stapling
	now := s.clock.Now()
	e, err := o.e, o.err

	m.mu.Lock()
	if queried {
		if m.applied == o {
			// Another refresh shared this query and recorded it already:
			// one request, counted once.
			next := time.Unix(0, m.plan)
			m.mu.Unlock()
			s.sched.schedule(m, next)
			return next, nil
		}
		m.applied = o
		m.lastAttempt = cache.At(now)
		m.queries++
	}
	var next time.Time
	var installed *cache.Entry
	older := false
	switch {
	case err == nil && e.Status != cache.Unknown && !supersedes(e, m.entry, now):
		// Valid, but older than what is held: never installed. The
		// responder did answer, so no recovery starts; ask again later,
		// backing off rather than polling.
		older = true
		err = m.fetchError(e.ResponderURL, ErrOlderResponse)
		m.lastErr = err
		next = now.Add(staleBackoff(m.entry, cfg, now))
	case err == nil && e.Status != cache.Unknown:
		m.entry, m.latest, installed = e, e, e
		m.lastErr, m.tries, m.failed, m.lastSuccess = nil, 0, false, e.FetchedAt
		m.publishLocked()
		next = nextRefresh(e, cfg, st, now)
		if queried && s.persist != nil && s.leaser == nil {
			s.persist.put(m.ID(), cache.EncodeRecord(e.Raw, e.FetchedAt.Time()))
		}
	default:
		if err == nil {
			m.latest = e
			err = m.fetchError(e.ResponderURL, ErrUnknownStatus)
		}
		m.lastErr = err
		m.tries++
		if int(m.tries) > cfg.MaxTries() {
			m.failed, m.tries = true, 0
			if s.opts.dropOnFailure && m.entry != nil {
				m.entry = nil
				m.publishLocked()
			}
			next = now.Add(jitter(cfg.QueryInterval()))
		} else {
			next = now.Add(jitter(cfg.RecoveryInterval()))
		}
		next = beforeExpiry(m.entry, now, next)
	}
	from, to := m.state, m.stateLocked()
	m.state = to
	m.plan = next.UnixNano()
	m.mu.Unlock()

	s.sched.schedule(m, next)
	m.disarm()
	switch {
	case older:
		s.log.Warn("ocsp: ignoring a response older than the one held", "id", m.ID(), "err", err, "retry_at", next)
	case err != nil:
		s.log.Warn("ocsp: query failed", "id", m.ID(), "err", err, "retry_at", next)
	}
	s.reportChange(m, from, to)
	return next, installed
}

// beforeExpiry moves a retry planned at next to before the held staple
// expires, so that a staple is never lost for want of an attempt while the
// responder may be back: half the time left, at most.
func beforeExpiry(held *cache.Entry, now, next time.Time) time.Time {
	if held == nil {
		return next
	}
	left := held.Expires.Time().Sub(now)
	if left <= 0 || next.Before(now.Add(left/2)) {
		return next
	}
	return now.Add(max(left/2, time.Second))
}

// staleRetry is the least time between two queries that bring nothing
// newer than what is held (a responder that keeps serving a response past
// its half-life): at most about two queries an hour per certificate.
const staleRetry = 30 * time.Minute

// staleBackoff is how long to wait after an answer no newer than held:
// staleRetry, query_frequency if shorter, and never past half the time
// the held staple has left; jittered, at least a second.
func staleBackoff(held *cache.Entry, cfg *config.OCSP, now time.Time) time.Duration {
	d := min(staleRetry, cfg.QueryInterval())
	if held != nil {
		if left := held.Expires.Time().Sub(now); left > 0 {
			d = min(d, left/2)
		}
	}
	return max(jitter(d), time.Second)
}

// reportChange logs a change of state and calls the status hook.
func (s *Stapler) reportChange(m *managed, from, to stateCode) {
	if from == to {
		return
	}
	s.log.Info("ocsp: certificate status changed", "id", m.ID(), "subject", m.leaf.Subject.String(), "from", from.State(), "to", to.State())
	if s.opts.hook != nil {
		s.opts.hook(StatusChange{ID: m.ID(), From: from.State(), To: to.State(), Status: s.statusOf(m)})
	}
}

// nextRefresh is the earliest of fetched + query_frequency, fetched +
// cache_ttl and the middle of the response's validity, jittered. The
// cache_ttl bound comes early by a quarter of cache_ttl or one
// recovery_frequency, whichever is less, so that a failed refresh is retried
// while the staple is still served. It is never sooner than staleRetry (or
// query_frequency, if shorter) after the response was fetched, unless half
// the time the response has left is shorter: a responder that keeps serving
// a response past its half-life is asked about twice an hour, not polled.
func nextRefresh(e *cache.Entry, cfg *config.OCSP, st config.Stapling, now time.Time) time.Time {
	fetched, thisUpdate, nextUpdate := e.FetchedAt.Time(), e.ThisUpdate.Time(), e.NextUpdate.Time()
	next := fetched.Add(cfg.QueryInterval())
	ttl := st.CacheDuration()
	if t := fetched.Add(ttl - min(ttl/4, cfg.RecoveryInterval())); t.Before(next) {
		next = t
	}
	if t := thisUpdate.Add(nextUpdate.Sub(thisUpdate) / 2); t.Before(next) {
		next = t
	}
	// And before the staple expires, whatever its fetch time says.
	if t := e.Expires.Time().Add(-min(ttl/4, cfg.RecoveryInterval())); t.Before(next) {
		next = t
	}
	floor := fetched.Add(min(staleRetry, cfg.QueryInterval()))
	if limit := now.Add(e.Expires.Time().Sub(now) / 2); floor.After(limit) {
		floor = limit
	}
	d := max(next.Sub(now), floor.Sub(now), time.Second)
	return now.Add(max(jitter(d), time.Second))
}

// fetchError names m and the responder in err.
func (m *managed) fetchError(url string, err error) error {
	return &FetchError{ID: m.ID(), Subject: m.leaf.Subject.String(), Serial: fmt.Sprintf("%x", m.leaf.SerialNumber), URL: url, Err: err}
}
