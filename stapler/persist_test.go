package stapler

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/staplerkit/ocsp/cache"
	"github.com/staplerkit/ocsp/config"
	"github.com/staplerkit/ocsp/internal/record"
	"github.com/staplerkit/ocsp/responder"
	"golang.org/x/crypto/ocsp"
)

// restart replaces e's Stapler with a new one using opts.
func (e *env) restart(opts ...Option) {
	e.t.Helper()
	e.s.Close()
	s, err := New(on, append([]Option{WithClock(e.clock), WithLogger(quietLogger()), WithColdWait(hangLimit)}, opts...)...)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { s.Close() })
	e.s = s
}

func TestRestartStaplesFromTheStoreWithoutARequest(t *testing.T) {
	store := cache.DirStore(t.TempDir())
	e := newEnv(t, on, WithStore(store))
	e.wrapAndServe(e.leaf.Certificate)
	e.waitStapled(e.leaf)
	first := e.status(e.leaf)
	e.restart(WithStore(store)) // Close flushes the write
	e.r.SetFault(responder.Fault{Kind: responder.FaultHTTP503HTML})
	addr := e.wrapAndServe(e.leaf.Certificate)
	resp := e.mustGetStaple(addr, e.leaf, ocsp.Good)
	if n := e.r.RequestCount(); n != 1 {
		t.Fatalf("%d responder requests across the restart, want 1", n)
	}
	st := e.status(e.leaf)
	if !resp.ThisUpdate.Equal(first.ThisUpdate.Time) || st.Queries != 0 || !st.LastSuccess.Equal(first.LastSuccess.Time) {
		t.Fatalf("restored status %+v", st)
	}
	if d := st.NextRefresh.Sub(e.clock.Now()); d < 50*time.Minute {
		t.Fatalf("restored certificate refreshes in %v, want its regular schedule", d)
	}
}

func TestBadStoredValuesAreReplacedByAFreshFetch(t *testing.T) {
	e := newEnv(t, on)
	id := CertificateID(e.leaf.Cert.Raw)
	other, _ := e.srv.Issue(responder.LeafOptions{})
	otherStaple, err := e.s.Wrap(tlsConfigFor(other)).GetCertificate(helloFor())
	if err != nil || otherStaple.OCSPStaple == nil {
		t.Fatal("no staple for the other certificate")
	}
	e.r.SetWindow(responder.Window{Backdate: 3 * time.Hour, Lifetime: time.Hour})
	expired := mustFetchRaw(t, e, e.leaf)
	e.r.SetWindow(responder.Window{})
	good := mustFetchRaw(t, e, e.leaf)
	for _, tc := range []struct {
		name  string
		value []byte
	}{
		{"garbage", []byte("not a record")},
		{"truncated", record.Encode(good, e.clock.Now())[:40]},
		{"another certificate's response", record.Encode(otherStaple.OCSPStaple, e.clock.Now())},
		{"an expired response", record.Encode(expired, e.clock.Now().Add(-3*time.Hour))},
		{"a response fetched too long ago for cache_ttl", record.Encode(good, e.clock.Now().Add(-8*24*time.Hour))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := cache.DirStore(t.TempDir())
			if err := store.Put(context.Background(), id, tc.value); err != nil {
				t.Fatal(err)
			}
			e := *e
			e.t = t
			e.restart(WithStore(store))
			before := e.r.RequestCount()
			addr := e.wrapAndServe(e.leaf.Certificate)
			e.mustGetStaple(addr, e.leaf, ocsp.Good)
			if e.r.RequestCount() != before+1 {
				t.Fatal("no fresh fetch")
			}
			e.s.Close() // flush
			value, err := store.Get(context.Background(), id)
			if err != nil {
				t.Fatal(err)
			}
			raw, _, err := record.Decode(value)
			if err != nil {
				t.Fatalf("store not repaired: %v", err)
			}
			if _, err := ocsp.ParseResponseForCert(raw, e.leaf.Cert, e.ca.Cert); err != nil {
				t.Fatalf("stored value is not the fresh response: %v", err)
			}
		})
	}
}

// brokenStore fails every write, or blocks each write, or each read, until
// its deadline.
type brokenStore struct {
	block, hangGet bool
	puts, gets     atomic.Int64
	// getBudget is the longest time a read was given (its context's
	// deadline, seen as the read began).
	getBudget atomic.Int64
}

