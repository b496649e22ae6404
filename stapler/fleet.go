package stapler

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/staplerkit/ocsp/cache"
	"github.com/staplerkit/ocsp/config"
	"github.com/staplerkit/ocsp/internal/record"
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

// leaseTTL is how long a server holds a certificate's lease while it
// queries the responder, for a given response_timeout: if it dies mid-query,
// its lease runs out after at most this long, and another server takes over
// when it next looks (servers that found the lease taken look again every
// response_timeout + 1 s).
func leaseTTL(responseTimeout time.Duration) time.Duration {
	return 2*responseTimeout + 2*time.Second
}

// leaseWait is how long a server that found the lease taken waits before
// it looks in the store again.
func leaseWait(responseTimeout time.Duration) time.Duration {
	return responseTimeout + time.Second
}

// minFirstRead is the least a certificate's first store read is given,
// however short the cold wait: a Redis that answers, however loaded the
// machine, is not taken for hung (a node that reads too late queries
// alone, one more request, and staples another response than the fleet
// until the store answers again).
const minFirstRead = 2 * time.Second

// firstReadTimeout bounds the store read of a certificate's first fetch:
// the cold wait (at least minFirstRead), never more than the store timeout.
func (f *fleetSource) firstReadTimeout() time.Duration {
	return min(f.timeout, max(f.s.coldWait(), minFirstRead))
}

// leaseStuck notes that m's lease was found held by another, and reports
// whether it has been held, with the fleet's last attempt (attempted)
// unchanged, for longer than twice the lease's lifetime: no server of the
// fleet holds a lease that long without sharing an attempt, so someone
// else keeps writing it. Counted in real time, as Redis counts a lease's
// life; or, once the held staple is past its half-life, on the
// scheduling clock (now) too, which a machine's suspend or a test's
// manual clock may run ahead of real time.
func (f *fleetSource) leaseStuck(m *managed, held *record.Entry, attempted int64, now time.Time, ttl time.Duration) bool {
	h := &f.health
	h.mu.Lock()
	defer h.mu.Unlock()
	b, seen := h.blocked[m]
	if !seen || b.attempted != attempted || now.Before(b.since) {
		h.blocked[m] = leaseBlock{since: now, real: time.Now(), attempted: attempted}
		return false
	}
	return time.Since(b.real) > 2*ttl ||
		held != nil && pastHalfLife(held, now) && now.Sub(b.since) > 2*ttl
}

// queried notes that this server queried the responder for m at now.
func (f *fleetSource) queried(m *managed, now time.Time) {
	h := &f.health
	h.mu.Lock()
	h.verified[m] = now
	h.mu.Unlock()
}

// noteFresh notes, as queried does, that m holds a newer response than
// base: its signed thisUpdate is later (the fetch time, store metadata,
// does not count).
func (f *fleetSource) noteFresh(m *managed, base *record.Entry, now time.Time) {
	m.mu.Lock()
	e := m.entry
	m.mu.Unlock()
	if e != nil && (base == nil || e.ThisUpdate > base.ThisUpdate) {
		f.queried(m, now)
	}
}

// overdue reports whether this server has neither queried nor seen a
// newer response for m for two query intervals (interval) before now. A
// certificate never seen so is noted at now.
func (f *fleetSource) overdue(m *managed, now time.Time, interval time.Duration) bool {
	h := &f.health
	h.mu.Lock()
	defer h.mu.Unlock()
	at, seen := h.verified[m]
	if !seen || now.Before(at) {
		h.verified[m] = now
		return false
	}
	return now.Sub(at) > 2*interval
}

// leaseTaken notes that this server took m's lease.
func (f *fleetSource) leaseTaken(m *managed) {
	h := &f.health
	h.mu.Lock()
	delete(h.blocked, m)
	h.mu.Unlock()
}

// pastHalfLife reports whether the held staple has lived past half its
// validity at now.
func pastHalfLife(held *record.Entry, now time.Time) bool {
	this, next := held.ThisUpdate.Time(), held.Expires.Time()
	return now.After(this.Add(next.Sub(this) / 2))
}

// leaseBlock is since when a certificate's lease has been found held by
// others, and the fleet's last attempt then.
type leaseBlock struct {
	since     time.Time // on the scheduling clock
	real      time.Time
	attempted int64
}

// fleetError is an error reported by another server of the fleet.
type fleetError string

func (e fleetError) Error() string { return string(e) }

// fleetSource is the mode with a store shared by a fleet (a cache.Leaser).
// A due refresh reads what the fleet stored and adopts it when it is newer;
// when the fleet has nothing newer and no retry planned, it takes the
// certificate's lease, looks once more, queries, and shares what it
// installed, fenced by the lease. While a certificate's keys cannot be
// reached, that certificate queries on its own; the others, whose keys
// may live elsewhere (another Redis Cluster master), go on coordinating.
// Change notifications (cache.Notifier) go to a worker of their own, which
// adopts what the fleet stored: they never pass through the timer heap,
// and plan a query only when they adopted something.
type fleetSource struct {
	s      *Stapler
	store  cache.Store
	leaser cache.Leaser

	// writes is held for reading by every write of a certificate's
	// values, and for writing by forget while it deletes them.
	writes sync.RWMutex

	timeout time.Duration // bounds each store operation
	health  storeHealth   // the certificates whose store operations fail
	notices notices       // certificates the fleet announced a change for

	resyncs struct {
		mu      sync.Mutex
		last    time.Time // when the last resync ran
		pending bool      // one is planned
		first   bool      // the first was asked for (the subscription is live)
	}
}

