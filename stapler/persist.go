package stapler

import (
	"context"
	"errors"
	"time"

	"github.com/staplerkit/ocsp/cache"
	"github.com/staplerkit/ocsp/internal/record"
	"github.com/staplerkit/ocsp/internal/writeback"
)

// storeTimeout bounds one read or write of the store.
const storeTimeout = 10 * time.Second

// closeGrace is how long Close lets the last writes run before it cancels
// them: Close stays prompt even when the store hangs.
const closeGrace = 2 * time.Second

// dirSource is the mode with a store of this server's own (a DirStore,
// say): a certificate's first refresh restores the stored response, which
// needs no responder request, and every response installed from a query is
// written back, on a goroutine of its own.
type dirSource struct {
	s     *Stapler
	store cache.Store
	w     *writeback.Writer
}

func (src *dirSource) refresh(m *managed) {
	s := src.s
	if src.restore(m) {
		return
	}
	if o := s.query(s.ctx, m); !s.closing(m, o) {
		s.record(m, o)
	}
}

func (src *dirSource) recorded(m *managed, _ time.Time, installed *record.Entry) {
	if installed != nil {
		src.w.Put(m.ID(), record.Encode(installed.Raw, installed.FetchedAt.Time()), m.Removed)
	}
}

// forget queues the deletion of m's stored response behind any write
// still pending for it, so that the deletion is the last word: m is
// already marked removed, so no later write of m's is queued (Put checks
// under the same lock). Once the writer has stopped (Close), the file is
// deleted at once, bounded by storeTimeout.
func (src *dirSource) forget(m *managed) { src.w.Remove(m.ID()) }

func (src *dirSource) run(ctx context.Context)   { src.w.Run(ctx) }
func (src *dirSource) storeError(*managed) error { return nil }

func (src *dirSource) down() bool { return src.w.Down() }

// restore staples m's persisted response when it still verifies and is
// usable, so that a restart makes no responder request. It reports whether
// it did. A missing, corrupt or foreign value is logged and left to be
// replaced by a fresh fetch; it never stops the server.
func (src *dirSource) restore(m *managed) bool {
	s := src.s
	m.mu.Lock()
	done := m.restored
	m.restored = true
	m.mu.Unlock()
	if done {
		return false
	}
	if src.w.Deleting(m.ID()) {
		// Served again right after Remove: the old response is being
		// deleted, and Remove means forget.
		return false
	}
	ctx, cancel := context.WithTimeout(s.ctx, storeTimeout)
	defer cancel()
	// A store that hangs must not hold up the first fetch past the cold
	// wait: handshakes are waiting for it.
	getCtx, getCancel := context.WithTimeout(ctx, s.coldWait())
	value, err := src.store.Get(getCtx, m.ID())
	getCancel()
	if err != nil {
		if !errors.Is(err, cache.ErrCacheMiss) && !errors.Is(err, cache.ErrUnusableValue) {
			s.log.Warn("ocsp: reading the stored response failed", "id", m.ID(), "err", err)
			src.w.Report(m.ID(), writeback.Read, err)
		}
		return false
	}
	src.w.Report(m.ID(), writeback.Read, nil)
	e, err := s.loadStored(ctx, m, value)
	if err != nil {
		s.log.Warn("ocsp: ignoring the stored response; fetching a fresh one", "id", m.ID(), "err", err)
		return false
	}
	return s.adopt(m, e, nil, s.clock.Now())
}
