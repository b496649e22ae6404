package stapler

import (
	"bytes"
	"fmt"
	"time"

	"github.com/staplerkit/ocsp/config"
	"github.com/staplerkit/ocsp/internal/fleet"
	"github.com/staplerkit/ocsp/internal/record"
	"github.com/staplerkit/ocsp/internal/schedule"
)

// Installing what a query or the fleet brought (apply, adopt), and planning
// the next query from it (nextRefresh, beforeExpiry, staleBackoff). No
// older answer ever replaces a newer one (supersedes).

// supersedes reports whether e may replace held at now, by the responses'
// own times: a later thisUpdate, else a later producedAt; at equal times
// the same answer fetched again may replace held, but revoked never turns
// good. An older answer with held's status may replace a held response
// that can no longer be served (cache_ttl ran out): that rolls nothing
// back, and is better than no staple.
func supersedes(e, held *record.Entry, now time.Time) bool {
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
	return e.Status == held.Status || held.Status != record.Revoked
}

// apply installs the outcome of a query. It returns when the next query
// is planned, and the response it installed (nil when none: a failure, an
// unknown status, an older answer), the only one that may be shared with a
// fleet or stored.
func (s *Stapler) apply(m *managed, o *outcome) (time.Time, *record.Entry) {
	cfg := s.cfg.Load()
	now := s.clock.Now()
	e, err := o.e, o.err

	m.mu.Lock()
	// Read under m.mu: turning skip_verify off withdraws an unverified
	// staple under m.mu too, after the settings changed, so no unverified
	// answer is installed past that moment.
	st := m.settings.Load().stapling
	if m.applied == o {
		// Another refresh shared this query, recorded it and planned the
		// next one already: one request, counted once.
		m.mu.Unlock()
		return s.sched.Next(m), nil
	}
	m.applied = o
	if err == nil && !o.unverified {
		m.noteRevocationLocked(e)
	}
	if o.pushed && (err != nil || e.Status == record.Unknown || !m.admitsLocked(e, now) || o.unverified && !st.SkipVerify) {
		// A pushed response that is not installed changes nothing (what
		// a revocation in it proved is kept, above).
		s.settleLocked(m, time.Time{}, false)
		return time.Time{}, nil
	}
	if !o.pushed {
		m.lastAttempt = record.At(now)
		m.queries++
		m.ownAttempt = true
	}
	var next time.Time
	var installed *record.Entry
	older := false
	switch {
	case err == nil && o.unverified && !st.SkipVerify:
		// Fetched under skip_verify, which was turned off meanwhile: its
		// signature was never checked, so it is not installed; asked
		// again at once, verified.
		next = now
	case err == nil && e.Status != record.Unknown && !m.admitsLocked(e, now):
		// Valid, but older than what is held: never installed. The
		// responder did answer, so no recovery starts; ask again later,
		// backing off rather than polling.
		older = true
		err = m.fetchError(s.urlFor(m), ErrOlderResponse)
		m.lastErr = err
		next = now.Add(staleBackoff(m.entry, cfg, now))
	case err == nil && e.Status != record.Unknown:
		if !e.Unverified { // an unverified answer is neither stored nor shared
			installed = e
		}
		o.installed.Store(true)
		m.installLocked(e, s)
		m.lastErr, m.tries, m.failed = nil, 0, false
		next = nextRefresh(e, cfg, st, now)
	default:
		if err == nil {
			// Status shows the unknown answer unless it is older than the
			// answer shown (a replay must not hide a revocation from the
			// operator), or unverified over a verified one.
			if m.latest == nil || (!e.Unverified || m.latest.Unverified) &&
				(e.ThisUpdate > m.latest.ThisUpdate || e.ThisUpdate == m.latest.ThisUpdate && e.ProducedAt >= m.latest.ProducedAt) {
				m.latest = e
			}
			err = m.fetchError(s.urlFor(m), ErrUnknownStatus)
		}
		m.lastErr = err
		m.tries++
		if int(m.tries) > cfg.MaxTries() {
			m.failed, m.tries = true, 0
			if s.opts.dropOnFailure && m.entry != nil {
				m.entry = nil
				m.publishLocked(s)
			}
			next = now.Add(schedule.Jitter(cfg.QueryInterval()))
		} else {
			next = now.Add(schedule.Jitter(cfg.RecoveryInterval()))
		}
		next = beforeExpiry(m.entry, now, next)
	}
	s.settleLocked(m, next, true)
	s.rememberLate(m)
	switch {
	case older:
		s.log.Warn("ocsp: ignoring a response older than the one held", "id", m.ID(), "err", err, "retry_at", next)
	case err != nil:
		s.log.Warn("ocsp: query failed", "id", m.ID(), "err", err, "retry_at", next)
	}
	return next, installed
}

