package writeback

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/staplerkit/ocsp/cache"
)

// counted is a DirStore that records each operation and can be made to
// fail, or to hold a write until released.
type counted struct {
	cache.Store
	mu     sync.Mutex
	ops    []string
	fail   bool
	holdCh chan struct{} // a Put waits on it when set
}

func (c *counted) Put(ctx context.Context, key string, value []byte) error {
	c.mu.Lock()
	hold, fail := c.holdCh, c.fail
	c.ops = append(c.ops, "put "+key+"="+string(value))
	c.mu.Unlock()
	if hold != nil {
		<-hold
	}
	if fail {
		return errors.New("disk full")
	}
	return c.Store.Put(ctx, key, value)
}

func (c *counted) Delete(ctx context.Context, key string) error {
	c.mu.Lock()
	c.ops = append(c.ops, "delete "+key)
	c.mu.Unlock()
	return c.Store.Delete(ctx, key)
}

func (c *counted) log() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.ops...)
}

func newWriter(t *testing.T, store cache.Store, failed func(Op)) (*Writer, context.CancelFunc, <-chan struct{}) {
	w := New(Config{Store: store, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Timeout: time.Minute, Grace: time.Minute, Failed: failed})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.Run(ctx)
	}()
	t.Cleanup(func() { cancel(); <-done })
	return w, cancel, done
}

func never() bool { return false }

// Writes of one key queued while another is being written coalesce: only
// the newest is written. A deletion queued after them is the last word,
// and what Run has left when its context ends is written before it
// returns.
func TestWritesCoalesceAndADeletionIsTheLastWord(t *testing.T) {
	store := &counted{Store: cache.DirStore(t.TempDir()), holdCh: make(chan struct{})}
	w, stop, done := newWriter(t, store, nil)
	w.Put("first", []byte("1"), never)
	for len(store.log()) == 0 { // the first write is held in the store
		time.Sleep(time.Millisecond)
	}
	w.Put("k", []byte("a"), never)
	w.Put("k", []byte("b"), never)
	w.Put("k", []byte("c"), never)
	w.Put("gone", []byte("x"), func() bool { return true })
	w.Put("d", []byte("1"), never)
	w.Remove("d")
	if !w.Deleting("d") || w.Deleting("k") {
		t.Fatal("Deleting does not tell the queued deletion apart")
	}
	stop()
	store.mu.Lock()
	close(store.holdCh)
	store.holdCh = nil
	store.mu.Unlock()
	<-done
	puts := store.log()
	want := map[string]bool{"put first=1": true, "put k=c": true, "delete d": true}
	if len(puts) != len(want) {
		t.Fatalf("operations %q, want only %v", puts, want)
	}
	for _, op := range puts {
		if !want[op] {
			t.Fatalf("operation %q: operations %q, want only %v", op, puts, want)
		}
	}
	if _, err := store.Store.Get(context.Background(), "d"); !errors.Is(err, cache.ErrCacheMiss) {
		t.Fatalf("the deleted key is still stored: %v", err)
	}
	if v, err := store.Store.Get(context.Background(), "k"); err != nil || string(v) != "c" {
		t.Fatalf("k holds %q, %v; want the newest value, c", v, err)
	}
	// Stopped: a deletion is made at once.
	if err := store.Store.Put(context.Background(), "late", []byte("v")); err != nil {
		t.Fatal(err)
	}
	w.Remove("late")
	if _, err := store.Store.Get(context.Background(), "late"); !errors.Is(err, cache.ErrCacheMiss) {
		t.Fatalf("a deletion after Run ended was not made at once: %v", err)
	}
	w.Put("after", []byte("v"), never)
	if _, err := store.Store.Get(context.Background(), "after"); !errors.Is(err, cache.ErrCacheMiss) {
		t.Fatal("a write queued after Run ended was written")
	}
}

// The store is down while any key's last operation failed, and each
// failure is counted by its operation.
func TestTheStoreIsDownWhileAnyKeyFails(t *testing.T) {
	store := &counted{Store: cache.DirStore(t.TempDir()), fail: true}
	var mu sync.Mutex
	failed := map[Op]int{}
	w, _, _ := newWriter(t, store, func(op Op) { mu.Lock(); failed[op]++; mu.Unlock() })
	w.Report("a", Read, errors.New("unreadable"))
	if !w.Down() {
		t.Fatal("not down after a failed read")
	}
	w.Report("b", Read, nil)
	if !w.Down() {
		t.Fatal("another key's success made the store up while a keeps failing")
	}
	w.Report("a", Read, nil)
	if w.Down() {
		t.Fatal("still down once every key's last operation succeeded")
	}
	w.Put("c", []byte("v"), never)
	for deadline := time.Now().Add(time.Minute); !w.Down(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("a failed write never made the store down")
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if failed[Read] != 1 || failed[Write] != 1 {
		t.Fatalf("failures counted %v, want one read and one write", failed)
	}
}