func (b *brokenStore) Get(ctx context.Context, _ string) ([]byte, error) {
	b.gets.Add(1)
	if !b.hangGet {
		return nil, cache.ErrCacheMiss
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		b.getBudget.Store(int64(time.Duration(1<<63 - 1)))
	} else if d := int64(time.Until(deadline)); d > b.getBudget.Load() {
		b.getBudget.Store(d)
	}
	<-ctx.Done()
	return nil, ctx.Err()
}

func (b *brokenStore) Delete(context.Context, string) error { return nil }
func (b *brokenStore) Put(ctx context.Context, _ string, _ []byte) error {
	b.puts.Add(1)
	if b.block {
		<-ctx.Done()
		return ctx.Err()
	}
	return errors.New("disk on fire")
}

func TestAFailingOrSlowStoreNeverDelaysAStaple(t *testing.T) {
	for _, tc := range []struct {
		name  string
		store *brokenStore
	}{
		{"failing writes", &brokenStore{}},
		{"hanging writes", &brokenStore{block: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := tc.store
			e := newEnv(t, config.OCSP{OCSPFunctionality: true, QueryFrequency: 300}, WithStore(store))
			addr := e.wrapAndServe(e.leaf.Certificate)
			e.mustGetStaple(addr, e.leaf, ocsp.Good)
			eventually(t, "a store write", func() bool { return store.puts.Load() >= 1 })
			// While the store is stuck, refreshes still go through.
			e.r.SetStatus(e.leaf.Cert.SerialNumber, responder.Revoked(e.clock.Now(), ocsp.KeyCompromise))
			e.clock.Advance(300 * time.Second)
			e.waitQueries(e.leaf, 2)
			e.mustGetStaple(addr, e.leaf, ocsp.Revoked)
		})
	}
}

// TestAHangingStoreReadHoldsTheFirstFetchForAtMostTheColdWait: on start the
// store is read before the responder is asked; a read that hangs is given
// up after the cold wait (not the store's own 10 s timeout), and the fetch
// goes ahead.
func TestAHangingStoreReadHoldsTheFirstFetchForAtMostTheColdWait(t *testing.T) {
	const coldWait = 200 * time.Millisecond
	store := &brokenStore{hangGet: true}
	e := newEnv(t, config.OCSP{OCSPFunctionality: true, QueryFrequency: 300}, WithStore(store), WithColdWait(coldWait))
	addr := e.wrapAndServe(e.leaf.Certificate)
	e.waitStapled(e.leaf)
	if n := store.gets.Load(); n != 1 {
		t.Fatalf("%d store reads, want 1", n)
	}
	if budget := time.Duration(store.getBudget.Load()); budget > coldWait {
		t.Fatalf("the store read was given %v, want at most the cold wait (%v)", budget, coldWait)
	}
	if n := e.r.RequestCount(); n != 1 {
		t.Fatalf("%d responder requests, want 1", n)
	}
	e.mustGetStaple(addr, e.leaf, ocsp.Good)
}

// TestRemoveDeletesTheStoredResponse: Remove means forget; with a store,
// the certificate's stored response is deleted too (on the writer's
// goroutine, after the writes queued before it; Close flushes it).
func TestRemoveDeletesTheStoredResponse(t *testing.T) {
	store := cache.DirStore(t.TempDir())
	e := newEnv(t, on, WithStore(store))
	other, err := e.srv.Issue(responder.LeafOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e.wrapAndServe(e.leaf.Certificate, other.Certificate)
	id, otherID := CertificateID(e.leaf.Cert.Raw), CertificateID(other.Cert.Raw)
	for _, key := range []string{id, otherID} {
		eventually(t, "the response stored", func() bool {
			_, err := store.Get(context.Background(), key)
			return err == nil
		})
	}
	if err := e.s.Remove(id); err != nil {
		t.Fatal(err)
	}
	e.s.Close()
	if _, err := store.Get(context.Background(), id); !errors.Is(err, cache.ErrCacheMiss) {
		t.Fatalf("the removed certificate's response: %v, want ErrCacheMiss", err)
	}
	if _, err := store.Get(context.Background(), otherID); err != nil {
		t.Fatalf("the other certificate's response: %v, want it kept", err)
	}
}
