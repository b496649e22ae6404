package stapler

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/staplerkit/ocsp/cache"
	"github.com/staplerkit/ocsp/config"
)

// Fleet coordination, used when the store is a cache.Leaser shared by
// several servers: one server at a time queries the responder for a
// certificate; the others verify and staple what it stored. The recovery
// state (tries, failed, the last error, when to try next) is kept in the
// store too, so that every server reports the same status and retries are
// counted fleet-wide.

// stateSuffix names the key of a certificate's fleet state.
const stateSuffix = ".state"

// fleetState is a certificate's recovery state, shared through the store.
type fleetState struct {
	Tries       int    `json:"tries"`
	Failed      bool   `json:"failed"`
	LastError   string `json:"last_error,omitempty"`
	LastAttempt int64  `json:"last_attempt"` // Unix nanoseconds
	Next        int64  `json:"next"`         // when the fleet tries next after a failure; 0 after a success
}

// plausible reports whether a server of the fleet could have written st
// at now (give or take skew): its tries within recovery_max_tries, its last
// attempt not in the future, and its next attempt no later than one
// query_frequency after the last. A state that fails this was tampered with
// (or written by a server configured very differently) and is not adopted.
func (st *fleetState) plausible(cfg *config.OCSP, now time.Time, skew time.Duration) bool {
	latest := now.Add(skew).UnixNano()
	return st.Tries >= 0 && st.Tries <= cfg.MaxTries() &&
		st.LastAttempt <= latest &&
		st.Next <= time.Unix(0, st.LastAttempt).Add(cfg.QueryInterval()+skew).UnixNano()
}

// LeaseTTL is how long a server holds a certificate's lease while it
// queries the responder, for a given response_timeout: if it dies mid-query,
// its lease runs out after at most this long, and another server takes over
// when it next looks (servers that found the lease taken look again every
// response_timeout + 1 s).
func LeaseTTL(responseTimeout time.Duration) time.Duration {
	return 2*responseTimeout + 2*time.Second
}

// leaseWait is how long a server that found the lease taken waits before
// it looks in the store again.
func leaseWait(responseTimeout time.Duration) time.Duration {
	return responseTimeout + time.Second
}

// fleetError is an error reported by another server of the fleet.
type fleetError string

func (e fleetError) Error() string { return string(e) }

// refreshFleet is refresh for a shared store. syncOnly (a change
// notification) adopts what the store has and never queries the responder.
func (s *Stapler) refreshFleet(m *managed, syncOnly bool) {
	if s.storeDown.Load() && time.Now().UnixNano() < s.storeRetryAt.Load() {
		// The store is down and not due for another try: no point waiting
		// on its timeouts for every certificate.
		if syncOnly {
			s.keepPlan(m)
		} else {
			s.refreshAlone(m)
		}
		return
	}
	cfg := s.cfg.Load()
	ctx, cancel := context.WithTimeout(s.ctx, storeTimeout)
	defer cancel()
	// base is the response this refresh means to replace: if anything newer
	// turns up on the way (stored by another server, or adopted from a
	// notification meanwhile), there is nothing to fetch.
	m.mu.Lock()
	base := m.entry
	early := m.plan > s.clock.Now().UnixNano() // woken before our plan: adopt only
	m.mu.Unlock()
	syncOnly = syncOnly || early
	replaced := func() bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		return m.entry != base
	}
	shared, state, err := s.readShared(ctx, m)
	if err != nil {
		s.storeFailed(err)
		if syncOnly {
			s.keepPlan(m)
		} else {
			s.refreshAlone(m)
		}
		return
	}
	s.storeOK()
	now := s.clock.Now()
	if s.adoptShared(m, shared, state, now) || replaced() {
		return
	}
	if syncOnly {
		s.keepPlan(m)
		return
	}
	if state != nil && state.Next > now.UnixNano() {
		// Another server failed and plans the retry: follow its plan, unless
		// it would let the staple held here expire first (the state is
		// unsigned: anyone may have written it); then it is our turn.
		m.mu.Lock()
		planned := time.Unix(0, state.Next)
		if next := beforeExpiry(m.entry, now, planned); next.Equal(planned) {
			m.plan = next.UnixNano()
			m.mu.Unlock()
			s.sched.schedule(m, next)
			return
		}
		m.mu.Unlock()
	}
	var attempted int64 // the fleet's last attempt, as this refresh saw it
	if state != nil {
		attempted = state.LastAttempt
	}

	// Our turn: take the lease, then look again, since the holder before us
	// may have just stored a fresh response, or just tried and failed.
	token, ok, err := s.leaser.Lease(ctx, m.ID(), LeaseTTL(cfg.Timeout()))
	if err != nil {
		s.storeFailed(err)
		s.refreshAlone(m)
		return
	}
	if !ok {
		s.sched.schedule(m, now.Add(leaseWait(cfg.Timeout())))
		return
	}
	defer func() {
		// Released even when closing, so that a clean shutdown hands over
		// at once; bounded, so that a hung store cannot stall Close.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeTimeout)
		defer cancel()
		s.leaser.Release(rctx, m.ID(), token)
	}()
	if shared, state, err = s.readShared(ctx, m); err == nil {
		if s.adoptShared(m, shared, state, now) || replaced() {
			return
		}
		if state != nil && state.LastAttempt > attempted {
			s.keepPlan(m) // another server just tried: its plan is ours
			return
		}
	}
	o := s.query(s.ctx, m)
	if errors.Is(o.err, context.Canceled) && s.ctx.Err() != nil {
		m.disarm()
		return // closing
	}
	m.mu.Lock()
	if state != nil { // continue the fleet's count, not ours
		m.tries, m.failed = int32(state.Tries), state.Failed
	}
	m.mu.Unlock()
	next, installed := s.apply(m, o, true)
	if err := s.writeShared(m, next, installed, token); errors.Is(err, cache.ErrLeaseLost) {
		// Paused past the lease: another server may have taken over and
		// stored its result, which nothing of ours overwrote. Adopt it.
		s.log.Info("ocsp: the lease ran out during the query; adopting what the fleet stored", "id", m.ID())
		rctx, cancel := context.WithTimeout(s.ctx, storeTimeout)
		defer cancel()
		if shared, state, err := s.readShared(rctx, m); err == nil {
			if state != nil {
				m.mu.Lock()
				m.lastAttempt = min(m.lastAttempt, cache.Instant(state.LastAttempt))
				m.mu.Unlock()
			}
			s.adoptShared(m, shared, state, s.clock.Now())
		}
	}
}

