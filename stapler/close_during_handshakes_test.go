package stapler

import (
	"sync"
	"testing"
	"time"

	"github.com/staplerkit/ocsp/responder"
	"github.com/staplerkit/ocsp/stapler/clock"
	"golang.org/x/crypto/ocsp"
)

// PROBE (passes): promise "a staple is never served past its expiry (with
// the system clock: withdrawn up to 1 s early; after Close, exact)". A
// Stapler on the system clock serves a staple that expires a few seconds
// after it is fetched (the responder then fails every refresh), with
// handshakes running while it is closed and after. A handshake started
// after the staple's nextUpdate must not carry it. The pass condition is
// sound on any machine: a failure means a staple whose nextUpdate is before
// the handshake began.
func TestCloseDuringHandshakesNearExpiry(t *testing.T) {
	e := newEnv(t, on, WithClock(clock.System{}))
	e.r.SetClock(time.Now)
	e.r.SetWindow(responder.Window{Backdate: time.Minute, Lifetime: time.Minute + 4*time.Second})
	l, err := e.srv.Issue(responder.LeafOptions{})
	if err != nil {
		t.Fatal(err)
	}
	addr := e.wrapAndServe(l.Certificate)
	e.waitStapled(l)
	e.r.SetFault(responder.Fault{Kind: responder.FaultHTTP500})
	staple, _, err := e.handshake(addr)
	if err != nil || len(staple) == 0 {
		t.Fatalf("no staple at first (%v)", err)
	}
	first, err := ocsp.ParseResponse(staple, nil)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	stapled := map[bool]int{} // by "after Close"
	check := func() {
		start := time.Now()
		closed := e.s.closed.Load()
		st, _, err := e.handshake(addr)
		if err != nil || len(st) == 0 {
			return
		}
		mu.Lock()
		stapled[closed]++
		mu.Unlock()
		r, err := ocsp.ParseResponse(st, nil)
		if err != nil {
			t.Errorf("staple does not parse: %v", err)
			return
		}
		if !r.NextUpdate.After(start) {
			t.Errorf("staple expiring at %v served to a handshake begun at %v", r.NextUpdate, start)
		}
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				check()
			}
		}()
	}
	// Close shortly before the expiry, with handshakes running.
	time.Sleep(time.Until(first.NextUpdate.Add(-1500 * time.Millisecond)))
	e.s.Close()
	time.Sleep(time.Until(first.NextUpdate.Add(500 * time.Millisecond)))
	close(stop)
	wg.Wait()
	for range 5 {
		check()
	}
	t.Logf("stapled handshakes: %d before Close, %d after", stapled[false], stapled[true])
}