func newFleetSource(s *Stapler, store cache.Store, leaser cache.Leaser) *fleetSource {
	timeout := s.opts.storeTimeout
	if timeout <= 0 {
		timeout = storeTimeout
	}
	return &fleetSource{s: s, store: store, leaser: leaser, timeout: timeout,
		health:  storeHealth{failing: map[*managed]storeFault{}, blocked: map[*managed]leaseBlock{}, verified: map[*managed]time.Time{}},
		notices: notices{set: map[*managed]bool{}, busy: map[*managed]bool{}, wake: make(chan struct{}, 1)}}
}

func (f *fleetSource) refresh(m *managed) {
	s := f.s
	if f.isDown(m) {
		// The certificate's keys were unreachable a moment ago: no point
		// waiting on the store's timeouts again before it is due for
		// another try.
		f.refreshAlone(m)
		return
	}
	cfg := s.cfg.Load()
	ctx, cancel := context.WithTimeout(s.ctx, f.timeout)
	defer cancel()
	// base is the response this refresh means to replace: if anything newer
	// turns up on the way (stored by another server, or adopted from a
	// notification meanwhile), there is nothing to fetch.
	m.mu.Lock()
	base := m.entry
	// A notification adopted a result after m fell due, and planned the
	// next query from it (checked under m.mu, where adopt plans).
	replanned := s.sched.Planned(m)
	m.mu.Unlock()
	if replanned {
		return
	}
	replaced := func() bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		return m.entry != base
	}
	readCtx := ctx
	if base == nil {
		// The first fetch: handshakes wait for it (the cold wait), so a
		// store that does not answer must not hold it up longer than that.
		rctx, cancel := context.WithTimeout(ctx, f.firstReadTimeout())
		defer cancel()
		readCtx = rctx
	}
	readStart := time.Now()
	shared, state, err := f.readShared(readCtx, m)
	if err != nil {
		f.failed(m, err, readStart, StoreRead)
		f.refreshAlone(m)
		// What it fetched alone is shared once the store answers again
		// (adoptOne), so that the fleet does not staple two responses
		// until the next refresh.
		f.notices.later(m, time.Now().Add(storeRetryInterval))
		return
	}
	f.ok(m)
	now := s.clock.Now()
	// A stored response this server cannot vouch for is not adopted
	// before the responder is asked; it is kept in case the responder
	// cannot be reached.
	var unvouched *record.Entry
	if f.unvouched(m, shared, now) {
		s.log.Info("ocsp: the shared response is older than this server can vouch for; asking the responder first", "id", m.ID(),
			"produced_at", shared.ProducedAt.Time())
		unvouched, shared = shared, nil
	}
	// overdue: this server has neither queried nor seen a newer response
	// for two query intervals. The fleet's state, unsigned, defers its
	// queries no longer: someone who keeps writing a plausible state (an
	// attempt just made, the next an interval away) would otherwise hold
	// every server's queries off until the staple nears expiry. So does
	// the fetch time of the response held, store metadata too: the same
	// answer "fetched later" again and again is no news then.
	overdue := f.overdue(m, now, cfg.QueryInterval())
	if overdue && sameAnswer(shared, base) {
		shared = nil
	}
	if s.adopt(m, shared, state, now) || replaced() {
		f.noteFresh(m, base, now)
		return
	}
	if unvouched == nil && !overdue && state != nil && state.Next > now.UnixNano() && !beforeExpiry(base, now, time.Unix(0, state.Next)).Before(time.Unix(0, state.Next)) {
		// Another server failed and plans the retry: adopt followed its
		// plan. Unless it would let the staple held here expire first (the
		// state is unsigned: anyone may have written it); then it is our
		// turn.
		return
	}
	var attempted int64 // the fleet's last attempt, as this refresh saw it
	if state != nil {
		attempted = state.LastAttempt
	}

	// Our turn: take the lease, then look again, since the holder before us
	// may have just stored a fresh response, or just tried and failed.
	leaseStart := time.Now()
	token, ok, err := f.leaser.Lease(ctx, m.ID(), leaseTTL(cfg.Timeout()))
	if err != nil {
		f.failed(m, err, leaseStart, StoreLease)
		f.refreshAlone(m)
		return
	}
	if !ok {
		if f.leaseStuck(m, base, attempted, now, leaseTTL(cfg.Timeout())) {
			// Held past any lease's lifetime with no attempt recorded: a
			// lease that someone else than a server of the fleet keeps
			// writing (the store caps one without a TTL at the lease TTL).
			// The store is not trusted with stopping the queries: query
			// on our own.
			s.log.Warn("ocsp: the certificate's lease has been held past its lifetime with no attempt shared; querying on our own", "id", m.ID())
			f.refreshAlone(m)
			return
		}
		// Another server is querying: look again after its lease, unless a
		// notification has meanwhile brought its result (and planned the
		// next query from it). Checked and planned under m.mu, as adopt
		// plans, so that neither plan overwrites the other's newer one.
		m.mu.Lock()
		if m.entry == base {
			s.sched.Schedule(m, now.Add(leaseWait(cfg.Timeout())))
		}
		m.mu.Unlock()
		return
	}
	f.leaseTaken(m)
	defer func() {
		// Released even when closing, so that a clean shutdown hands over
		// at once; bounded, so that a hung store cannot stall Close.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), f.timeout)
		defer cancel()
		f.leaser.Release(rctx, m.ID(), token)
	}()
	if shared, state, err = f.readShared(ctx, m); err == nil {
		if f.unvouched(m, shared, now) {
			unvouched, shared = shared, nil
		}
		if overdue && sameAnswer(shared, base) {
			shared = nil
		}
		if s.adopt(m, shared, state, now) || replaced() {
			f.noteFresh(m, base, now)
			return
		}
		if unvouched == nil && !overdue && state != nil && state.LastAttempt > attempted {
			// Another server just tried: its plan is ours (adopt followed
			// it), or, when it planned none, look again now.
			if state.Next <= now.UnixNano() {
				s.sched.Schedule(m, now)
			}
			return
		}
	}
	f.queried(m, now)
	o := s.query(s.ctx, m)
	if s.closing(m, o) {
		return
	}
	m.mu.Lock()
	if state != nil { // continue the fleet's count, not ours
		m.tries, m.failed = int32(state.Tries), state.Failed
	}
	m.mu.Unlock()
	next, installed := s.apply(m, o)
	if unvouched != nil && (installed == nil || better(unvouched, installed)) {
		// The responder could not vouch either way, or answered with an
		// older response than the store's (a stale edge): the stored
		// response, valid and verified, is better than no staple (as any
		// cached staple is, until its nextUpdate), and the store keeps it.
		s.adopt(m, unvouched, nil, s.clock.Now())
		installed = nil
	}
	if err := f.writeShared(s.ctx, m, next, installed, token); errors.Is(err, cache.ErrLeaseLost) {
		// Paused past the lease: another server may have taken over and
		// stored its result, which nothing of ours overwrote. Adopt it.
		s.log.Info("ocsp: the lease ran out during the query; adopting what the fleet stored", "id", m.ID())
		rctx, cancel := context.WithTimeout(s.ctx, f.timeout)
		defer cancel()
		if shared, state, err := f.readShared(rctx, m); err == nil {
			if state != nil {
				m.mu.Lock()
				m.lastAttempt = min(m.lastAttempt, record.Instant(state.LastAttempt))
				m.mu.Unlock()
			}
			s.adopt(m, shared, state, s.clock.Now())
		}
	}
}

