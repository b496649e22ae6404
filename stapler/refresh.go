package stapler

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/staplerkit/ocsp/cache"
	"github.com/staplerkit/ocsp/config"
)

// refresh is a scheduled query for m, run on a worker.
func (s *Stapler) refresh(m *managed) {
	cfg := s.cfg.Load()
	if !cfg.OCSPFunctionality || !m.settings.Load().stapling.Enabled || m.leaf == nil || s.urlFor(m) == "" {
		m.disarm()
		return
	}
	e, err := s.query(s.ctx, m)
	if errors.Is(err, context.Canceled) && s.ctx.Err() != nil {
		m.disarm()
		return // closing
	}
	s.record(m, e, err)
}

// query fetches and verifies m's response, sharing one request among all
// callers that ask at the same time.
func (s *Stapler) query(ctx context.Context, m *managed) (*cache.Entry, error) {
	ch := s.flight.DoChan(m.id, func() (any, error) {
		return s.fetchAndVerify(m)
	})
	select {
	case r := <-ch:
		e, _ := r.Val.(*cache.Entry)
		return e, r.Err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (s *Stapler) fetchAndVerify(m *managed) (*cache.Entry, error) {
	cfg := s.cfg.Load()
	st := m.settings.Load().stapling
	url := s.urlFor(m)
	fail := func(err error) (*cache.Entry, error) {
		return nil, &FetchError{ID: m.id, Subject: m.leaf.Subject.String(), Serial: fmt.Sprintf("%x", m.leaf.SerialNumber), URL: url, Err: err}
	}
	if url == "" {
		return fail(ErrNoResponderURL)
	}
	ctx, cancel := context.WithTimeout(s.ctx, cfg.Timeout())
	defer cancel()
	m.mu.Lock()
	issuer := m.issuer
	m.mu.Unlock()
	if issuer == nil {
		var err error
		if issuer, err = fetchIssuer(ctx, s.client, m.leaf); err != nil {
			return fail(err)
		}
		m.mu.Lock()
		m.issuer = issuer
		m.mu.Unlock()
	}
	raw, _, err := fetchResponse(ctx, s.client, url, m.leaf, issuer)
	if err != nil {
		return fail(err)
	}
	now := s.clock.Now()
	e, err := verifyResponse(raw, m.leaf, issuer, now, verifyOptions{skipSignature: st.SkipVerify, skew: s.opts.skew})
	if err != nil {
		return fail(err)
	}
	e.Raw = bytes.Clone(raw) // exactly its size, not the read buffer's
	e.ResponderURL = url
	e.FetchedAt = now
	e.Expires = cache.Expiry(now, st.CacheDuration(), e.NextUpdate, e.Expires)
	return e, nil
}

// record applies the outcome of a query to m: a new staple and the next
// regular refresh, or a retry after recovery_frequency and, when the tries
// are used up, the failed state.
func (s *Stapler) record(m *managed, e *cache.Entry, err error) {
	cfg := s.cfg.Load()
	st := m.settings.Load().stapling
	now := s.clock.Now()

	m.mu.Lock()
	m.lastAttempt = now
	m.queries++
	var next time.Time
	if err == nil && e.Status != cache.Unknown {
		m.entry, m.latest = e, e
		m.lastErr, m.tries, m.failed, m.lastSuccess = nil, 0, false, now
		m.publishLocked()
		next = nextRefresh(e, cfg, st, now)
	} else {
		if err == nil {
			m.latest = e
			err = &FetchError{ID: m.id, Subject: m.leaf.Subject.String(), Serial: fmt.Sprintf("%x", m.leaf.SerialNumber), URL: e.ResponderURL, Err: ErrUnknownStatus}
		}
		m.lastErr = err
		m.tries++
		if m.tries > cfg.MaxTries() {
			m.failed, m.tries = true, 0
			if s.opts.dropOnFailure && m.entry != nil {
				m.entry = nil
				m.publishLocked()
			}
			next = now.Add(jitter(cfg.QueryInterval()))
		} else {
			next = now.Add(jitter(cfg.RecoveryInterval()))
		}
	}
	from, to := m.state, m.stateLocked()
	m.state = to
	m.mu.Unlock()

	s.sched.schedule(m, next)
	m.disarm()
	if err != nil {
		s.log.Warn("ocsp: query failed", "id", m.id, "err", err, "retry_at", next)
	}
	if from != to {
		s.log.Info("ocsp: certificate status changed", "id", m.id, "subject", m.leaf.Subject.String(), "from", from, "to", to)
		if s.opts.hook != nil {
			s.opts.hook(StatusChange{ID: m.id, From: from, To: to, Status: s.statusOf(m)})
		}
	}
}

// nextRefresh is the earliest of fetched + query_frequency, fetched +
// cache_ttl and the middle of the response's validity, jittered, and not
// sooner than a minute (or half the time left, if less) from now, so that
// a responder that serves old responses is not asked in a loop. The
// cache_ttl bound comes early by a quarter of cache_ttl or one
// recovery_frequency, whichever is less, so that a failed refresh is retried
// while the staple is still served.
func nextRefresh(e *cache.Entry, cfg *config.OCSP, st config.Stapling, now time.Time) time.Time {
	next := e.FetchedAt.Add(cfg.QueryInterval())
	ttl := st.CacheDuration()
	if t := e.FetchedAt.Add(ttl - min(ttl/4, cfg.RecoveryInterval())); t.Before(next) {
		next = t
	}
	if t := e.ThisUpdate.Add(e.NextUpdate.Sub(e.ThisUpdate) / 2); t.Before(next) {
		next = t
	}
	floor := min(time.Minute, e.Expires.Sub(now)/2)
	floor = max(floor, time.Second)
	d := max(next.Sub(now), floor)
	return now.Add(max(jitter(d), floor))
}