// installLocked makes e, a verified response, m's staple: served from the
// next handshake on. m.mu is held.
func (m *managed) installLocked(e *record.Entry, s *Stapler) {
	m.entry, m.latest, m.lastSuccess = e, e, e.FetchedAt
	m.learnLocked(e)
	m.publishLocked(s)
}

// withdrawUnverifiedLocked stops serving a response installed under
// skip_verify, which was turned off: nothing unverified is served with
// verification on. What is known (verified) stays; Status shows the newest
// verified answer again. m.mu is held.
func (m *managed) withdrawUnverifiedLocked(s *Stapler) {
	if m.entry == nil || !m.entry.Unverified {
		return
	}
	m.entry = nil
	if m.latest != nil && m.latest.Unverified {
		m.latest = m.known
	}
	m.publishLocked(s)
}

// settleLocked ends a transition of m made under m.mu, and releases the
// lock: m's state follows from what it now holds, its next query is
// planned at next (unless next is zero: the plan stands), cold handshakes
// waiting for a fetch are released when release is set, and a change of
// state is reported. The plan is set under m.mu, so that two transitions
// of m plan in the order they happened.
func (s *Stapler) settleLocked(m *managed, next time.Time, release bool) {
	from, to := m.state, m.stateLocked()
	m.state = to
	if !next.IsZero() {
		s.sched.Schedule(m, next)
	}
	m.mu.Unlock()
	if release {
		m.disarm()
	}
	s.reportChange(m, from, to)
}