// recorded shares a result got outside a refresh (a Test's, or a pushed
// response) with the fleet. A response installed is shared by the notice
// workers (shareIfNewer), so that Push and Test return without waiting on
// the store; a Test that failed tells the fleet's state of its try
// (unfenced: no lease is held for a Test).
func (f *fleetSource) recorded(m *managed, next time.Time, installed *record.Entry) {
	if installed == nil {
		f.writeShared(f.s.ctx, m, next, nil, "")
		return
	}
	m.mu.Lock()
	m.unshared = true
	m.mu.Unlock()
	f.notices.add(m)
}

// maxShareRetry is the longest a response waiting to be shared waits
// between two tries (they start at storeRetryInterval and double).
const maxShareRetry = time.Minute

// share stores fresh, a response this server got outside a refresh (a
// pushed one, a Test's, one fetched alone while the store was away),
// under the certificate's lease, and only when the store holds nothing
// better: the store keeps the best answer any server got, whoever writes
// last. When the store holds a better one, nothing is written and it is
// adopted (as a notification's would be). When another server holds the
// lease (it is querying, and will store its answer) or the store fails,
// it is tried again later, every storeRetryInterval doubling up to
// maxShareRetry; a lease held past twice its lifetime (someone keeps
// writing it) is not waited for: the response is written without it, over
// an older one only. Called by the notice workers (shareIfNewer).
func (f *fleetSource) share(base context.Context, m *managed, fresh *record.Entry) {
	s := f.s
	ctx, cancel := context.WithTimeout(base, f.timeout)
	defer cancel()
	ttl := leaseTTL(s.cfg.Load().Timeout())
	start := time.Now()
	token, ok, err := f.leaser.Lease(ctx, m.ID(), ttl)
	if err != nil || ok {
		// Held past its lifetime counts a lease found held at every try
		// in a row: not one met long ago, then another just taken.
		m.mu.Lock()
		m.shareBlocked = time.Time{}
		m.mu.Unlock()
	}
	if err != nil {
		f.failed(m, err, start, StoreLease)
		f.shareLater(m, maxShareRetry)
		return
	}
	if !ok {
		if left := f.shareBlocked(m, 2*ttl); left > 0 {
			f.shareLater(m, left)
			return
		}
		s.log.Warn("ocsp: the certificate's lease has been held past its lifetime; sharing without it", "id", m.ID())
		token = "" // unfenced, over an older response only (below)
	} else {
		defer func() {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), f.timeout)
			defer cancel()
			f.leaser.Release(rctx, m.ID(), token)
		}()
	}
	start = time.Now()
	shared, _, err := f.readShared(ctx, m)
	if err != nil {
		f.failed(m, err, start, StoreRead)
		f.shareLater(m, maxShareRetry)
		return
	}
	f.ok(m)
	if shared != nil && !better(fresh, shared) {
		f.shareDone(m)
		if better(shared, fresh) {
			f.notices.add(m) // adopted by the notice workers' rules
		}
		return
	}
	if err := f.writeShared(base, m, time.Time{}, fresh, token); err != nil {
		f.shareLater(m, maxShareRetry)
		return
	}
	f.shareDone(m)
}

