package stapler

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
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

// On start the store is read before the responder is asked; a read that
// hangs is given up after the cold wait (not the store's own 10 s timeout),
// and the fetch goes ahead.
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

// Remove means forget; with a store, the certificate's stored response is
// deleted too (on the writer's goroutine, after the writes queued before
// it; Close flushes it).
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

// A response installed under skip_verify is never written to the store:
// after a restart, only what was verified is there to restore.
func TestAnUnverifiedStapleIsNeverStored(t *testing.T) {
	store := cache.DirStore(t.TempDir())
	e := newEnv(t, on, WithStore(store))
	addr := e.wrapAndServe(e.leaf.Certificate)
	e.mustGetStaple(addr, e.leaf, ocsp.Good)
	id := CertificateID(e.leaf.Cert.Raw)

	e.clock.Advance(10 * time.Minute) // the rogue answer is newer than the verified one
	e.r.SetFault(responder.Fault{Kind: responder.FaultUnauthorizedSigner})
	n := e.status(e.leaf).Queries
	if err := e.s.SetStapling(id, config.Stapling{Enabled: true, SkipVerify: true, CacheTTL: 3600}); err != nil {
		t.Fatal(err)
	}
	e.waitQueries(e.leaf, n+1)
	if staple, _, err := e.handshake(addr); err != nil || !e.isRogue(staple, e.leaf) {
		t.Fatalf("with skip_verify on, the rogue-signed response is not stapled (%v)", err)
	}
	e.s.Close() // every pending write done
	value, err := store.Get(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	raw, _, err := record.Decode(value)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ocsp.ParseResponseForCert(raw, e.leaf.Cert, e.ca.Cert); err != nil {
		t.Fatalf("the store holds a response that does not verify: %v", err)
	}
}

// A good response planted in the store never serves a revoked certificate
// good. OCSP responses are public: anyone can fetch a good one before a
// certificate is revoked, and with a DirStore in a directory writable by
// others (one DirStore documents it refuses: Put does, Get does not) a
// local user can plant it under the certificate's ID. When the server
// starts after the revocation, the value is refused, the responder is
// asked, and the staple says revoked. Found when the planted response was
// restored without a query and stapled until the next refresh.
func TestAPlantedStoreValueNeverServesARevokedCertificateGood(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, on, WithStore(cache.DirStore(dir)), WithPolicy(Strict))
	good := mustFetchRaw(t, e, e.leaf) // public: anyone may ask
	id := CertificateID(e.leaf.Cert.Raw)
	if err := os.WriteFile(filepath.Join(dir, id), record.Encode(good, e.clock.Now()), 0o644); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Minute)
	e.r.SetStatus(e.leaf.Cert.SerialNumber, responder.Revoked(e.clock.Now(), ocsp.KeyCompromise))
	e.clock.Advance(time.Second)

	addr := e.wrapAndServe(e.leaf.Certificate)
	eventually(t, "a first answer", func() bool { st := e.status(e.leaf); return st.Stapled || st.Queries > 0 })
	staple, _, err := e.handshake(addr)
	if err == nil {
		resp, perr := ocsp.ParseResponseForCert(staple, e.leaf.Cert, e.ca.Cert)
		if perr == nil && resp.Status == ocsp.Good {
			t.Fatalf("a revoked certificate is stapled good (from the value planted in a world-writable store directory; responder queries: %d)", e.r.CountFor(e.leaf.Cert.SerialNumber))
		}
	}
}

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

// A certificate removed and served again at once, while its file is still
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

// A deletion queued while Close writes the writer's last batch is made
// before Close returns.
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

// gatedResponder serves e's responder, but holds every request after the
// first `free` ones until release is called, and tells held when one
// arrives.
type gatedResponder struct {
	srv     *httptest.Server
	n       atomic.Int64
	free    int64
	held    chan struct{}
	gate    chan struct{}
	release func()
}

func newGatedResponder(t *testing.T, r *responder.Responder, free int64) *gatedResponder {
	g := &gatedResponder{free: free, held: make(chan struct{}, 100), gate: make(chan struct{})}
	var once sync.Once
	g.release = func() { once.Do(func() { close(g.gate) }) }
	g.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if g.n.Add(1) > g.free {
			g.held <- struct{}{}
			<-g.gate
		}
		r.ServeHTTP(w, req)
	}))
	t.Cleanup(func() { g.release(); g.srv.Close() })
	return g
}

// waitHeld waits until a request is held at the gate.
func waitHeld(t *testing.T, g *gatedResponder) {
	t.Helper()
	select {
	case <-g.held:
	case <-timeAfterHang():
		t.Fatal("no request reached the responder")
	}
}

