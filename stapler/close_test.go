package stapler

import (
	"crypto/tls"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/staplerkit/ocsp/cache"
	"github.com/staplerkit/ocsp/config"
	"github.com/staplerkit/ocsp/responder"
	"github.com/staplerkit/ocsp/stapler/clock"
	"golang.org/x/crypto/ocsp"
)

// Promise "no panic on any input", "-race clean". On the system clock,
// Close runs while handshakes go on and configs are wrapped (listed leaves
// and leaves from GetCertificate, new and known); after Close, new leaves
// are wrapped and served: every handshake completes.
func TestWrapAndServeAcrossClose(t *testing.T) {
	e := newEnv(t, on, WithClock(clock.System{}), WithColdWait(50*time.Millisecond)) // see TestANewCertificateAfterCloseDoesNotWaitTheColdWait
	e.r.SetClock(time.Now)
	issue := func() tls.Certificate {
		l, err := e.srv.Issue(responder.LeafOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return l.Certificate
	}
	known := issue()
	addrKnown := e.serve(e.s.Wrap(&tls.Config{Certificates: []tls.Certificate{known, issue()}}))
	e.handshake(addrKnown)
	var wg sync.WaitGroup
	for g := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 15 {
				var cfg *tls.Config
				switch (g + i) % 3 {
				case 0:
					cfg = e.s.Wrap(&tls.Config{Certificates: []tls.Certificate{issue(), known}})
				case 1:
					c := issue()
					cfg = e.s.Wrap(&tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &c, nil }})
				default:
					if _, _, err := e.handshake(addrKnown); err != nil {
						t.Errorf("handshake: %v", err)
					}
					continue
				}
				if _, err := cfg.GetCertificate(helloFor()); err != nil {
					t.Errorf("GetCertificate: %v", err)
				}
			}
		}()
	}
	e.s.Close()
	wg.Wait()
	addr := e.serve(e.s.Wrap(&tls.Config{Certificates: []tls.Certificate{issue(), known}}))
	for range 3 {
		if _, _, err := e.handshake(addr); err != nil {
			t.Fatalf("after Close: %v", err)
		}
	}
}