// refreshAlone queries without the fleet, when the store cannot be reached.
func (s *Stapler) refreshAlone(m *managed) {
	o := s.query(s.ctx, m)
	if errors.Is(o.err, context.Canceled) && s.ctx.Err() != nil {
		m.disarm()
		return
	}
	s.apply(m, o, true)
}

// readShared reads and verifies the stored response (nil when absent or
// unusable: such a value is replaced by the next fetch) and the fleet state.
func (s *Stapler) readShared(ctx context.Context, m *managed) (*cache.Entry, *fleetState, error) {
	var state *fleetState
	value, err := s.persist.store.Get(ctx, m.ID()+stateSuffix)
	switch {
	case err == nil:
		state = new(fleetState)
		if json.Unmarshal(value, state) != nil || !state.plausible(s.cfg.Load(), s.clock.Now(), s.opts.skew) {
			// The store is not trusted with the state either: one that no
			// server could have written (a retry planned past the regular
			// schedule, say) is ignored, and replaced at the next query.
			s.log.Warn("ocsp: ignoring the shared state; it will be replaced", "id", m.ID())
			state = nil
		}
	case !errors.Is(err, cache.ErrCacheMiss):
		return nil, nil, err
	}
	value, err = s.persist.store.Get(ctx, m.ID())
	if errors.Is(err, cache.ErrCacheMiss) {
		return nil, state, nil
	}
	if err != nil {
		return nil, nil, err
	}
	e, err := s.loadStored(ctx, m, value)
	if err != nil {
		s.log.Warn("ocsp: ignoring the shared response; it will be replaced", "id", m.ID(), "err", err)
		return nil, state, nil
	}
	return e, state, nil
}

