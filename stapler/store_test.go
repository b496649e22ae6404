package stapler

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/staplerkit/ocsp/cache"
	"github.com/staplerkit/ocsp/config"
	"github.com/staplerkit/ocsp/internal/writeback"
	"github.com/staplerkit/ocsp/responder"
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

// Metrics().Store.Up (store_up) is documented as 1 only while the store
// answered "for every certificate's keys". With a DirStore whose file for
// one certificate cannot be written (here a directory stands where the
// file goes; in production a file left by a tool run as another user,
// refused with ErrInsecureDir), the other certificates' writes succeeding
// must not report the store up: an alert on store_up == 0 would clear
// while that certificate's response is never persisted, and a restart
// queries the responder for it.
func TestStoreUpStaysDownWhileACertificatesStoreWritesFail(t *testing.T) {
	dir := t.TempDir()
	e := newEnv(t, on, WithStore(cache.DirStore(dir)))
	a := CertificateID(e.leaf.Cert.Raw)
	if err := os.MkdirAll(filepath.Join(dir, a, "in-the-way"), 0o700); err != nil {
		t.Fatal(err)
	}
	e.wrapAndServe(e.leaf.Certificate)
	e.waitStapled(e.leaf)
	eventually(t, "the failed write of the first certificate", func() bool {
		m := e.s.Metrics()
		return !m.Store.Up && m.Store.Errors[StoreWrite] >= 1
	})

	b := e.mustIssue(responder.ECDSA, "localhost")
	e.wrapAndServe(b.Certificate)
	e.waitStapled(b)
	eventually(t, "the second certificate's response written", func() bool {
		_, err := os.Stat(filepath.Join(dir, CertificateID(b.Cert.Raw)))
		return err == nil
	})
	e.s.Close() // the writer has reported every write it made

	m := e.s.Metrics()
	if _, err := os.Stat(filepath.Join(dir, a, "in-the-way")); err != nil {
		t.Fatal(err)
	}
	if m.Store.Up {
		t.Fatalf("store_up says 1 while certificate %s's response has never been stored (write errors %d)", a, m.Store.Errors[StoreWrite])
	}
}

// hangingFleetStore is a shared store (a cache.Leaser) every operation of
// which hangs until its context ends, counting the reads.
type hangingFleetStore struct{ gets atomic.Int64 }

func (h *hangingFleetStore) wait(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }
func (h *hangingFleetStore) Get(ctx context.Context, key string) ([]byte, error) {
	h.gets.Add(1)
	return nil, h.wait(ctx)
}
func (h *hangingFleetStore) Put(ctx context.Context, key string, value []byte) error {
	return h.wait(ctx)
}
func (h *hangingFleetStore) Delete(ctx context.Context, key string) error { return h.wait(ctx) }
func (h *hangingFleetStore) Lease(ctx context.Context, key string, ttl time.Duration) (string, bool, error) {
	return "", false, h.wait(ctx)
}
func (h *hangingFleetStore) Release(ctx context.Context, key, token string) error { return h.wait(ctx) }
func (h *hangingFleetStore) PutLeased(ctx context.Context, lease, token, key string, value []byte) error {
	return h.wait(ctx)
}

var _ cache.Leaser = (*hangingFleetStore)(nil)

// A shared store that hangs must not hold every certificate's refresh for
// the store's timeout: after two operations time out with none succeeding,
// the store is taken as hung, the certificates go without it, and one
// operation at a time probes it. 200 certificates then cost a batch of
// workers' worth of reads, not 200 timeouts, and all are stapled.
func TestAHungSharedStoreIsSkippedByEveryCertificate(t *testing.T) {
	const n = 200
	ca, err := responder.NewCA(responder.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	srv := responder.NewServer(responder.New(ca))
	t.Cleanup(srv.Close)
	certs := make([]tls.Certificate, n)
	for i := range certs {
		l, err := srv.Issue(responder.LeafOptions{DNSNames: []string{fmt.Sprintf("h%d.test", i)}})
		if err != nil {
			t.Fatal(err)
		}
		certs[i] = l.Certificate
	}
	store := &hangingFleetStore{}
	var stapled sync.WaitGroup
	stapled.Add(n)
	var count atomic.Int64
	hook := WithStatusHook(func(c StatusChange) {
		if c.To == StateGood && count.Add(1) <= n {
			stapled.Done()
		}
	})
	s, err := New(config.OCSP{OCSPFunctionality: true}, WithLogger(quietLogger()), WithStore(store), WithRateLimit(0, 0),
		withStoreTimeout(200*time.Millisecond), WithColdWait(time.Millisecond), hook)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	s.Wrap(&tls.Config{Certificates: certs})
	done := make(chan struct{})
	go func() { stapled.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(hangLimit):
		t.Fatalf("%d of %d certificates stapled within the hang limit", count.Load(), n)
	}
	// At most one batch of workers waited on the store before it was
	// taken as hung, and a probe or two since.
	if gets := store.gets.Load(); gets > 2*16+10 {
		t.Fatalf("%d reads of a hung store for %d certificates", gets, n)
	}
	for _, st := range s.Status() {
		if st.StoreError == "" {
			t.Fatalf("%s: no store_error while the store hangs", st.SNIs[0])
		}
	}
}
