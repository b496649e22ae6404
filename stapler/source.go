package stapler

import (
	"context"
	"time"

	"github.com/staplerkit/ocsp/cache"
	"github.com/staplerkit/ocsp/internal/record"
	"github.com/staplerkit/ocsp/internal/writeback"
)

// source is how one mode refreshes certificates: in memory alone
// (memorySource), with a store that keeps staples across restarts
// (dirSource, persist.go), or with a store shared by a fleet of servers
// (fleetSource, fleet.go: internal/fleet's protocol). New picks one,
// once; the rest of the Stapler never asks which mode it runs in.
type source interface {
	// refresh runs a due refresh of m, an active certificate with an
	// unexpired leaf: it queries, restores or adopts, and ends in apply or
	// adopt, which plan m's next query.
	refresh(m *managed)
	// recorded tells the source that a query's outcome for m was applied
	// outside its refresh (Test): next is when m is queried next,
	// installed the response installed (nil when none).
	recorded(m *managed, next time.Time, installed *record.Entry)
	// run does the source's background work (store writes, fleet
	// notifications) until ctx ends.
	run(ctx context.Context)
	// storeError says why m's keys in the shared store cannot be reached
	// now (nil when they can, or when there is no shared store).
	storeError(m *managed) error
	// down reports whether the store could not be reached at its last
	// use (false without a store).
	down() bool
	// forget deletes what the store holds of m (its response and, in a
	// fleet, its state), once Remove has stopped managing it: best effort,
	// bounded in time, logged on failure.
	forget(m *managed)
}

// newSource picks the mode for store (nil: memory alone).
func newSource(s *Stapler, store cache.Store) source {
	if store == nil {
		return memorySource{s}
	}
	if leaser, ok := store.(cache.Leaser); ok {
		return newFleetSource(s, store, leaser)
	}
	w := writeback.New(writeback.Config{
		Store:   store,
		Log:     s.log,
		Timeout: storeTimeout,
		Grace:   closeGrace,
		Failed:  func(op writeback.Op) { s.counters.storeFailed(StoreOp(op)) },
	})
	return &dirSource{s: s, store: store, w: w}
}

// memorySource queries the responder and keeps what it gets in memory.
type memorySource struct{ s *Stapler }

func (src memorySource) refresh(m *managed) {
	s := src.s
	if o := s.query(s.ctx, m); !s.closing(m, o) {
		s.record(m, o)
	}
}

func (memorySource) recorded(*managed, time.Time, *record.Entry) {}
func (memorySource) run(context.Context)                         {}
func (memorySource) storeError(*managed) error                   { return nil }
func (memorySource) down() bool                                  { return false }
func (memorySource) forget(*managed)                             {}
