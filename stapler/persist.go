package stapler

import (
	"context"
	"errors"
	"log/slog"
	"sync"
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
		src.w.put(m.ID(), record.Encode(installed.Raw, installed.FetchedAt.Time()))
	}
}

// forget queues the deletion of m's stored response behind any write
// still pending for it, so that the deletion is the last word.
func (src *dirSource) forget(m *managed) { src.w.remove(m.ID()) }

func (src *dirSource) run(ctx context.Context)   { src.w.run(ctx) }
func (src *dirSource) storeError(*managed) error { return nil }

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
	ctx, cancel := context.WithTimeout(s.ctx, storeTimeout)
	defer cancel()
	// A store that hangs must not hold up the first fetch past the cold
	// wait: handshakes are waiting for it.
	getCtx, getCancel := context.WithTimeout(ctx, s.coldWait())
	value, err := src.store.Get(getCtx, m.ID())
	getCancel()
	if err != nil {
		if !errors.Is(err, cache.ErrCacheMiss) {
			s.log.Warn("ocsp: reading the stored response failed", "id", m.ID(), "err", err)
		}
		return false
	}
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

	mu sync.Mutex // guards pending
	// pending is the newest value queued for each key; nil deletes the key.
	pending map[string][]byte
	wake    chan struct{}
}

func newPersister(store cache.Store, log *slog.Logger) *persister {
	return &persister{store: store, log: log, pending: map[string][]byte{}, wake: make(chan struct{}, 1)}
}

// put queues value to be written under key.
func (p *persister) put(key string, value []byte) {
	p.mu.Lock()
	p.pending[key] = value
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// remove queues the deletion of key.
func (p *persister) remove(key string) { p.put(key, nil) }

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
			p.flush(base)
		case <-ctx.Done():
			p.flush(base)
			return
		}
	}
}

func (p *persister) flush(base context.Context) {
	p.mu.Lock()
	batch := p.pending
	p.pending = map[string][]byte{}
	p.mu.Unlock()
	for key, value := range batch {
		ctx, cancel := context.WithTimeout(base, storeTimeout)
		if value == nil {
			if err := p.store.Delete(ctx, key); err != nil {
				p.log.Warn("ocsp: deleting the stored response of a removed certificate failed", "id", key, "err", err)
			}
		} else if err := p.store.Put(ctx, key, value); err != nil {
			p.log.Warn("ocsp: storing the response failed; it is still stapled", "id", key, "err", err)
		}
		cancel()
	}
}
