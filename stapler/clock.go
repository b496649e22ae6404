package stapler

import (
	"sync/atomic"
	"time"
)

// The coarse clock: with the system clock, a Stapler keeps the time in an
// atomic, updated every coarseTick, for the handshake path.
const (
	coarseTick = 100 * time.Millisecond
	// coarseMargin is how early a staple is withdrawn: ten ticks, so that
	// even a ticker delayed by a loaded machine never lets a staple be served
	// past its expiry.
	coarseMargin = time.Second
)

// runCoarseClock updates now every coarseTick until done is closed.
func runCoarseClock(now *atomic.Int64, done <-chan struct{}) {
	t := time.NewTicker(coarseTick)
	defer t.Stop()
	for {
		select {
		case tick := <-t.C:
			now.Store(tick.UnixNano())
		case <-done:
			now.Store(0) // stopped: readers take the exact clock from now on
			return
		}
	}
}
