package fleet

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/staplerkit/ocsp/cache"
	"github.com/staplerkit/ocsp/config"
)

// scriptedLeaser is a fleet store whose Lease answers what lease says
// (held by another, or an error), and whose keys are all missing.
type scriptedLeaser struct {
	mu    sync.Mutex
	lease func() (bool, error)
	puts  atomic.Int64
}

func (l *scriptedLeaser) Get(context.Context, string) ([]byte, error) { return nil, cache.ErrCacheMiss }
func (l *scriptedLeaser) Put(context.Context, string, []byte) error   { l.puts.Add(1); return nil }
func (l *scriptedLeaser) Delete(context.Context, string) error        { return nil }
func (l *scriptedLeaser) Lease(context.Context, string, time.Duration) (string, bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ok, err := l.lease()
	return "token", ok, err
}
func (l *scriptedLeaser) Release(context.Context, string, string) error { return nil }
func (l *scriptedLeaser) PutLeased(context.Context, string, string, string, []byte) error {
	l.puts.Add(1)
	return nil
}

// A lease is written around only when it was found held at every try for
// twice its lifetime: a try that took the lease, or found the store
// failing, starts the count again, so a lease met long ago, then a store
// outage, then a lease another server has just taken (it is querying) is
// waited for, not bypassed.
func TestTheLeaseHeldClockStartsAgainAfterAFailedTry(t *testing.T) {
	held := func() (bool, error) { return false, nil }
	store := &scriptedLeaser{lease: held}
	m := &testCert{id: "cert"}
	host := newTestHost(config.OCSP{OCSPFunctionality: true}, m)
	f := newTestSource(host, store)
	blockedSince := func() time.Time { return host.share(m).blocked }
	f.share(context.Background(), m, nil)
	if blockedSince().IsZero() {
		t.Fatal("a lease found held started no count")
	}
	store.mu.Lock()
	store.lease = func() (bool, error) { return false, errors.New("the store refuses") }
	store.mu.Unlock()
	f.share(context.Background(), m, nil)
	if !blockedSince().IsZero() {
		t.Fatal("a failed try left the count of a lease found held running: the next lease found held, however fresh, would be bypassed")
	}
}
