package fleet

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/staplerkit/ocsp/cache"
	"github.com/staplerkit/ocsp/config"
	"github.com/staplerkit/ocsp/internal/record"
)

// Cert is the host's handle of a certificate: the fleet keys its
// bookkeeping by it, and knows of it only its ID and whether the host
// still manages it.
type Cert interface {
	comparable
	// ID is the certificate's ID: its keys in the store are ID and
	// ID+".state".
	ID() string
	// Removed reports whether the host stopped managing the certificate.
	Removed() bool
}

// Host is what the fleet needs of the Stapler that runs it, for
// certificates C and query outcomes O (opaque to the fleet: what Query
// returns, Apply takes). Methods that say "under c's lock" do what they do
// atomically with the host's other changes of c; none of them calls back
// into the fleet.
type Host[C Cert, O any] interface {
	// Now is the scheduling clock's time.
	Now() time.Time
	// Config is the OCSP configuration in force.
	Config() *config.OCSP
	// ColdWait is how long a handshake waits for a certificate's first
	// staple.
	ColdWait() time.Duration
	// StoreFailed counts a failed store operation.
	StoreFailed(op Op)

	// Lookup returns the managed certificate with this ID.
	Lookup(id string) (C, bool)
	// Certificates returns the managed certificates, in the order they
	// were found.
	Certificates() []C
	// Active reports whether c is to be queried (OCSP and stapling on, a
	// responder known, still managed).
	Active(c C) bool

	// Held returns, under c's lock, the response c holds (nil when none).
	Held(c C) *record.Entry
	// Due returns, under c's lock, the response c holds and whether its
	// next query has been planned again since it fell due.
	Due(c C) (held *record.Entry, planned bool)
	// Knows reports, under c's lock, whether this server knows c of its
	// own: a verified answer, a verified revocation, or a query of its own.
	Knows(c C) bool
	// Recovery returns, under c's lock, c's recovery as this server holds
	// it.
	Recovery(c C) Recovery
	// Sharing calls fn under c's lock with c's share bookkeeping (kept
	// with c, for the fleet alone to change), the response c holds and
	// whether this server queried the responder for c itself. fn must
	// not call the host.
	Sharing(c C, fn func(sh *Share, held *record.Entry, queried bool))

	// Schedule plans c's next query at t.
	Schedule(c C, t time.Time)
	// ScheduleUnlessReplaced plans, under c's lock, c's next query at t
	// unless the response c holds is no longer base.
	ScheduleUnlessReplaced(c C, base *record.Entry, t time.Time)
	// HastenFirst moves, under c's lock, c's next query to now when c
	// holds no response.
	HastenFirst(c C, now time.Time)
	// BeforeExpiry moves a retry planned at next to before held expires,
	// as the host plans retries.
	BeforeExpiry(held *record.Entry, now, next time.Time) time.Time

	// Query asks the responder for c's response; ok is false when it
	// failed because the host is closing (the refresh then ends).
	Query(ctx context.Context, c C) (o O, ok bool)
	// ContinueCount sets, under c's lock, c's recovery tries and failed
	// flag to the fleet's, before Apply counts the query's outcome.
	ContinueCount(c C, tries int, failed bool)
	// Apply records o, a query's outcome, for c: it returns when c is
	// queried next and the response it installed (nil when none).
	Apply(c C, o O) (next time.Time, installed *record.Entry)
	// Adopt installs shared, a response read from the store and verified
	// (nil when none), and state, the fleet's (nil when none), without
	// counting a query, and plans c's next query from them; it reports
	// whether shared was newer than what c holds.
	Adopt(c C, shared *record.Entry, state *State, now time.Time) bool
	// KeepEarlierAttempt sets, under c's lock, c's last attempt to at
	// (Unix nanoseconds) when that is earlier.
	KeepEarlierAttempt(c C, at int64)
	// Verify decodes a stored response for c and verifies it as if just
	// fetched: the store is never trusted.
	Verify(ctx context.Context, c C, value []byte) (*record.Entry, error)
}

// Recovery is a certificate's recovery as a server holds it.
type Recovery struct {
	Tries       int   // failed attempts in the current recovery
	Failed      bool  // the tries ran out since the last success
	LastAttempt int64 // Unix nanoseconds
	Err         error // the last attempt's error; nil after a success
}

// Op names an operation on the store, for the host's metrics.
type Op int

// The store operations the fleet counts when they fail.
const (
	OpRead   Op = iota // a read of a certificate's keys
	OpWrite            // a write of a certificate's keys
	OpLease            // a certificate's lease
	OpDelete           // the deletion of a removed certificate's keys
)