// A query in flight when Remove is called (a Test from the admin API, or a
// scheduled refresh) writes nothing to the store after the deletion, as
// Remove's doc promises (with a store of the server's own, "the response
// [is] deleted in the background, after any write still pending for it")
// and persist.go says ("the deletion is the last word"): after Close the
// removed certificate's response is not on disk. Found when the query's
// write was queued after the deletion and Close flushed it to disk.
func TestAQueryInFlightAtRemoveWritesNothingToTheDirStore(t *testing.T) {
	store := cache.DirStore(t.TempDir())
	e := newEnv(t, on, WithStore(store))
	g := newGatedResponder(t, e.r, 1) // the first query passes; the next is held
	leaf, err := e.ca.Issue(responder.LeafOptions{OCSPServer: []string{g.srv.URL}})
	if err != nil {
		t.Fatal(err)
	}
	e.r.SetStatus(leaf.Cert.SerialNumber, responder.Good())
	e.wrapAndServe(leaf.Certificate)
	id := CertificateID(leaf.Cert.Raw)
	e.waitStapled(leaf)
	eventually(t, "the response stored", func() bool {
		_, err := store.Get(context.Background(), id)
		return err == nil
	})

	// A Test (POST /v1/ocsp/test) is in flight when the operator removes
	// the certificate (DELETE /v1/certificates/{id}).
	testDone := make(chan error, 1)
	go func() {
		_, err := e.s.Test(context.Background(), id)
		testDone <- err
	}()
	waitHeld(t, g)
	if err := e.s.Remove(id); err != nil {
		t.Fatal(err)
	}
	g.release()
	select {
	case err := <-testDone:
		t.Logf("Test returned %v", err)
	case <-timeAfterHang():
		t.Fatal("Test hung")
	}
	e.s.Close() // flushes the queued writes and deletions

	if _, err := store.Get(context.Background(), id); !errors.Is(err, cache.ErrCacheMiss) {
		t.Fatalf("the removed certificate's response is back in the store after Remove and Close (err %v), want ErrCacheMiss", err)
	}
}

// Remove on a closed (or closing) Stapler still deletes the certificate's
// stored response, as its doc says ("with a store (WithStore), the
// certificate's stored values are deleted too"): a shutdown hook that
// removes certificates as it closes leaves none of them on disk. Found when
// Remove returned nil and skipped the deletion once the Stapler was closed,
// with no error and no log.
func TestRemoveAfterCloseDeletesTheStoredValue(t *testing.T) {
	store := cache.DirStore(t.TempDir())
	e := newEnv(t, on, WithStore(store))
	e.wrapAndServe(e.leaf.Certificate)
	id := CertificateID(e.leaf.Cert.Raw)
	e.waitStapled(e.leaf)
	eventually(t, "the response stored", func() bool {
		_, err := store.Get(context.Background(), id)
		return err == nil
	})
	e.s.Close()
	err := e.s.Remove(id)
	if _, serr := e.s.StatusOf(id); serr == nil {
		t.Fatalf("Remove after Close returned %v but the certificate is still managed", err)
	}
	if err != nil {
		return // refusing is honest
	}
	if _, gerr := store.Get(context.Background(), id); !errors.Is(gerr, cache.ErrCacheMiss) {
		t.Fatalf("Remove after Close returned nil, the certificate left Status, but its stored response remains (Get: %v)", gerr)
	}
}

func timeAfterHang() <-chan time.Time { return time.After(hangLimit) }

// Removing a certificate from the status hook (its natural use: "when a
// certificate turns revoked, stop managing it") leaves no stored response:
// after Close the removed certificate's response is not on disk. Found when
// the hook's Remove, running inside apply, queued the deletion before the
// write of the revoked response, which put it back.
func TestRemoveFromTheStatusHookLeavesNoStoredValue(t *testing.T) {
	store := cache.DirStore(t.TempDir())
	var s *Stapler
	removed := make(chan error, 1)
	e := newEnv(t, on, WithStore(store), WithStatusHook(func(c StatusChange) {
		if c.To == StateRevoked {
			removed <- s.Remove(c.ID)
		}
	}))
	s = e.s
	e.wrapAndServe(e.leaf.Certificate)
	id := CertificateID(e.leaf.Cert.Raw)
	e.waitStapled(e.leaf)
	e.r.SetStatus(e.leaf.Cert.SerialNumber, responder.Revoked(e.clock.Now().Add(-time.Minute), 1))
	if _, err := e.s.Test(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-removed:
		if err != nil {
			t.Fatalf("Remove from the hook: %v", err)
		}
	case <-timeAfterHang():
		t.Fatal("the hook never saw the revocation")
	}
	e.s.Close()
	if _, err := store.Get(context.Background(), id); !errors.Is(err, cache.ErrCacheMiss) {
		t.Fatalf("the certificate removed from the status hook still has its response in the store (err %v), want ErrCacheMiss", err)
	}
}