// adopt installs shared, a response read from a store and verified again
// (nil when there is none), and, in a fleet, the fleet's state (nil when
// absent or not plausible); neither counts as a query. It plans the next
// query from them, and reports whether shared was newer than what m holds
// (so there is nothing to fetch).
func (s *Stapler) adopt(m *managed, shared *record.Entry, state *fleet.State, now time.Time) bool {
	cfg := s.cfg.Load()
	st := m.settings.Load().stapling
	m.mu.Lock()
	// Adopted only when the response's own times allow it (never an older
	// response, never revoked back to good: store metadata decides nothing
	// there), and when it is news: newer, fetched later by another server,
	// or different at the same instant (the store breaks the tie, so that
	// every server converges on what it holds).
	//
	// What is known decides, not what is served: a staple dropped
	// (WithDropOnFailure) or withdrawn leaves the knowledge that a stored
	// replay must supersede. shared is verified with m's settings; one
	// verified under skip_verify is compared with what is served too.
	if shared != nil {
		m.noteRevocationLocked(shared)
	}
	// held is what shared must be news against: what is known, or, for
	// an unverified shared while an unverified staple is served, that.
	held := m.known
	if shared != nil && shared.Unverified && m.entry != nil && m.entry.Unverified {
		held = m.entry
	}
	newer := shared != nil && shared.Status != record.Unknown && m.admitsLocked(shared, now) &&
		(held == nil || shared.ThisUpdate != held.ThisUpdate || shared.ProducedAt != held.ProducedAt ||
			shared.FetchedAt > held.FetchedAt || !bytes.Equal(shared.Raw, held.Raw))
	if newer && held != nil && shared.ThisUpdate == held.ThisUpdate && shared.ProducedAt == held.ProducedAt &&
		shared.Status == held.Status && shared.Expires > held.Expires {
		// The same answer, said to be fetched later: the fetch time is
		// store metadata, anyone's to write, so it moves the plan (another
		// server asked) but never the staple's cache_ttl past what this
		// server knows.
		same := *shared
		same.Expires = held.Expires
		shared = &same
	}
	if newer {
		m.installLocked(shared, s)
	}
	failedAttempt := false // the fleet's last attempt failed, and is now ours
	if state != nil && record.Instant(state.LastAttempt) >= m.lastAttempt {
		m.tries, m.failed, m.lastAttempt = int32(state.Tries), state.Failed, record.Instant(state.LastAttempt)
		m.lastErr = nil
		if state.LastError != "" {
			m.lastErr = fleetError(state.LastError)
			failedAttempt = state.LastAttempt != 0
		}
	}
	var next time.Time
	switch {
	case state != nil && state.Next > now.UnixNano():
		// Never past the staple held here: the state is unsigned.
		next = beforeExpiry(m.entry, now, time.Unix(0, state.Next))
	case newer:
		next = nextRefresh(m.entry, cfg, st, now)
	}
	// Handshakes waiting for a first staple (and Ready) stop waiting on a
	// newer response, or on the fleet's failed attempt: a first attempt
	// with a reason.
	s.settleLocked(m, next, newer || failedAttempt)
	return newer
}

// beforeExpiry moves a retry planned at next to before the held staple
// expires, so that a staple is never lost for want of an attempt while the
// responder may be back: half the time left, at most.
func beforeExpiry(held *record.Entry, now, next time.Time) time.Time {
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
func staleBackoff(held *record.Entry, cfg *config.OCSP, now time.Time) time.Duration {
	d := min(staleRetry, cfg.QueryInterval())
	if held != nil {
		if left := held.Expires.Time().Sub(now); left > 0 {
			d = min(d, left/2)
		}
	}
	return max(schedule.Jitter(d), time.Second)
}

// reportChange logs a change of state and calls the status hook.
func (s *Stapler) reportChange(m *managed, from, to stateCode) {
	if from == to {
		return
	}
	if to == codeRevoked {
		// What an operator must not miss: at WARN, naming the certificate.
		s.log.Warn("ocsp: certificate revoked", "id", m.ID(), "subject", m.leaf.Subject.String(), "serial", fmt.Sprintf("%x", m.leaf.SerialNumber), "from", from.State())
	} else {
		s.log.Info("ocsp: certificate status changed", "id", m.ID(), "subject", m.leaf.Subject.String(), "from", from.State(), "to", to.State())
	}
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
func nextRefresh(e *record.Entry, cfg *config.OCSP, st config.Stapling, now time.Time) time.Time {
	fetched, thisUpdate, nextUpdate := e.FetchedAt.Time(), e.ThisUpdate.Time(), e.NextUpdate.Time()
	next := fetched.Add(cfg.QueryInterval())
	ttl := st.CacheDuration()
	if t := fetched.Add(ttl - min(ttl/4, cfg.RecoveryInterval())); t.Before(next) {
		next = t
	}
	if nextUpdate.IsZero() {
		// No nextUpdate: the bound the verifier chose stands for it.
		nextUpdate = e.Expires.Time()
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
	return now.Add(max(schedule.Jitter(d), time.Second))
}

// fetchError names m and the responder in err.
func (m *managed) fetchError(url string, err error) error {
	return &FetchError{ID: m.ID(), Subject: m.leaf.Subject.String(), Serial: fmt.Sprintf("%x", m.leaf.SerialNumber), URL: url, Err: err}
}
