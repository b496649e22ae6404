package stapler

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/staplerkit/ocsp/cache"
	"github.com/staplerkit/ocsp/internal/record"
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
	w     *persister
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
		src.w.put(m, record.Encode(installed.Raw, installed.FetchedAt.Time()))
	}
}

// forget queues the deletion of m's stored response behind any write
// still pending for it, so that the deletion is the last word: m is
// already marked removed, so no later write of m's is queued (put checks
// under the same lock). Once the writer has stopped (Close), the file is
// deleted at once, bounded by storeTimeout.
func (src *dirSource) forget(m *managed) { src.w.remove(m.ID()) }

func (src *dirSource) run(ctx context.Context)   { src.w.run(ctx) }
func (src *dirSource) storeError(*managed) error { return nil }

func (src *dirSource) down() bool { return src.w.down.Load() }

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
	if src.w.deleting(m.ID()) {
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
			src.w.report(m.ID(), StoreRead, err)
		}
		return false
	}
	src.w.report(m.ID(), StoreRead, nil)
	e, err := s.loadStored(ctx, m, value)
	if err != nil {
		s.log.Warn("ocsp: ignoring the stored response; fetching a fresh one", "id", m.ID(), "err", err)
		return false
	}
	return s.adopt(m, e, nil, s.clock.Now())
}

// persister writes responses to the store on its own goroutine, so that a
// slow or failing store never delays a staple: memory is updated first, and
// the store catches up. Writes for one certificate coalesce: only the newest
// value is written. A deletion is queued the same way, so that it is
// ordered after the writes queued before it.
type persister struct {
	store cache.Store
	log   *slog.Logger
	// failed counts a failed operation (metrics); failing holds the keys
	// whose last operation failed (the store is down while it is not
	// empty), and down says whether it is not.
	failed  func(StoreOp)
	healthy sync.Mutex // guards failing
	failing map[string]bool
	down    atomic.Bool

	mu sync.Mutex // guards pending, inflight and stopped
	// pending is the newest value queued for each key; nil deletes the key.
	pending map[string][]byte
	// inflight is the batch being written now.
	inflight map[string][]byte
	// stopped: run has written its last batch; a deletion is then made
	// at once by remove, and a write is dropped.
	stopped bool
	wake    chan struct{}
}

func newPersister(store cache.Store, log *slog.Logger) *persister {
	return &persister{store: store, log: log, pending: map[string][]byte{}, wake: make(chan struct{}, 1)}
}

// put queues value to be written as m's response, unless m was removed:
// checked under p.mu, which remove also takes after Remove marked m, so
// that no write of a removed certificate is ever queued after its
// deletion (Remove from the status hook, or during a query in flight).
func (p *persister) put(m *managed, value []byte) {
	p.mu.Lock()
	if m.removed.Load() || p.stopped {
		p.mu.Unlock()
		return
	}
	p.pending[m.ID()] = value
	p.mu.Unlock()
	p.poke()
}

func (p *persister) poke() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// remove queues the deletion of key, or, once the writer has stopped,
// deletes it now, bounded by storeTimeout.
func (p *persister) remove(key string) {
	p.mu.Lock()
	if !p.stopped {
		p.pending[key] = nil
		p.mu.Unlock()
		p.poke()
		return
	}
	p.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	p.delete(ctx, key)
}

// deleting reports whether the deletion of key is queued or being made.
func (p *persister) deleting(key string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	v, queued := p.pending[key]
	w, writing := p.inflight[key]
	return queued && v == nil || !queued && writing && w == nil
}

// run writes queued values until ctx ends, then writes what is left,
// giving up closeGrace after ctx ended.
func (p *persister) run(ctx context.Context) {
	base, cancel := context.WithCancel(context.Background())
	defer cancel()
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(closeGrace, cancel) })
	defer stop()
	for {
		select {
		case <-p.wake:
			p.flush(base, false)
		case <-ctx.Done():
			// Until nothing is left: a deletion queued while the last
			// batch was written (Remove racing Close) is made too.
			for p.flush(base, true) {
			}
			return
		}
	}
}

// flush writes what is queued, and reports whether there was anything.
// When last is set and nothing is queued, the writer is marked stopped,
// under the same lock: nothing queued is ever left unwritten.
func (p *persister) flush(base context.Context, last bool) bool {
	p.mu.Lock()
	batch := p.pending
	if len(batch) == 0 {
		p.stopped = last
		p.mu.Unlock()
		return false
	}
	p.pending = map[string][]byte{}
	p.inflight = batch
	p.mu.Unlock()
	for key, value := range batch {
		ctx, cancel := context.WithTimeout(base, storeTimeout)
		if value == nil {
			p.delete(ctx, key)
		} else if err := p.store.Put(ctx, key, value); err != nil {
			p.log.Warn("ocsp: storing the response failed; it is still stapled", "id", key, "err", err)
			p.report(key, StoreWrite, err)
		} else {
			p.report(key, StoreWrite, nil)
		}
		cancel()
	}
	p.mu.Lock()
	p.inflight = nil
	p.mu.Unlock()
	return true
}

func (p *persister) delete(ctx context.Context, key string) {
	err := p.store.Delete(ctx, key)
	if err != nil {
		p.log.Warn("ocsp: deleting the stored response of a removed certificate failed", "id", key, "err", err)
	}
	p.report(key, StoreDelete, err)
}

// report notes how an operation on key went: counted when it failed, and
// the store down while any key's last operation failed (one certificate's
// file that cannot be written is an outage for it, whatever the others').
func (p *persister) report(key string, op StoreOp, err error) {
	p.healthy.Lock()
	if p.failing == nil {
		p.failing = map[string]bool{}
	}
	if err != nil {
		p.failing[key] = true
	} else {
		delete(p.failing, key)
	}
	p.down.Store(len(p.failing) > 0)
	p.healthy.Unlock()
	if err != nil && p.failed != nil {
		p.failed(op)
	}
}
