package stapler

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/staplerkit/ocsp/cache"
	"github.com/staplerkit/ocsp/responder"
)

// blockingDeletes is a DirStore whose Delete waits for release, and says
// when one has started.
type blockingDeletes struct {
	cache.DirStore
	started chan string
	gate    chan struct{}
	release func()
}

func newBlockingDeletes(t *testing.T) *blockingDeletes {
	b := &blockingDeletes{DirStore: cache.DirStore(t.TempDir()), started: make(chan string, 10), gate: make(chan struct{})}
	var once sync.Once
	b.release = func() { once.Do(func() { close(b.gate) }) }
	t.Cleanup(b.release)
	return b
}

func (b *blockingDeletes) Delete(ctx context.Context, key string) error {
	b.started <- key
	select {
	case <-b.gate:
	case <-ctx.Done(): // Close gave up on the store
		return ctx.Err()
	}
	return b.DirStore.Delete(ctx, key)
}

func waitStarted(t *testing.T, b *blockingDeletes) {
	t.Helper()
	select {
	case <-b.started:
	case <-timeAfterHang():
		t.Fatal("the deletion never started")
	}
}

// TestServedAgainAfterRemoveIsNotRestoredFromTheFileBeingDeleted: a
// certificate removed and served again at once, while its file is still
// being deleted, is fetched afresh, not restored from that file (Remove
// means forget).
func TestServedAgainAfterRemoveIsNotRestoredFromTheFileBeingDeleted(t *testing.T) {
	store := newBlockingDeletes(t)
	e := newEnv(t, on, WithStore(store))
	t.Cleanup(store.release) // before the Stapler's Close
	id, err := e.s.Add(&e.leaf.Certificate)
	if err != nil {
		t.Fatal(err)
	}
	e.waitStapled(e.leaf)
	eventually(t, "the response stored", func() bool {
		_, err := store.Get(context.Background(), id)
		return err == nil
	})
	if err := e.s.Remove(id); err != nil {
		t.Fatal(err)
	}
	waitStarted(t, store) // the deletion is under way, the file still there
	before := e.r.RequestCount()
	if _, err := e.s.Add(&e.leaf.Certificate); err != nil {
		t.Fatal(err)
	}
	if err := e.s.Ready(context.Background()); err != nil {
		t.Fatal(err)
	}
	if e.r.RequestCount() == before {
		t.Fatal("the certificate served again after Remove was restored from the file being deleted, not fetched")
	}
	store.release()
}

// TestRemoveRacingCloseIsFlushed: a deletion queued while Close writes
// the writer's last batch is made before Close returns.
func TestRemoveRacingCloseIsFlushed(t *testing.T) {
	store := newBlockingDeletes(t)
	e := newEnv(t, on, WithStore(store))
	t.Cleanup(store.release) // before the Stapler's Close
	a, err := e.s.Add(&e.leaf.Certificate)
	if err != nil {
		t.Fatal(err)
	}
	other, err := e.srv.Issue(responder.LeafOptions{DNSNames: []string{"other.test"}})
	if err != nil {
		t.Fatal(err)
	}
	b, err := e.s.Add(&other.Certificate)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.s.Ready(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{a, b} {
		eventually(t, "the responses stored", func() bool {
			_, err := store.Get(context.Background(), id)
			return err == nil
		})
	}
	if err := e.s.Remove(a); err != nil {
		t.Fatal(err)
	}
	waitStarted(t, store) // the writer is busy deleting a
	closed := make(chan struct{})
	go func() { e.s.Close(); close(closed) }()
	eventually(t, "Close begun", e.s.closed.Load)
	// Close has begun; b's deletion is queued behind a's, or made at once
	// once the writer has stopped: either way it is made.
	if err := e.s.Remove(b); err != nil {
		t.Fatal(err)
	}
	store.release()
	<-closed
	for _, id := range []string{a, b} {
		if _, err := store.DirStore.Get(context.Background(), id); !errors.Is(err, cache.ErrCacheMiss) {
			t.Fatalf("%s still stored after Remove and Close: %v", id, err)
		}
	}
}
