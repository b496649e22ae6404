package stapler

import (
	"context"
	"crypto/tls"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/staplerkit/ocsp/cache"
	"github.com/staplerkit/ocsp/config"
	"github.com/staplerkit/ocsp/responder"
)

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