// Options configures a Source.
type Options struct {
	// Timeout bounds each store operation; it must be positive.
	Timeout time.Duration
	// Skew is the clock skew allowed between the servers and the
	// responder.
	Skew time.Duration
	// Logger receives the fleet's logs.
	Logger *slog.Logger
}

// Source is the mode of a host with a store shared by a fleet (a
// cache.Leaser). A due refresh reads what the fleet stored and adopts it
// when it is newer; when the fleet has nothing newer and no retry
// planned, it takes the certificate's lease, looks once more, queries,
// and shares what it installed, fenced by the lease. While a certificate's
// keys cannot be reached, that certificate queries on its own; the others,
// whose keys may live elsewhere (another Redis Cluster master), go on
// coordinating. Change notifications (cache.Notifier) go to workers of
// their own, which adopt what the fleet stored: they never pass through
// the host's scheduling, and plan a query only when they adopted
// something.
type Source[C Cert, O any] struct {
	host   Host[C, O]
	ctx    context.Context // the host's life: cancelled when it closes
	log    *slog.Logger
	skew   time.Duration
	store  cache.Store
	leaser cache.Leaser

	// writes is held for reading by every write of a certificate's
	// values, and for writing by forget while it deletes them.
	writes sync.RWMutex

	timeout time.Duration  // bounds each store operation
	health  storeHealth[C] // the certificates whose store operations fail
	notices notices[C]     // certificates the fleet announced a change for

	resyncs struct {
		mu      sync.Mutex
		last    time.Time // when the last resync ran
		pending bool      // one is planned
		first   bool      // the first was asked for (the subscription is live)
	}
}

// New returns the fleet mode of host over store, whose leases are leaser
// (the same store). ctx is the host's life: the queries and writes it
// begins end with it.
func New[C Cert, O any](ctx context.Context, host Host[C, O], store cache.Store, leaser cache.Leaser, opts Options) *Source[C, O] {
	return &Source[C, O]{host: host, ctx: ctx, log: opts.Logger, skew: opts.Skew, store: store, leaser: leaser, timeout: opts.Timeout,
		health:  storeHealth[C]{failing: map[C]storeFault{}, blocked: map[C]leaseBlock{}, verified: map[C]time.Time{}},
		notices: notices[C]{set: map[C]bool{}, busy: map[C]bool{}, wake: make(chan struct{}, 1)}}
}

// Refresh runs a due refresh of c, an active certificate with an
// unexpired leaf: it adopts what the fleet stored, or takes the lease and
// queries, or queries alone while c's keys cannot be reached.
func (f *Source[C, O]) Refresh(c C) { f.refresh(c) }

// Recorded shares with the fleet the outcome of a query for c applied
// outside a refresh (a Test's, or a pushed response): next is when c is
// queried next, installed the response installed (nil when none).
func (f *Source[C, O]) Recorded(c C, next time.Time, installed *record.Entry) {
	f.recorded(c, next, installed)
}

// Run adopts the changes other servers announce, and shares what this
// server got outside a refresh, until ctx ends; then it shares what is
// still waiting to be, within one store timeout.
func (f *Source[C, O]) Run(ctx context.Context) { f.run(ctx) }

// StoreError says why c's keys in the store cannot be reached now (nil
// when they can).
func (f *Source[C, O]) StoreError(c C) error { return f.storeError(c) }

// Down reports whether any certificate's keys could not be reached at the
// last try, or the whole store is taken for hung.
func (f *Source[C, O]) Down() bool { return f.down() }

// Forget deletes c's stored response and state once the host stopped
// managing c: best effort, bounded in time, logged on failure.
func (f *Source[C, O]) Forget(c C) { f.forget(c) }

// forget deletes m's shared response and state, which Remove stopped
// managing (after Close too: the deletion has a context of its own).
// Other servers still serving m keep stapling what they hold and store it
// anew at their next refresh. No write of this server's outlives the
// deletion: m is marked removed before forget takes f.writes, and
// writeShared checks the mark under it.
func (f *Source[C, O]) forget(m C) {
	f.dropHealth(m)
	f.writes.Lock()
	defer f.writes.Unlock()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(f.ctx), f.timeout)
	defer cancel()
	for _, key := range []string{m.ID(), m.ID() + stateSuffix} {
		if err := f.store.Delete(ctx, key); err != nil {
			f.host.StoreFailed(OpDelete)
			f.log.Warn("ocsp: deleting the stored values of a removed certificate failed", "id", m.ID(), "key", key, "err", err)
			return
		}
	}
}
