package stapler

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/staplerkit/ocsp/cache"
)

// storeTimeout bounds one read or write of the store.
const storeTimeout = 10 * time.Second

// closeGrace is how long Close lets the last writes run before it cancels
// them: Close stays prompt even when the store hangs.
const closeGrace = 2 * time.Second

// persister writes responses to the store on its own goroutine, so that a
// slow or failing store never delays a staple: memory is updated first, and
// the store catches up. Writes for one certificate coalesce: only the newest
// value is written.
type persister struct {
	store cache.Store
	log   *slog.Logger

	mu      sync.Mutex
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
		if err := p.store.Put(ctx, key, value); err != nil {
			p.log.Warn("ocsp: storing the response failed; it is still stapled", "id", key, "err", err)
		}
		cancel()
	}
}
