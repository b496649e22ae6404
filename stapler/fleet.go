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
}

func newFleetSource(s *Stapler, store cache.Store, leaser cache.Leaser) *fleetSource {
	timeout := s.opts.storeTimeout
	if timeout <= 0 {
		timeout = storeTimeout
	}
	return &fleetSource{s: s, store: store, leaser: leaser, timeout: timeout,
		health:  storeHealth{failing: map[*managed]storeFault{}},
		notices: notices{set: map[*managed]bool{}, wake: make(chan struct{}, 1)}}
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
	replanned := s.sched.planned(m)
	m.mu.Unlock()
	if replanned {
		return
	}
	replaced := func() bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		return m.entry != base
	}
	shared, state, err := f.readShared(ctx, m)
	if err != nil {
		f.failed(m, err)
		f.refreshAlone(m)
		return
	}
	f.ok(m)
	now := s.clock.Now()
	if s.adopt(m, shared, state, now) || replaced() {
		return
	}
	if state != nil && state.Next > now.UnixNano() && !beforeExpiry(base, now, time.Unix(0, state.Next)).Before(time.Unix(0, state.Next)) {
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
	token, ok, err := f.leaser.Lease(ctx, m.ID(), leaseTTL(cfg.Timeout()))
	if err != nil {
		f.failed(m, err)
		f.refreshAlone(m)
		return
	}
	if !ok {
		// Another server is querying: look again after its lease, unless a
		// notification has meanwhile brought its result (and planned the
		// next query from it). Checked and planned under m.mu, as adopt
		// plans, so that neither plan overwrites the other's newer one.
		m.mu.Lock()
		if m.entry == base {
			s.sched.schedule(m, now.Add(leaseWait(cfg.Timeout())))
		}
		m.mu.Unlock()
		return
	}
	defer func() {
		// Released even when closing, so that a clean shutdown hands over
		// at once; bounded, so that a hung store cannot stall Close.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), f.timeout)
		defer cancel()
		f.leaser.Release(rctx, m.ID(), token)
	}()
	if shared, state, err = f.readShared(ctx, m); err == nil {
		if s.adopt(m, shared, state, now) || replaced() {
			return
		}
		if state != nil && state.LastAttempt > attempted {
			// Another server just tried: its plan is ours (adopt followed
			// it), or, when it planned none, look again now.
			if state.Next <= now.UnixNano() {
				s.sched.schedule(m, now)
			}
			return
		}
	}
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
	if err := f.writeShared(m, next, installed, token); errors.Is(err, cache.ErrLeaseLost) {
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

// recorded shares a Test's result with the fleet (unfenced: no lease is
// held for a Test).
func (f *fleetSource) recorded(m *managed, next time.Time, installed *record.Entry) {
	f.writeShared(m, next, installed, "")
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
			s.log.Warn("ocsp: deleting the stored values of a removed certificate failed", "id", m.ID(), "key", key, "err", err)
			return
		}
	}
}

// refreshAlone queries without the fleet, when the store cannot be reached.
func (f *fleetSource) refreshAlone(m *managed) {
	s := f.s
	if o := s.query(s.ctx, m); !s.closing(m, o) {
		s.apply(m, o)
	}
}

// readShared reads and verifies the stored response (nil when absent or
// unusable: such a value is replaced by the next fetch) and the fleet state.
func (f *fleetSource) readShared(ctx context.Context, m *managed) (*record.Entry, *fleetState, error) {
	s := f.s
	var state *fleetState
	value, err := f.store.Get(ctx, m.ID()+stateSuffix)
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
	value, err = f.store.Get(ctx, m.ID())
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

// writeShared stores what a server got: the fresh response, if any, and
// the fleet state. A lease holder passes its token, and its writes are
// fenced by it: once the lease is lost nothing is written, and the result
// is cache.ErrLeaseLost. The writes get a context of their own, so that a
// holder paused past its context's deadline does not report the store
// unreachable.
func (f *fleetSource) writeShared(m *managed, next time.Time, fresh *record.Entry, token string) error {
	s := f.s
	// A removed certificate writes nothing, whether Remove ran during the
	// query or from the status hook: checked under f.writes, which
	// forget holds while it deletes, so that no write lands after the
	// deletion.
	f.writes.RLock()
	defer f.writes.RUnlock()
	if m.removed.Load() {
		return nil
	}
	ctx, cancel := context.WithTimeout(s.ctx, f.timeout)
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
		f.failed(m, err)
	}
	return err
}