// noticeRetry is how long after its store was found failing m's notice
// is read again: storeRetryInterval, or, while m holds a response waiting
// to be shared, that response's backoff (shareLater), so that a store that
// fails fast is not dialled once a second for every such certificate.
func (f *fleetSource) noticeRetry(m *managed) time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.unshared {
		return storeRetryInterval
	}
	wait := min(storeRetryInterval<<min(m.shareTries, 6), maxShareRetry)
	m.shareTries++
	return wait
}

// flushShares shares, when the Stapler closes, the responses still waiting
// to be (a revocation pushed just before Close must reach the fleet), all
// within one store timeout; what cannot be is logged.
func (f *fleetSource) flushShares() {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(f.s.ctx), f.timeout)
	defer cancel()
	for _, m := range f.s.managedList() {
		m.mu.Lock()
		owed, held := m.unshared, m.entry
		m.mu.Unlock()
		if !owed || held == nil {
			continue
		}
		if ctx.Err() == nil {
			f.share(ctx, m, held)
			m.mu.Lock()
			owed = m.unshared
			m.mu.Unlock()
		}
		if owed {
			f.s.log.Warn("ocsp: closing with a response not shared with the fleet", "id", m.ID())
		}
	}
}

// shareLater tries sharing m's response again later, backing off, within
// most.
func (f *fleetSource) shareLater(m *managed, most time.Duration) {
	m.mu.Lock()
	m.unshared = true
	wait := storeRetryInterval << min(m.shareTries, 6)
	m.shareTries++
	m.mu.Unlock()
	f.notices.later(m, time.Now().Add(min(wait, most, maxShareRetry)))
}

// shareDone notes that m's response is shared, or needs no sharing.
func (f *fleetSource) shareDone(m *managed) {
	m.mu.Lock()
	m.unshared, m.shareTries, m.shareBlocked = false, 0, time.Time{}
	m.mu.Unlock()
}

// shareBlocked notes that m's lease was found held while sharing, and
// returns how long until it has been so (real time) for longer than
// limit: 0 when it has.
func (f *fleetSource) shareBlocked(m *managed, limit time.Duration) time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.shareBlocked.IsZero() {
		m.shareBlocked = time.Now()
	}
	return max(0, limit-time.Since(m.shareBlocked)+time.Millisecond)
}

// forget deletes m's shared response and state, which Remove stopped
// managing (after Close too: the deletion has a context of its own).
// Other servers still serving m keep stapling what they hold and store it
// anew at their next refresh. No write of this server's outlives the
// deletion: m is marked removed before forget takes f.writes, and
// writeShared checks the mark under it.
func (f *fleetSource) forget(m *managed) {
	s := f.s
	f.dropHealth(m)
	f.writes.Lock()
	defer f.writes.Unlock()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(s.ctx), f.timeout)
	defer cancel()
	for _, key := range []string{m.ID(), m.ID() + stateSuffix} {
		if err := f.store.Delete(ctx, key); err != nil {
			s.counters.storeFailed(StoreDelete)
			s.log.Warn("ocsp: deleting the stored values of a removed certificate failed", "id", m.ID(), "key", key, "err", err)
			return
		}
	}
}

// refreshAlone queries without the fleet, when the store cannot be reached.
func (f *fleetSource) refreshAlone(m *managed) {
	s := f.s
	f.queried(m, s.clock.Now())
	if o := s.query(s.ctx, m); !s.closing(m, o) {
		s.apply(m, o)
	}
}

// better reports whether a is a better answer than b to keep in the
// store: newer (by thisUpdate, then producedAt), or, at the same times, a
// revocation over a good answer (as supersedes installs them).
func better(a, b *record.Entry) bool {
	if sameTimes := a.ThisUpdate == b.ThisUpdate && a.ProducedAt == b.ProducedAt; sameTimes {
		return a.Status == record.Revoked && b.Status != record.Revoked
	}
	return newer(a, b)
}

