package stapler

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/staplerkit/ocsp/cache"
	"github.com/staplerkit/ocsp/internal/writeback"
)

// flakyStore is a DirStore whose writes fail while broken is set, as a full
// disk's do.
type flakyStore struct {
	cache.DirStore
	broken atomic.Bool
}

var errDiskFull = errors.New("no space left on device")

func (f *flakyStore) Put(ctx context.Context, key string, value []byte) error {
	if f.broken.Load() {
		return errDiskFull
	}
	return f.DirStore.Put(ctx, key, value)
}

// The store's health is in the metrics: its failed operations counted by
// kind, and down while its last use failed, up again once it answers.
func TestStoreHealthIsInTheMetrics(t *testing.T) {
	store := &flakyStore{DirStore: cache.DirStore(t.TempDir())}
	store.broken.Store(true)
	e := newEnv(t, on, WithStore(store))
	if m := newEnv(t, on).s.Metrics(); m.Store.Configured {
		t.Fatal("a Stapler without a store reports one")
	}
	e.wrapAndServe(e.leaf.Certificate)
	e.waitStapled(e.leaf)
	eventually(t, "the failed write to be counted", func() bool {
		m := e.s.Metrics()
		return m.Store.Configured && !m.Store.Up && m.Store.Errors[StoreWrite] >= 1
	})
	store.broken.Store(false)
	if _, err := e.s.Test(t.Context(), CertificateID(e.leaf.Cert.Raw)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the store to be up again", func() bool { return e.s.Metrics().Store.Up })
}

// The writer's operations are counted under the StoreOp of the same name:
// a failed DirStore read, write or delete shows in Metrics under read,
// write or delete.
func TestTheWritersOperationsAreCountedUnderTheirStoreOps(t *testing.T) {
	for op, want := range map[writeback.Op]StoreOp{writeback.Read: StoreRead, writeback.Write: StoreWrite, writeback.Delete: StoreDelete} {
		if StoreOp(op) != want {
			t.Errorf("writeback.%s is counted as %q, want %q", op, StoreOp(op), want)
		}
	}
}
