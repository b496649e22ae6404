package fleet

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/staplerkit/ocsp/cache"
	"github.com/staplerkit/ocsp/config"
	"github.com/staplerkit/ocsp/internal/record"
)

// testCert is a certificate as a test host hands it to the fleet.
type testCert struct {
	id      string
	removed bool
}

func (c *testCert) ID() string    { return c.id }
func (c *testCert) Removed() bool { return c.removed }

// testOutcome is a test host's query outcome (no test queries).
type testOutcome struct{}

// testHost is a host with one configuration and its certificates' share
// bookkeeping, whose clock is fixed; what a test does not drive panics.
type testHost struct {
	cfg   config.OCSP
	now   time.Time
	certs []*testCert

	mu     sync.Mutex // guards below, as a certificate's lock does
	shares map[*testCert]*Share
	held   map[*testCert]*record.Entry
	failed map[Op]int
}

func newTestHost(cfg config.OCSP, certs ...*testCert) *testHost {
	return &testHost{cfg: cfg, now: time.Unix(1_700_000_000, 0), certs: certs,
		shares: map[*testCert]*Share{}, held: map[*testCert]*record.Entry{}, failed: map[Op]int{}}
}

var _ Host[*testCert, *testOutcome] = (*testHost)(nil)

// newTestSource runs the fleet for h over store, with a quiet logger.
func newTestSource(h *testHost, store interface {
	cache.Store
	cache.Leaser
}) *Source[*testCert, *testOutcome] {
	return New[*testCert, *testOutcome](context.Background(), h, store, store,
		Options{Timeout: time.Second, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
}

// share returns c's share bookkeeping as it is now.
func (h *testHost) share(c *testCert) Share {
	h.mu.Lock()
	defer h.mu.Unlock()
	if sh := h.shares[c]; sh != nil {
		return *sh
	}
	return Share{}
}

func (h *testHost) Now() time.Time          { return h.now }
func (h *testHost) Config() *config.OCSP    { return &h.cfg }
func (h *testHost) ColdWait() time.Duration { return time.Second }
func (h *testHost) StoreFailed(op Op) {
	h.mu.Lock()
	h.failed[op]++
	h.mu.Unlock()
}
func (h *testHost) Lookup(id string) (*testCert, bool) {
	for _, c := range h.certs {
		if c.id == id {
			return c, true
		}
	}
	return nil, false
}
func (h *testHost) Certificates() []*testCert { return append([]*testCert(nil), h.certs...) }
func (h *testHost) Active(c *testCert) bool   { return !c.removed }
func (h *testHost) Held(c *testCert) *record.Entry {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.held[c]
}
func (h *testHost) Due(c *testCert) (*record.Entry, bool) { return h.Held(c), false }
func (h *testHost) Knows(*testCert) bool                  { return false }
func (h *testHost) Recovery(*testCert) Recovery           { return Recovery{} }
func (h *testHost) Sharing(c *testCert, fn func(*Share, *record.Entry, bool)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	sh := h.shares[c]
	if sh == nil {
		sh = new(Share)
		h.shares[c] = sh
	}
	fn(sh, h.held[c], false)
}
func (h *testHost) Schedule(*testCert, time.Time)                              { panic("not driven") }
func (h *testHost) ScheduleUnlessReplaced(*testCert, *record.Entry, time.Time) { panic("not driven") }
func (h *testHost) HastenFirst(*testCert, time.Time)                           { panic("not driven") }
func (h *testHost) BeforeExpiry(_ *record.Entry, _, next time.Time) time.Time  { return next }
func (h *testHost) Query(context.Context, *testCert) (*testOutcome, bool)      { panic("not driven") }
func (h *testHost) ContinueCount(*testCert, int, bool)                         { panic("not driven") }
func (h *testHost) Apply(*testCert, *testOutcome) (time.Time, *record.Entry)   { panic("not driven") }
func (h *testHost) Adopt(*testCert, *record.Entry, *State, time.Time) bool     { panic("not driven") }
func (h *testHost) KeepEarlierAttempt(*testCert, int64)                        { panic("not driven") }
func (h *testHost) Verify(context.Context, *testCert, []byte) (*record.Entry, error) {
	panic("not driven")
}