// sameAnswer reports whether a and b are the same answer (by the
// responder's own times and status), whatever their fetch times say.
func sameAnswer(a, b *record.Entry) bool {
	return a != nil && b != nil && a.ThisUpdate == b.ThisUpdate && a.ProducedAt == b.ProducedAt && a.Status == b.Status
}

// vouchWindow is how long after it was produced a stored response is one
// the fleet could have stored now: the fleet queries each certificate at
// least every query_frequency while the responder answers, and retries
// for recovery_max_tries × recovery_frequency when it does not (plus the
// clock skew allowed).
func (f *fleetSource) vouchWindow() time.Duration {
	cfg := f.s.cfg.Load()
	return cfg.QueryInterval() + time.Duration(cfg.MaxTries())*cfg.RecoveryInterval() + f.s.opts.skew
}

// certificateHold is the revocation reason a CA may take back.
const certificateHold = 6

// unvouched reports whether shared, a stored response, verified, is one
// this server cannot vouch for: a good answer, while it knows nothing of
// the certificate of its own (no verified answer, no query of its own: a
// start, a restart, a server added to the fleet), produced longer ago than
// vouchWindow. Whoever can write the store could have written back an
// old good answer over a revocation every running server knows; such a
// server asks the responder first.
func (f *fleetSource) unvouched(m *managed, shared *record.Entry, now time.Time) bool {
	if shared == nil {
		return false
	}
	if shared.Status == record.Revoked && shared.RevocationReason != certificateHold {
		// A signed revocation is adopted whenever it was produced: no
		// replay of one makes a server staple an answer it should not
		// (a revoked certificate stays revoked), and a stale responder's
		// (or edge's) older good answer is then never installed over it.
		// Not a hold, which the CA may release (RFC 5280 5.3.1): an old
		// one is vouched for as a good answer is.
		return false
	}
	m.mu.Lock()
	own := m.known != nil || m.revokedFloor != 0 || m.ownAttempt
	m.mu.Unlock()
	produced := max(shared.ProducedAt, shared.ThisUpdate).Time()
	return !own && produced.Before(now.Add(-f.vouchWindow()))
}

