package stapler

import (
	"context"
	"time"

	"github.com/staplerkit/ocsp/cache"
	"github.com/staplerkit/ocsp/config"
	"github.com/staplerkit/ocsp/internal/fleet"
	"github.com/staplerkit/ocsp/internal/record"
)

// The fleet mode, used when the store is a cache.Leaser shared by several
// servers: the protocol (leases, the shared state, adoption, sharing,
// notifications, store health) is internal/fleet's; what it asks of the
// Stapler (queries, verification, apply and adopt, the next query, the
// clock, the logger, the counters) is fleetHost's, below.

// fleetSource is the fleet mode: the source the Stapler's refresh calls.
type fleetSource struct {
	f *fleet.Source[*managed, *outcome]
}

func newFleetSource(s *Stapler, store cache.Store, leaser cache.Leaser) *fleetSource {
	timeout := s.opts.storeTimeout
	if timeout <= 0 {
		timeout = storeTimeout
	}
	return &fleetSource{fleet.New(s.ctx, fleetHost{s}, store, leaser,
		fleet.Options{Timeout: timeout, Skew: s.opts.skew, Logger: s.log})}
}

func (src *fleetSource) refresh(m *managed) { src.f.Refresh(m) }
func (src *fleetSource) recorded(m *managed, next time.Time, installed *record.Entry) {
	src.f.Recorded(m, next, installed)
}
func (src *fleetSource) run(ctx context.Context)     { src.f.Run(ctx) }
func (src *fleetSource) storeError(m *managed) error { return src.f.StoreError(m) }
func (src *fleetSource) down() bool                  { return src.f.Down() }
func (src *fleetSource) forget(m *managed)           { src.f.Forget(m) }

// fleetError is an error reported by another server of the fleet.
type fleetError string

func (e fleetError) Error() string { return string(e) }

// fleetHost is the Stapler as the fleet sees it (fleet.Host).
type fleetHost struct{ s *Stapler }

var _ fleet.Host[*managed, *outcome] = fleetHost{}

// storeOpOf names the fleet's store operations for the metrics.
var storeOpOf = [...]StoreOp{fleet.OpRead: StoreRead, fleet.OpWrite: StoreWrite, fleet.OpLease: StoreLease, fleet.OpDelete: StoreDelete}

func (h fleetHost) Now() time.Time                   { return h.s.clock.Now() }
func (h fleetHost) Config() *config.OCSP             { return h.s.cfg.Load() }
func (h fleetHost) ColdWait() time.Duration          { return h.s.coldWait() }
func (h fleetHost) StoreFailed(op fleet.Op)          { h.s.counters.storeFailed(storeOpOf[op]) }
func (h fleetHost) Certificates() []*managed         { return h.s.managedList() }
func (h fleetHost) Active(m *managed) bool           { return h.s.active(m) }
func (h fleetHost) Schedule(m *managed, t time.Time) { h.s.sched.Schedule(m, t) }

func (h fleetHost) Lookup(id string) (*managed, bool) {
	m, err := h.s.lookup(id)
	return m, err == nil
}

func (h fleetHost) Held(m *managed) *record.Entry {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.entry
}

func (h fleetHost) Due(m *managed) (*record.Entry, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	// A notification adopted a result after m fell due, and planned the
	// next query from it: checked under m.mu, where adopt plans.
	return m.entry, h.s.sched.Planned(m)
}

func (h fleetHost) Knows(m *managed) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.known != nil || m.revokedFloor != 0 || m.ownAttempt
}

func (h fleetHost) Recovery(m *managed) fleet.Recovery {
	m.mu.Lock()
	defer m.mu.Unlock()
	return fleet.Recovery{Tries: int(m.tries), Failed: m.failed, LastAttempt: int64(m.lastAttempt), Err: m.lastErr}
}

func (h fleetHost) Sharing(m *managed, fn func(sh *fleet.Share, held *record.Entry, queried bool)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	fn(&m.share, m.entry, m.ownAttempt)
}

func (h fleetHost) ScheduleUnlessReplaced(m *managed, base *record.Entry, t time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.entry == base {
		h.s.sched.Schedule(m, t)
	}
}

func (h fleetHost) HastenFirst(m *managed, now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.entry == nil {
		h.s.sched.Hasten(m, now)
	}
}

func (fleetHost) BeforeExpiry(held *record.Entry, now, next time.Time) time.Time {
	return beforeExpiry(held, now, next)
}

func (h fleetHost) Query(ctx context.Context, m *managed) (*outcome, bool) {
	o := h.s.query(ctx, m)
	return o, !h.s.closing(m, o)
}

func (h fleetHost) ContinueCount(m *managed, tries int, failed bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.tries, m.failed = int32(tries), failed
}

func (h fleetHost) Apply(m *managed, o *outcome) (time.Time, *record.Entry) { return h.s.apply(m, o) }

func (h fleetHost) Adopt(m *managed, shared *record.Entry, state *fleet.State, now time.Time) bool {
	return h.s.adopt(m, shared, state, now)
}

func (h fleetHost) KeepEarlierAttempt(m *managed, at int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lastAttempt = min(m.lastAttempt, record.Instant(at))
}

func (h fleetHost) Verify(ctx context.Context, m *managed, value []byte) (*record.Entry, error) {
	return h.s.loadStored(ctx, m, value)
}
