package stapler

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/staplerkit/ocsp/config"
	"github.com/staplerkit/ocsp/responder"
)

// heldFront signs each answer when the request arrives (so its thisUpdate is
// the clock's then) and holds it until released: a query in flight for as
// long as the test wants.
type heldFront struct {
	next    http.Handler
	arrived chan struct{}
	release chan struct{}
	once    sync.Once
}

func (f *heldFront) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := httptest.NewRecorder()
	f.next.ServeHTTP(rec, r)
	f.once.Do(func() { close(f.arrived) })
	select {
	case <-f.release:
	case <-time.After(hangLimit):
	}
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	w.Write(rec.Body.Bytes())
}

// The staple hook's last call about a certificate says what it is served
// with: a query that was in flight when the certificate was removed, and
// that ends after the certificate was added again and given a newer
// staple, must not leave the hook's last word as "no staple" (a consumer
// such as examples/ocspfiles removes the response file, and switches
// nginx's stapling off, while the Stapler staples).
func TestStapleHookLastCallIsTheServedStapleAfterALateQueryOfARemovedRegistration(t *testing.T) {
	var mu sync.Mutex
	var calls []StapleChange
	e := newEnv(t, config.OCSP{OCSPFunctionality: true}, WithStapleHook(func(c StapleChange) {
		mu.Lock()
		calls = append(calls, c)
		mu.Unlock()
	}))
	front := &heldFront{next: e.r, arrived: make(chan struct{}), release: make(chan struct{})}
	srv := httptest.NewServer(front)
	defer srv.Close()
	leaf, err := e.ca.Issue(responder.LeafOptions{OCSPServer: []string{srv.URL}, DNSNames: []string{"held.test"}})
	if err != nil {
		t.Fatal(err)
	}
	e.r.SetStatus(leaf.Cert.SerialNumber, responder.Good())

	// The first registration's query is in flight (signed now, held).
	id, err := e.s.Add(&leaf.Certificate)
	if err != nil {
		t.Fatal(err)
	}
	first, _ := e.s.lookup(id)
	select {
	case <-front.arrived:
	case <-time.After(hangLimit):
		t.Fatal("the first query never reached the responder")
	}
	if err := e.s.Remove(id); err != nil {
		t.Fatal(err)
	}

	// Added again, and given a newer response by Push.
	e.clock.Advance(time.Minute)
	if _, err := e.s.Add(&leaf.Certificate); err != nil {
		t.Fatal(err)
	}
	raw, err := e.r.Respond(leaf.Cert)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.s.Push(t.Context(), id, raw); err != nil {
		t.Fatal(err)
	}

	// The held (older) answer now reaches the removed registration.
	close(front.release)
	eventually(t, "the removed registration's query to be applied", func() bool {
		first.mu.Lock()
		defer first.mu.Unlock()
		return first.applied != nil
	})

	// A sentinel change on another certificate: once the hook reports it,
	// every change made before it was reported.
	sentinel := e.leaf
	sid, _ := e.s.Add(&sentinel.Certificate)
	e.waitStapled(sentinel)
	eventually(t, "the sentinel's staple to be reported", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range calls {
			if c.ID == sid && c.Staple != nil {
				return true
			}
		}
		return false
	})

	// Every change made before the sentinel was reported: from now on the
	// hook's last word about the certificate must be (or become, should a
	// query of the new registration still be reported) what it is served
	// with.
	lastWord := func() (seen []string, last []byte, ok bool) {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range calls {
			if c.ID == id {
				seen = append(seen, map[bool]string{true: "staple", false: "none"}[c.Staple != nil])
				last, ok = c.Staple, true
			}
		}
		return seen, last, ok
	}
	deadline := time.Now().Add(hangLimit)
	for {
		served, _, err := e.s.Staple(id)
		if err != nil {
			t.Fatalf("Staple: %v; the new registration holds the pushed response", err)
		}
		seen, last, ok := lastWord()
		if ok && bytes.Equal(last, served) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the hook's calls for the certificate were %v: its last word is not the staple served (%d bytes)", seen, len(served))
		}
		time.Sleep(2 * time.Millisecond)
	}
}
