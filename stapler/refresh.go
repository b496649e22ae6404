package stapler

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"sync/atomic"
	"time"

	"github.com/staplerkit/ocsp/internal/ocspfetch"
	"github.com/staplerkit/ocsp/internal/record"
)

// A refresh, top to bottom: the scheduler (internal/schedule) hands a due
// certificate to a worker, which runs refresh here; refresh checks that the
// certificate is still active and its leaf unexpired, then hands it to the
// mode's source (source.go: memory, a store, a fleet), picked once in New.
// The source queries (query, below; internal/ocspfetch asks and
// verifies), restores or adopts, and every path ends in one transition:
// apply (a query's outcome, apply.go) or adopt (a response read from a store, which
// never counts as a query), each an install (installLocked) and a settle
// (settleLocked: the new state, the next query, cold handshakes released,
// the change reported).

// refresh is a scheduled query for m, run on a worker.
func (s *Stapler) refresh(m *managed) {
	if !s.active(m) {
		m.disarm()
		return
	}
	if s.retireExpired(m, s.clock.Now()) {
		return
	}
	s.src.refresh(m)
}

// active reports whether m is to be queried: OCSP on, stapling enabled for
// it, a leaf with a responder, and still managed.
func (s *Stapler) active(m *managed) bool {
	return s.cfg.Load().OCSPFunctionality && m.settings.Load().stapling.Enabled && s.applicable(m) && !m.removed.Load()
}

// applicable reports whether m can be stapled at all: its leaf parses and
// a responder URL is known for it.
func (s *Stapler) applicable(m *managed) bool {
	return m.leaf != nil && s.urlFor(m) != ""
}

// closing reports whether o failed because the Stapler is closing; the
// refresh then ends, releasing cold handshakes, and plans nothing.
func (s *Stapler) closing(m *managed, o *outcome) bool {
	if errors.Is(o.err, context.Canceled) && s.ctx.Err() != nil {
		m.disarm()
		return true
	}
	return false
}

// retireExpired retires m when its leaf is past its NotAfter: no responder
// answers for it usefully, so it is no longer queried. It reports whether
// it did.
func (s *Stapler) retireExpired(m *managed, now time.Time) bool {
	if !now.After(m.leaf.NotAfter) {
		return false
	}
	s.sched.Unschedule(m)
	m.mu.Lock()
	already := m.expired
	m.expired = true
	s.settleLocked(m, time.Time{}, true)
	if !already {
		s.log.Info("ocsp: certificate expired; no longer queried", "id", m.ID(), "subject", m.leaf.Subject.String(), "not_after", m.leaf.NotAfter)
	}
	return true
}

// outcome is the result of one query, shared by every caller that waited
// on it: its identity lets a query be counted once however many refreshes
// shared it.
type outcome struct {
	e   *record.Entry
	err error
	// unverified: the signature was not checked (skip_verify was on when
	// the query began).
	unverified bool
	// pushed: the response was given to Push, not fetched. It is not a
	// query (not counted as one), and when it is refused nothing changes.
	pushed bool
	// installed is set, under the certificate's mu, when apply installed
	// e: a Test reads it, not what is held after (another refresh may have
	// installed an answer as new since).
	installed atomic.Bool
}

// query fetches and verifies m's response, sharing one request among all
// callers that ask at the same time.
func (s *Stapler) query(ctx context.Context, m *managed) *outcome {
	v, err := s.fetcher.Share(ctx, m.ID(), func() any {
		start := time.Now()
		skip := m.settings.Load().stapling.SkipVerify
		e, err := s.fetchAndVerify(m, skip)
		if !errors.Is(err, context.Canceled) { // closing: no query to count
			s.counters.countQuery(e, err, time.Since(start))
		}
		return &outcome{e: e, err: err, unverified: skip}
	})
	if err != nil {
		return &outcome{err: err}
	}
	return v.(*outcome)
}

