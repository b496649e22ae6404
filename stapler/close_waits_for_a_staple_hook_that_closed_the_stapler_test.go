package stapler

import (
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

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