// adoptShared takes the fleet's state and, when it is newer than ours, the
// stored response, and plans the next query from them. It reports whether
// the store held a response newer than ours (so there is nothing to fetch).
func (s *Stapler) adoptShared(m *managed, shared *cache.Entry, state *fleetState, now time.Time) bool {
	cfg := s.cfg.Load()
	st := m.settings.Load().stapling
	m.mu.Lock()
	// Adopted only when the response's own times allow it (never an older
	// response, never revoked back to good: store metadata decides nothing
	// there), and when it is news: newer, fetched later by another server,
	// or different at the same instant (the store breaks the tie, so that
	// every server converges on what it holds).
	newer := shared != nil && (m.entry == nil || supersedes(shared, m.entry, now) &&
		(shared.ThisUpdate != m.entry.ThisUpdate || shared.ProducedAt != m.entry.ProducedAt ||
			shared.FetchedAt > m.entry.FetchedAt || !bytes.Equal(shared.Raw, m.entry.Raw)))
	if newer && m.entry != nil && shared.ThisUpdate == m.entry.ThisUpdate && shared.ProducedAt == m.entry.ProducedAt &&
		shared.Status == m.entry.Status && shared.Expires > m.entry.Expires {
		// The same answer, said to be fetched later: the fetch time is
		// store metadata, anyone's to write, so it moves the plan (another
		// server asked) but never the staple's cache_ttl past what this
		// server knows.
		same := *shared
		same.Expires = m.entry.Expires
		shared = &same
	}
	if newer {
		m.entry, m.latest, m.lastSuccess = shared, shared, shared.FetchedAt
		m.publishLocked()
	}
	if state != nil && cache.Instant(state.LastAttempt) >= m.lastAttempt {
		m.tries, m.failed, m.lastAttempt = int32(state.Tries), state.Failed, cache.Instant(state.LastAttempt)
		m.lastErr = nil
		if state.LastError != "" {
			m.lastErr = fleetError(state.LastError)
		}
	}
	from, to := m.state, m.stateLocked()
	m.state = to
	var next time.Time
	switch {
	case state != nil && state.Next > now.UnixNano():
		// Never past the staple held here: the state is unsigned.
		next = beforeExpiry(m.entry, now, time.Unix(0, state.Next))
	case newer:
		next = nextRefresh(m.entry, cfg, st, now)
	}
	if !next.IsZero() {
		m.plan = next.UnixNano()
	}
	m.mu.Unlock()
	if !next.IsZero() {
		s.sched.schedule(m, next)
	}
	if newer {
		m.disarm()
	}
	s.reportChange(m, from, to)
	return newer
}

// keepPlan puts m back on the scheduler at its plan, for a refresh that ends
// without a query (the scheduler dropped m when it handed it out).
func (s *Stapler) keepPlan(m *managed) {
	m.mu.Lock()
	plan := m.plan
	m.mu.Unlock()
	s.sched.schedule(m, time.Unix(0, plan))
}

// writeShared stores what a server got: the fresh response, if any, and
// the fleet state. A lease holder passes its token, and its writes are
// fenced by it: once the lease is lost nothing is written, and the result
// is cache.ErrLeaseLost. The writes get a context of their own, so that a
// holder paused past its context's deadline does not report the store
// unreachable.
func (s *Stapler) writeShared(m *managed, next time.Time, fresh *cache.Entry, token string) error {
	ctx, cancel := context.WithTimeout(s.ctx, storeTimeout)
	defer cancel()
	m.mu.Lock()
	state := fleetState{Tries: int(m.tries), Failed: m.failed, LastAttempt: int64(m.lastAttempt)}
	if m.lastErr != nil {
		state.LastError = m.lastErr.Error()
		state.Next = next.UnixNano()
	}
	m.mu.Unlock()
	put := func(key string, value []byte) error {
		if token == "" {
			return s.persist.store.Put(ctx, key, value)
		}
		return s.leaser.PutLeased(ctx, m.ID(), token, key, value)
	}
	var err error
	if fresh != nil {
		err = put(m.ID(), cache.EncodeRecord(fresh.Raw, fresh.FetchedAt.Time()))
	}
	if err == nil {
		value, _ := json.Marshal(state)
		err = put(m.ID()+stateSuffix, value)
	}
	if errors.Is(err, cache.ErrLeaseLost) {
		return cache.ErrLeaseLost
	}
	if err != nil {
		s.storeFailed(err)
	}
	return err
}

// watchFleet adopts the changes other servers make as they are notified.
func (s *Stapler) watchFleet(n cache.Notifier) {
	n.Subscribe(s.ctx, func(key string) {
		m, err := s.lookup(strings.TrimSuffix(key, stateSuffix))
		if err != nil {
			return
		}
		m.syncPending.Store(true)
		s.sched.schedule(m, s.clock.Now())
	})
}

// StoreRetryInterval is how long a server that found the shared store
// unreachable queries the responder on its own before it tries the store
// again: coordination resumes within this long of the store coming back.
const StoreRetryInterval = time.Second

// storeFailed notes that the store could not be reached, logging it once
// per outage.
func (s *Stapler) storeFailed(err error) {
	s.storeErr.Store(&err)
	s.storeRetryAt.Store(time.Now().Add(StoreRetryInterval).UnixNano())
	if !s.storeDown.Swap(true) {
		s.log.Warn("ocsp: the shared store is unreachable; querying the responder on our own until it is back", "err", err)
	}
}

func (s *Stapler) storeOK() {
	if s.storeDown.Swap(false) {
		s.storeErr.Store(nil)
		s.log.Info("ocsp: the shared store is back; coordinating with the fleet again")
	}
}