// readShared reads and verifies the stored response (nil when absent or
// unusable: such a value is replaced by the next fetch) and the fleet state.
func (f *fleetSource) readShared(ctx context.Context, m *managed) (*record.Entry, *fleetState, error) {
	s := f.s
	var state *fleetState
	value, err := f.store.Get(ctx, m.ID()+stateSuffix)
	switch {
	case errors.Is(err, cache.ErrUnusableValue):
		// Of another type, or too large: written by no server; replaced
		// at the next query, as a state that does not parse.
		s.log.Warn("ocsp: ignoring the shared state; it will be replaced", "id", m.ID(), "err", err)
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
	value, err = f.store.Get(ctx, m.ID())
	if errors.Is(err, cache.ErrCacheMiss) {
		return nil, state, nil
	}
	if errors.Is(err, cache.ErrUnusableValue) {
		s.log.Warn("ocsp: ignoring the shared response; it will be replaced", "id", m.ID(), "err", err)
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

// writeShared stores what a server got: the fresh response, if any, and
// the fleet state. A lease holder passes its token, and its writes are
// fenced by it: once the lease is lost nothing is written, and the result
// is cache.ErrLeaseLost. The writes get a context of their own, so that a
// holder paused past its context's deadline does not report the store
// unreachable; base is what they are cut short by (the Stapler's context,
// or, for the shares made while it closes, one of their own).
func (f *fleetSource) writeShared(base context.Context, m *managed, next time.Time, fresh *record.Entry, token string) error {
	// A removed certificate writes nothing, whether Remove ran during the
	// query or from the status hook: checked under f.writes, which
	// forget holds while it deletes, so that no write lands after the
	// deletion.
	f.writes.RLock()
	defer f.writes.RUnlock()
	if m.removed.Load() {
		return nil
	}
	ctx, cancel := context.WithTimeout(base, f.timeout)
	defer cancel()
	start := time.Now()
	m.mu.Lock()
	state := fleetState{Tries: int(m.tries), Failed: m.failed, LastAttempt: int64(m.lastAttempt)}
	if m.lastErr != nil {
		state.LastError = m.lastErr.Error()
		if !next.IsZero() {
			state.Next = next.UnixNano()
		}
	}
	m.mu.Unlock()
	put := func(key string, value []byte) error {
		if token == "" {
			return f.store.Put(ctx, key, value)
		}
		return f.leaser.PutLeased(ctx, m.ID(), token, key, value)
	}
	var err error
	if fresh != nil {
		err = put(m.ID(), record.Encode(fresh.Raw, fresh.FetchedAt.Time()))
	}
	if err == nil {
		value, _ := json.Marshal(state)
		err = put(m.ID()+stateSuffix, value)
	}
	if errors.Is(err, cache.ErrLeaseLost) {
		return cache.ErrLeaseLost
	}
	if err != nil {
		f.failed(m, err, start, StoreWrite)
	}
	return err
}

// noticeWorkers is how many certificates' notices are read at once, so
// that reads of keys that hang (a Redis Cluster master that does not
// answer) hold up no others.
const noticeWorkers = 8

// resyncInterval is the least time between two resyncs: the store's
// reports of missed changes are coalesced, at most one resync running per
// interval and one pending after it, so that nothing that makes the store
// lose its subscription costs more than one read of every certificate's
// keys per interval.
const resyncInterval = 10 * time.Second

// run adopts the changes other servers announce, until ctx ends.
func (f *fleetSource) run(ctx context.Context) {
	var wg sync.WaitGroup
	for range noticeWorkers {
		wg.Go(func() { f.adoptNotified(ctx) })
	}
	defer f.flushShares()
	defer wg.Wait()
	n, ok := f.store.(cache.Notifier)
	if !ok {
		<-ctx.Done() // the workers still share what this server gets
		return
	}
	n.Subscribe(ctx, func(key string) {
		if key == "" {
			// The store may have missed changes (its subscription was
			// lost and is back): read every certificate's keys again.
			f.resync(ctx)
			return
		}
		if m, err := f.s.lookup(strings.TrimSuffix(key, stateSuffix)); err == nil {
			f.notices.add(m)
		}
	})
}

// resync queues every certificate for the notice workers, behind the
// certificates announced one by one, as if a change had been announced
// for each: what the fleet stored while notifications were lost is
// adopted now rather than at the next refresh. Within resyncInterval of
// the last, it is planned for the interval's end instead, once.
func (f *fleetSource) resync(ctx context.Context) {
	r := &f.resyncs
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.first {
		// The subscription is live: what was announced before it (while
		// this server was reading the store at its start) is read now.
		r.first, r.last = true, time.Now()
		f.queueAll(false)
		return
	}
	if r.pending {
		return
	}
	now := time.Now()
	if wait := r.last.Add(resyncInterval).Sub(now); wait > 0 {
		r.pending = true
		time.AfterFunc(wait, func() {
			r.mu.Lock()
			r.pending, r.last = false, time.Now()
			r.mu.Unlock()
			if ctx.Err() == nil {
				f.queueAll(true)
			}
		})
		return
	}
	r.last = now
	f.queueAll(true)
}

// queueAll queues every certificate for the notice workers (resync);
// missed says whether the store lost changes (logged) rather than having
// just subscribed.
func (f *fleetSource) queueAll(missed bool) {
	s := f.s
	s.mu.Lock()
	all := append([]*managed(nil), s.order...)
	s.mu.Unlock()
	n := 0
	for _, m := range all {
		if s.active(m) {
			f.notices.addBulk(m)
			n++
		}
	}
	if missed {
		s.log.Info("ocsp: notifications from the fleet may have been missed; reading the shared store again", "certificates", n)
	} else {
		s.log.Debug("ocsp: listening to the fleet's changes; reading the shared store for those announced before", "certificates", n)
	}
}

// adoptNotified is a worker that adopts what the fleet stored for each
// certificate it announced a change for: a newer response, or the fleet's
// recovery state (and with it the fleet's plan). It never queries, and
// plans a query only when it adopted something. A read that fails is
// tried again later (storeRetryInterval): a notification is never dropped
// while the certificate is managed. noticeWorkers of them run, never two
// on one certificate.
func (f *fleetSource) adoptNotified(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		m, wait := f.notices.take(time.Now())
		if m == nil {
			var retry <-chan time.Time
			if wait > 0 {
				timer.Reset(wait)
				retry = timer.C
			}
			select {
			case <-f.notices.wake:
			case <-retry:
			case <-ctx.Done():
				return
			}
			continue
		}
		if !f.adoptOne(ctx, m) {
			return
		}
	}
}

// adoptOne adopts what the fleet stored for m; false when ctx ended.
func (f *fleetSource) adoptOne(ctx context.Context, m *managed) bool {
	s := f.s
	defer f.notices.done(m)
	if !s.active(m) {
		f.dropHealth(m)
		return true // read again if it comes back
	}
	if f.isDown(m) {
		f.notices.later(m, time.Now().Add(f.noticeRetry(m)))
		return true
	}
	rctx, cancel := context.WithTimeout(ctx, f.timeout)
	start := time.Now()
	shared, state, err := f.readShared(rctx, m)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return false
		}
		f.failed(m, err, start, StoreRead)
		f.notices.later(m, time.Now().Add(f.noticeRetry(m)))
		return true
	}
	f.ok(m)
	m.mu.Lock()
	base := m.entry
	m.mu.Unlock()
	now := s.clock.Now()
	stored := shared
	if f.unvouched(m, shared, now) {
		shared = nil // its own refresh asks the responder first: now, when it has no staple
		if base == nil {
			m.mu.Lock()
			if m.entry == nil { // waiting on another server's lease: not for its look
				s.sched.Hasten(m, now)
			}
			m.mu.Unlock()
		}
	}
	if sameAnswer(shared, base) && f.overdue(m, now, s.cfg.Load().QueryInterval()) {
		shared = nil // a fetch time announced again is no news (see refresh)
	}
	s.adopt(m, shared, state, now)
	f.noteFresh(m, base, now)
	f.shareIfNewer(m, stored)
	return true
}