// A certificate seen for the first time after Close is served at once,
// without a staple: its cold gate is open (or absent), since no fetch
// starts once closed. Checked white-box, without a clock. Found by
// TestWrapAndServeAcrossClose with the default test cold wait of a minute
// (latency, outside the listed promises): such a certificate got a gate
// that nothing would ever open, and every handshake serving it waited the
// full cold wait (Timeout/4 by default).
func TestANewCertificateAfterCloseDoesNotWaitTheColdWait(t *testing.T) {
	e := newEnv(t, on)
	l, err := e.srv.Issue(responder.LeafOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e.s.Close()
	c := l.Certificate
	m := e.s.add(&c)
	if g := m.pending.Load(); g != nil {
		select {
		case <-g.done:
		default:
			t.Fatalf("after Close, a new certificate's cold gate is shut with no fetch to open it: each handshake waits the cold wait (%v)", e.s.coldWait())
		}
	}
}

// Promise "a staple is never served past its expiry (with the system clock:
// withdrawn up to 1 s early; after Close, exact)". A Stapler on the system
// clock serves a staple that expires a few seconds after it is fetched (the
// responder then fails every refresh), with handshakes running while it is
// closed and after. A handshake started after the staple's nextUpdate must
// not carry it. The pass condition is sound on any machine: a failure means
// a staple whose nextUpdate is before the handshake began.
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

// Close "returns once every goroutine the Stapler started has ended", and
// WithStapleHook lets the hook call Close. An application that also closes
// the Stapler itself (defer s.Close() in main, a shutdown path) must not
// have its Close return while the hook's call is still running on the
// Stapler's goroutine (writing a response file, reloading a server): the
// process would exit, or the application tear down what the hook uses,
// under it. A second Close returns at once today, whatever is still running.
func TestCloseWaitsForAStapleHookThatClosedTheStapler(t *testing.T) {
	var s atomic.Pointer[Stapler]
	hookClosed := make(chan struct{})
	release := make(chan struct{})
	var hookReturned atomic.Bool
	var once atomic.Bool
	e := newEnv(t, on, WithStapleHook(func(c StapleChange) {
		if c.Staple == nil || !once.CompareAndSwap(false, true) {
			return
		}
		s.Load().Close()
		close(hookClosed)
		select { // still at work: a file written, a server reloaded
		case <-release:
		case <-time.After(hangLimit):
		}
		hookReturned.Store(true)
	}))
	s.Store(e.s)
	e.wrapAndServe(e.leaf.Certificate)
	select {
	case <-hookClosed:
	case <-time.After(hangLimit):
		t.Fatal("the hook never closed the Stapler")
	}

	appClosed := make(chan struct{})
	go func() {
		e.s.Close() // the application's own
		close(appClosed)
	}()
	// Either the application's Close returns, or it is seen waiting in
	// Close (the hook's own Close has returned): then the hook may finish.
	deadline := time.Now().Add(hangLimit)
	for {
		select {
		case <-appClosed:
			if !hookReturned.Load() {
				close(release)
				t.Fatal("the application's Close returned while the staple hook, on the Stapler's goroutine, was still running")
			}
			return
		default:
		}
		if inClose() {
			close(release)
			select {
			case <-appClosed:
			case <-time.After(hangLimit):
				t.Fatal("Close never returned after the hook did")
			}
			if !hookReturned.Load() {
				t.Fatal("Close returned before the hook did")
			}
			return
		}
		if time.Now().After(deadline) {
			close(release)
			t.Fatal("the application's Close neither returned nor waited")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// inClose reports whether a goroutine is in (*Stapler).Close.
func inClose() bool {
	buf := make([]byte, 1<<20)
	return strings.Contains(string(buf[:runtime.Stack(buf, true)]), "stapler.(*Stapler).Close(")
}

// WithStapleHook says the hook "may call the Stapler's methods". A hook
// that closes the Stapler (a sidecar that stops once it has handed over a
// revocation, say) must see Close return, not hang forever: Close waits for
// the Stapler's goroutines, the hook's among them.
func TestStapleHookMayCloseTheStapler(t *testing.T) {
	var s atomic.Pointer[Stapler]
	closed := make(chan error, 1)
	e := newEnv(t, on, WithStapleHook(func(c StapleChange) {
		if c.Staple != nil {
			closed <- s.Load().Close()
		}
	}))
	s.Store(e.s)
	e.wrapAndServe(e.leaf.Certificate)
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close from the hook: %v", err)
		}
	case <-time.After(hangLimit):
		t.Fatal("Close, called from the staple hook, never returned (it waits for the hook's own goroutine)")
	}
}

// slowToCancel is a transport that, like a real one stuck in a slow dial,
// goes on for a while after its request is cancelled.
type slowToCancel struct{ linger time.Duration }

func (c slowToCancel) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(r)
	if r.Context().Err() != nil {
		time.Sleep(c.linger)
	}
	return resp, err
}

// stapleWork names the functions that run the Stapler's background work.
// Each runs inside a goroutine whose last act is to tell Close it is done,
// so none of them may be on any stack once Close has returned.
var stapleWork = []string{
	"schedule.(*Scheduler[...]).Run",
	"schedule.(*Scheduler[...]).Serve",
	"stapler.(*Stapler).refresh",
	"stapler.(*Stapler).fetchAndVerify",
	"stapler.(*Stapler).runRetirement",
	"stapler.(*coarseClock).run",
	"stapler.(*stapleNotifier).run",
	"writeback.(*Writer).Run",
	"fleet.(*Source[...]).run",
}

func TestCloseLeaksNoGoroutine(t *testing.T) {
	// A fetch hangs in flight, on a transport that lingers after it is
	// cancelled, while Close runs: Close must wait for it (the fetch runs
	// on a goroutine of its own), within response_timeout.
	e := newEnv(t, config.OCSP{OCSPFunctionality: true, ResponseTimeout: 5},
		WithHTTPClient(&http.Client{Transport: slowToCancel{linger: 500 * time.Millisecond}}),
		WithStore(cache.DirStore(t.TempDir())))
	addr := e.wrapAndServe(e.leaf.Certificate)
	e.mustGetStaple(addr, e.leaf, ocsp.Good)
	e.r.SetFault(responder.Fault{Kind: responder.FaultHang})
	e.clock.Advance(2 * time.Hour)
	eventually(t, "the hanging request", func() bool { return e.r.RequestCount() >= 2 })
	// The names are those of the code that runs: each that this set-up
	// starts (no coarse clock on a manual clock, no staple hook, no fleet)
	// is on a stack now, so that a rename cannot leave the check below
	// looking for a function that no longer exists.
	buf := make([]byte, 1<<20)
	running := string(buf[:runtime.Stack(buf, true)])
	for _, fn := range stapleWork {
		started := fn != "stapler.(*coarseClock).run" && fn != "stapler.(*stapleNotifier).run" && fn != "fleet.(*Source[...]).run"
		if started && !strings.Contains(running, fn) {
			t.Fatalf("%s is not running before Close: is it still the name of the Stapler's work?\n%s", fn, running)
		}
	}
	e.s.Close()
	// No polling: at the moment Close returns, none of the Stapler's work
	// may still run.
	stacks := string(buf[:runtime.Stack(buf, true)])
	for _, fn := range stapleWork {
		if strings.Contains(stacks, fn) {
			t.Fatalf("%s still running after Close:\n%s", fn, stacks)
		}
	}
}