// run adopts the changes other servers announce, until ctx ends.
func (f *fleetSource) run(ctx context.Context) {
	n, ok := f.store.(cache.Notifier)
	if !ok {
		return
	}
	var wg sync.WaitGroup
	wg.Go(func() { f.adoptNotified(ctx) })
	n.Subscribe(ctx, func(key string) {
		if key == "" {
			// The store may have missed changes (its subscription was
			// lost and is back): read every certificate's keys again.
			f.resync()
			return
		}
		if m, err := f.s.lookup(strings.TrimSuffix(key, stateSuffix)); err == nil {
			f.notices.add(m)
		}
	})
	wg.Wait()
}

// resync queues every certificate for the notice worker, as if a change
// had been announced for each: what the fleet stored while notifications
// were lost is adopted now rather than at the next refresh.
func (f *fleetSource) resync() {
	s := f.s
	s.mu.Lock()
	all := append([]*managed(nil), s.order...)
	s.mu.Unlock()
	n := 0
	for _, m := range all {
		if s.active(m) {
			f.notices.add(m)
			n++
		}
	}
	s.log.Info("ocsp: notifications from the fleet may have been missed; reading the shared store again", "certificates", n)
}

// adoptNotified is the worker that adopts what the fleet stored for each
// certificate it announced a change for: a newer response, or the fleet's
// recovery state (and with it the fleet's plan). It never queries, and
// plans a query only when it adopted something. A read that fails is
// tried again later (storeRetryInterval): a notification is never dropped
// while the certificate is managed.
func (f *fleetSource) adoptNotified(ctx context.Context) {
	s := f.s
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
		if !s.active(m) {
			f.dropHealth(m)
			continue // read again if it comes back
		}
		if f.isDown(m) {
			f.notices.later(m, time.Now().Add(storeRetryInterval))
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, f.timeout)
		shared, state, err := f.readShared(rctx, m)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			f.failed(m, err)
			f.notices.later(m, time.Now().Add(storeRetryInterval))
			continue
		}
		f.ok(m)
		s.adopt(m, shared, state, s.clock.Now())
	}
}

// notices is the set of certificates with a change announced and not yet
// adopted: each is adopted once however often it was announced meanwhile,
// and none is dropped. Those whose store read failed wait in retries,
// oldest first, until their time (real time: it paces store attempts).
type notices struct {
	mu      sync.Mutex // guards set, queue and retries
	set     map[*managed]bool
	queue   []*managed
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
	if !n.set[m] {
		n.set[m] = true
		n.queue = append(n.queue, m)
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

func (n *notices) signal() {
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// take returns the certificate announced first, or else the oldest retry
// due at now, or nil and how long until the oldest retry (0 when none).
// Retries are queued at now plus one interval, so the oldest is due first.
func (n *notices) take(now time.Time) (*managed, time.Duration) {
	n.mu.Lock()
	defer n.mu.Unlock()
	var m *managed
	switch {
	case len(n.queue) > 0:
		m = n.queue[0]
		n.queue[0] = nil
		n.queue = n.queue[1:]
	case len(n.retries) > 0:
		if wait := time.Duration(n.retries[0].at - now.UnixNano()); wait > 0 {
			return nil, wait
		}
		m = n.retries[0].m
		n.retries[0] = retry{}
		n.retries = n.retries[1:]
	default:
		return nil, 0
	}
	delete(n.set, m)
	return m, 0
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

// failed notes that m's keys could not be reached, logging the outage
// once (when no other certificate was failing).
func (f *fleetSource) failed(m *managed, err error) {
	h := &f.health
	h.mu.Lock()
	first := len(h.failing) == 0 && h.hung == nil
	now := time.Now()
	h.failing[m] = storeFault{err: err, retryAt: now.Add(storeRetryInterval)}
	if errors.Is(err, context.DeadlineExceeded) {
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
	h.mu.Unlock()
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