func (s *Stapler) fetchAndVerify(m *managed, skipVerify bool) (*record.Entry, error) {
	url := s.urlFor(m)
	if url == "" {
		return nil, m.fetchError(url, ErrNoResponderURL)
	}
	if err := s.limit.Wait(s.ctx); err != nil {
		return nil, m.fetchError(url, err)
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.Load().Timeout())
	defer cancel()
	if deadline, ok := ctx.Deadline(); ok {
		m.querying(deadline)
	}
	issuer, err := s.issuerFor(ctx, m)
	if err != nil {
		return nil, m.fetchError(url, err)
	}
	var fetched time.Time
	now := func() time.Time { fetched = s.clock.Now(); return fetched }
	e, err := s.fetcher.Fetch(ctx, url, m.leaf, issuer, now, skipVerify)
	if err != nil {
		return nil, m.fetchError(url, err)
	}
	s.cacheTimes(m, e, fetched)
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
		if issuer, err = ocspfetch.FetchIssuer(ctx, s.client, m.leaf); err != nil {
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
func (s *Stapler) verifyFor(ctx context.Context, m *managed, issuer *x509.Certificate, raw []byte, fetched, now time.Time) (*record.Entry, error) {
	e, err := s.fetcher.Verify(ctx, raw, m.leaf, issuer, s.urlFor(m), now, m.settings.Load().stapling.SkipVerify)
	if err != nil {
		return nil, err
	}
	s.cacheTimes(m, e, fetched)
	return e, nil
}

// cacheTimes sets when e, fetched at fetched, was fetched and until when it
// may be served, with m's cache_ttl.
func (s *Stapler) cacheTimes(m *managed, e *record.Entry, fetched time.Time) {
	e.Raw = bytes.Clone(e.Raw) // exactly its size, not the read buffer's
	e.FetchedAt = record.At(fetched)
	e.Expires = record.At(record.Expiry(fetched, m.settings.Load().stapling.CacheDuration(), e.NextUpdate.Time(), e.Expires.Time()))
}

// errNotStapleable: a stored response that verifies but is no longer
// usable, or says unknown.
var errNotStapleable = errors.New("stored response expired or unknown")

// loadStored decodes a stored record and verifies it again, as if just
// fetched: the store is never trusted.
func (s *Stapler) loadStored(ctx context.Context, m *managed, value []byte) (*record.Entry, error) {
	raw, fetched, err := record.Decode(value)
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
	if !e.Usable(now) || e.Status == record.Unknown {
		return nil, errNotStapleable
	}
	return e, nil
}

// record applies the outcome of a query to m: a new staple and the next
// regular refresh, or a retry after recovery_frequency and, when the tries
// are used up, the failed state; and tells the source.
func (s *Stapler) record(m *managed, o *outcome) {
	next, installed := s.apply(m, o)
	if o.pushed && installed == nil {
		return // a refused push changes nothing, in the store neither
	}
	s.src.recorded(m, next, installed)
}

// rememberLate keeps what a query applied to m after Remove (or
// retirement) taught: Remove kept m's knowledge as it was then, and a
// revocation verified by a query in flight must not be lost with m. It
// goes where the certificate's knowledge is now: merged into what is
// remembered of it, or, served again meanwhile, into its new state.
func (s *Stapler) rememberLate(m *managed) {
	if !m.removed.Load() {
		return
	}
	s.mu.Lock()
	cur := s.index.get(m.der)
	if cur == nil {
		m.mu.Lock()
		s.remembered.keep(m, &s.revokedCount)
		m.mu.Unlock()
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	m.mu.Lock()
	k := m.knowledgeLocked()
	m.mu.Unlock()
	cur.mu.Lock()
	cur.absorbLocked(k)
	cur.publishLocked(s)
	s.settleLocked(cur, time.Time{}, false)
	s.rememberLate(cur) // removed again meanwhile: remembered with k
}

// ErrOlderResponse: the responder answered with a valid response that is
// not newer (by thisUpdate, then producedAt) than the one held, or that
// would turn a revoked certificate good again at the same time. It is never
// installed: a stale cache or a replay cannot roll a staple back.
var ErrOlderResponse = errors.New("responder answered with a response older than the one held")
