package writeback

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/staplerkit/ocsp/cache"
)

// Op names an operation on the store, as the stapler's metrics name it.
type Op string

// The operations counted.
const (
	Read   Op = "read"
	Write  Op = "write"
	Delete Op = "delete"
)

// Config is a Writer's store, logger, limits and failure hook.
type Config struct {
	Store cache.Store
	Log   *slog.Logger
	// Timeout bounds one operation; Grace is how long Run lets the last
	// writes run once its context has ended before it cancels them.
	Timeout, Grace time.Duration
	// Failed, when set, counts a failed operation (metrics).
	Failed func(Op)
}

// Writer writes queued values to its store (see the package doc).
type Writer struct {
	cfg Config
	// failing holds the keys whose last operation failed (the store is
	// down while it is not empty), and down says whether it is not.
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

// New returns a Writer; Run starts its work.
func New(cfg Config) *Writer {
	return &Writer{cfg: cfg, pending: map[string][]byte{}, wake: make(chan struct{}, 1)}
}

// Put queues value to be written at key, unless gone reports that its
// owner was removed: checked under the lock that Remove also takes, so that
// an owner that marks itself gone before it calls Remove never has a write
// queued after its deletion.
func (p *Writer) Put(key string, value []byte, gone func() bool) {
	p.mu.Lock()
	if gone() || p.stopped {
		p.mu.Unlock()
		return
	}
	p.pending[key] = value
	p.mu.Unlock()
	p.poke()
}

func (p *Writer) poke() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// Remove queues the deletion of key, or, once the writer has stopped,
// deletes it now, bounded by the Timeout.
func (p *Writer) Remove(key string) {
	p.mu.Lock()
	if !p.stopped {
		p.pending[key] = nil
		p.mu.Unlock()
		p.poke()
		return
	}
	p.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.Timeout)
	defer cancel()
	p.delete(ctx, key)
}

// Deleting reports whether the deletion of key is queued or being made.
func (p *Writer) Deleting(key string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	v, queued := p.pending[key]
	w, writing := p.inflight[key]
	return queued && v == nil || !queued && writing && w == nil
}

// Run writes queued values until ctx ends, then writes what is left,
// giving up Grace after ctx ended.
func (p *Writer) Run(ctx context.Context) {
	base, cancel := context.WithCancel(context.Background())
	defer cancel()
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(p.cfg.Grace, cancel) })
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
func (p *Writer) flush(base context.Context, last bool) bool {
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
		ctx, cancel := context.WithTimeout(base, p.cfg.Timeout)
		if value == nil {
			p.delete(ctx, key)
		} else if err := p.cfg.Store.Put(ctx, key, value); err != nil {
			p.cfg.Log.Warn("ocsp: storing the response failed; it is still stapled", "id", key, "err", err)
			p.Report(key, Write, err)
		} else {
			p.Report(key, Write, nil)
		}
		cancel()
	}
	p.mu.Lock()
	p.inflight = nil
	p.mu.Unlock()
	return true
}

func (p *Writer) delete(ctx context.Context, key string) {
	err := p.cfg.Store.Delete(ctx, key)
	if err != nil {
		p.cfg.Log.Warn("ocsp: deleting the stored response of a removed certificate failed", "id", key, "err", err)
	}
	p.Report(key, Delete, err)
}

// Report notes how an operation on key went: counted when it failed, and
// the store down while any key's last operation failed (one certificate's
// file that cannot be written is an outage for it, whatever the others').
func (p *Writer) Report(key string, op Op, err error) {
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
	if err != nil && p.cfg.Failed != nil {
		p.cfg.Failed(op)
	}
}

// Down reports whether the store is down: some key's last operation
// failed.
func (p *Writer) Down() bool { return p.down.Load() }
