package stapler

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/staplerkit/ocsp/cache"
	"github.com/staplerkit/ocsp/responder"
)

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

// DEFECT (resurrection with a DirStore): Remove's doc promises that with a
// store of the server's own "the response [is] deleted in the background,
// after any write still pending for it" and persist.go that "the deletion
// is the last word". But a query already in flight when Remove is called
// (a Test from the admin API, or a scheduled refresh) is still applied
// after Remove (apply/record never look at m.removed), and its write is
// queued after the deletion: the removed certificate's response is written
// back to the store, and Close flushes it to disk.
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

// DEFECT (Remove after Close is silently a no-op for the store): Remove
// returns nil and the certificate leaves Status, yet when the Stapler is
// closed (or closing) the stored response is never deleted (Remove skips
// forget when s.closed is set), while its doc says "with a store
// (WithStore), the certificate's stored values are deleted too". A
// shutdown hook that removes certificates as it closes leaves them all on
// disk, with no error and no log.
func TestRemoveAfterCloseLeavesTheStoredValue(t *testing.T) {
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

// DEFECT (same root cause, no race needed): the natural use of the status
// hook, "when a certificate turns revoked, stop managing it", resurrects
// its stored response every time. The hook runs inside apply, before
// record hands the installed response to the store; Remove (from the hook)
// queues the deletion, and the write queued right after it puts the
// revoked response back. After Close the removed certificate's response is
// on disk.
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
