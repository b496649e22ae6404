package stapler

import (
	"sync/atomic"
	"testing"
	"time"
)

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