// shareIfNewer stores m's staple when this server got it itself (a query
// of its own, a push, a Test) and it is better than shared, what the store
// holds: a response fetched alone while the store could not be reached
// (or was too slow for a first fetch) reaches the rest of the fleet once it
// can be, instead of the fleet stapling two responses until the next
// refresh; so does a pushed response, or a Test's. Under the lease, and
// only over an older response (share).
func (f *fleetSource) shareIfNewer(m *managed, shared *record.Entry) {
	m.mu.Lock()
	held := m.entry
	unshared := m.unshared
	own := m.ownAttempt && held != nil && !held.Unverified || unshared
	first := m.shareTries == 0
	m.mu.Unlock()
	if held == nil || !own {
		return
	}
	if shared != nil && !better(held, shared) {
		if unshared {
			f.shareDone(m)
		}
		return
	}
	if first {
		f.s.log.Info("ocsp: the store holds an older response than this server's; sharing ours", "id", m.ID())
	}
	f.share(f.s.ctx, m, held)
}

// notices is the set of certificates with a change announced and not yet
// adopted: each is adopted once however often it was announced meanwhile,
// and none is dropped. Those announced one by one go first, then those
// whose store read failed, in retries, oldest first, once their time
// (real time: it paces store attempts) has come, then those a resync
// queued (bulk). A certificate being read (busy) is not handed to another
// worker: one announced meanwhile is queued again when the read is done.
type notices struct {
	mu      sync.Mutex        // guards everything below
	set     map[*managed]bool // queued: in queue, bulk or retries
	busy    map[*managed]bool
	queue   []*managed
	bulk    []*managed
	retries []retry
	wake    chan struct{}
}

// retry is a notice to adopt again at a time (Unix nanoseconds).
type retry struct {
	m  *managed
	at int64
}

func (n *notices) add(m *managed) {
	n.mu.Lock()
	if n.set[m] {
		// Queued by a resync: announced now, it goes first.
		for i, b := range n.bulk {
			if b == m {
				n.bulk = append(n.bulk[:i], n.bulk[i+1:]...)
				n.queue = append(n.queue, m)
				break
			}
		}
	} else {
		n.set[m] = true
		n.queue = append(n.queue, m)
	}
	n.mu.Unlock()
	n.signal()
}

// addBulk queues m behind the certificates announced one by one.
func (n *notices) addBulk(m *managed) {
	n.mu.Lock()
	if !n.set[m] {
		n.set[m] = true
		n.bulk = append(n.bulk, m)
	}
	n.mu.Unlock()
	n.signal()
}

// later queues m to be adopted again at t, unless it is queued already.
func (n *notices) later(m *managed, t time.Time) {
	n.mu.Lock()
	if !n.set[m] {
		n.set[m] = true
		n.retries = append(n.retries, retry{m, t.UnixNano()})
	}
	n.mu.Unlock()
	n.signal()
}

// done notes that the worker that took m is done with it.
func (n *notices) done(m *managed) {
	n.mu.Lock()
	delete(n.busy, m)
	n.mu.Unlock()
	n.signal()
}

func (n *notices) signal() {
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// take returns the certificate announced first, or else the oldest retry
// due at now, or else the first a resync queued, or nil and how long until
// the oldest retry (0 when none). Retries are queued at now plus one
// interval, so the oldest is due first. A certificate another worker is
// reading stays queued. The caller calls done with what it took.
func (n *notices) take(now time.Time) (*managed, time.Duration) {
	n.mu.Lock()
	defer n.mu.Unlock()
	m, wait := n.next(now)
	if m != nil {
		delete(n.set, m)
		n.busy[m] = true
		if len(n.queue)+len(n.bulk) > 0 {
			n.signal() // more for the other workers
		}
	}
	return m, wait
}

// next pops what take returns. Called with n.mu held.
func (n *notices) next(now time.Time) (*managed, time.Duration) {
	for i, m := range n.queue {
		if !n.busy[m] {
			n.queue = append(n.queue[:i], n.queue[i+1:]...)
			return m, 0
		}
	}
	var wait time.Duration
	for i, r := range n.retries {
		if w := time.Duration(r.at - now.UnixNano()); w > 0 {
			if i == 0 {
				wait = w
			}
			break
		}
		if !n.busy[r.m] {
			n.retries = append(n.retries[:i], n.retries[i+1:]...)
			return r.m, 0
		}
	}
	for i, m := range n.bulk {
		if !n.busy[m] {
			n.bulk = append(n.bulk[:i], n.bulk[i+1:]...)
			return m, 0
		}
	}
	if wait == 0 && len(n.retries) > 0 {
		wait = storeRetryInterval // all due ones are busy: look again
	}
	return nil, wait
}

// storeRetryInterval is how long a server that found a certificate's keys
// in the shared store unreachable queries the responder on its own for
// that certificate before it tries the store again: coordination resumes
// within this long of the store coming back.
const storeRetryInterval = time.Second

// storeHealth is the store's health per certificate: the certificates
// whose last store operation failed, each retried on its own. One store
// can fail for some keys only (a Redis Cluster master down holds its slots
// only), so a failure never stops the other certificates from
// coordinating. The outage is logged once, when the first certificate
// fails, and its end once, when the last is back.
//
// A store that hangs is another matter: each operation would hold a
// worker for the store's timeout, and the refreshes of many certificates
// would queue behind it. So when operations time out twice in a row and
// none has succeeded for a store timeout, the whole store is taken as down
// (hung): every certificate goes without it, and one operation at a time
// probes it (every storeRetryInterval, given a store timeout to answer)
// until one succeeds. A store that fails fast for some keys, or hangs for
// some while others answer, never trips it.
type storeHealth struct {
	mu      sync.Mutex // guards everything below
	failing map[*managed]storeFault
	// prune is the size of failing at which certificates no longer managed
	// are swept from it.
	prune int

	// blocked is, for the certificates whose lease others hold, since
	// when (see leaseStuck).
	blocked map[*managed]leaseBlock
	// verified is, for each certificate, when this server last queried
	// the responder or saw a newer response (see overdue).
	verified map[*managed]time.Time

	lastOK  time.Time // when an operation last succeeded
	hangs   int       // operations timed out since then, in a row
	hung    error     // set while the store is taken as hung: why
	probeAt time.Time // while hung: when the next operation may probe it
}

// storeFault is why a certificate's store operation failed, and when to
// try the store again for it (real time: it paces network attempts, not
// OCSP schedules).
type storeFault struct {
	err     error
	retryAt time.Time
}

// isDown reports whether m's keys were unreachable at the last try and m
// is not yet due for another.
func (f *fleetSource) isDown(m *managed) bool {
	h := &f.health
	h.mu.Lock()
	defer h.mu.Unlock()
	now := time.Now()
	if h.hung != nil {
		if now.Before(h.probeAt) {
			return true
		}
		// This caller probes; the others wait for its answer (or for its
		// store timeout, and a retry interval more).
		h.probeAt = now.Add(f.timeout + storeRetryInterval)
		return false
	}
	fault, down := h.failing[m]
	return down && now.Before(fault.retryAt)
}

// failed notes that m's keys could not be reached by an operation begun
// at start (real time), logging the outage once (when no other
// certificate was failing). A timeout counts towards tripping the whole
// store's breaker only for a certificate not failing already, and when no
// operation succeeded since it began: one Redis Cluster master gone times
// out the reads of its certificates while the others' succeed, and those
// go on coordinating.
func (f *fleetSource) failed(m *managed, err error, start time.Time, op StoreOp) {
	f.s.counters.storeFailed(op)
	h := &f.health
	h.mu.Lock()
	first := len(h.failing) == 0 && h.hung == nil
	now := time.Now()
	_, already := h.failing[m]
	h.failing[m] = storeFault{err: err, retryAt: now.Add(storeRetryInterval)}
	// Only a certificate newly failing counts: the retries of the keys of
	// one Redis Cluster master that hangs, for as long as it hangs, say
	// nothing of the others' (which no refresh may touch meanwhile).
	if isTimeout(err) && !already && !h.lastOK.After(start) {
		h.hangs++
		if h.hangs >= 2 && now.Sub(h.lastOK) > f.timeout {
			h.hung = err
			h.probeAt = now.Add(storeRetryInterval)
		}
	}
	if len(h.failing) >= h.prune {
		for other := range h.failing {
			if other.removed.Load() {
				delete(h.failing, other)
			}
		}
		h.prune = 2*len(h.failing) + 64
	}
	h.mu.Unlock()
	if first {
		f.s.log.Warn("ocsp: the shared store is unreachable; querying the responder on our own for the certificates it cannot serve until it is back", "id", m.ID(), "err", err)
	}
}

// ok notes that m's keys were reached, logging the outage's end once the
// last failing certificate is back.
func (f *fleetSource) ok(m *managed) {
	h := &f.health
	h.mu.Lock()
	_, was := h.failing[m]
	delete(h.failing, m)
	was = was || h.hung != nil
	h.lastOK, h.hangs, h.hung = time.Now(), 0, nil
	back := was && len(h.failing) == 0
	h.mu.Unlock()
	if back {
		f.s.log.Info("ocsp: the shared store is back; coordinating with the fleet again")
	}
}

// dropHealth drops m (no longer managed) from the failing certificates.
func (f *fleetSource) dropHealth(m *managed) {
	h := &f.health
	h.mu.Lock()
	delete(h.failing, m)
	delete(h.blocked, m)
	delete(h.verified, m)
	h.mu.Unlock()
}

// down reports whether any certificate's keys could not be reached at
// the last try, or the whole store is taken for hung.
func (f *fleetSource) down() bool {
	h := &f.health
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.hung != nil || len(h.failing) > 0
}

func (f *fleetSource) storeError(m *managed) error {
	h := &f.health
	h.mu.Lock()
	defer h.mu.Unlock()
	if fault, down := h.failing[m]; down {
		return fault.err
	}
	return h.hung
}

// isTimeout reports whether err is a timeout: the context's deadline, or
// a network timeout (a client's own read timeout).
func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &t) && t.Timeout()
}
