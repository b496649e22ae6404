package stapler

import (
	"sync/atomic"
	"time"

	"github.com/staplerkit/ocsp/stapler/clock"
)

// Clock is the source of time for refresh schedules, response validity and
// staple expiry: clock.System by default; tests inject a clock.Manual to
// run a week of refreshes in milliseconds.
type Clock = clock.Clock

// Timer is the part of *time.Timer the scheduler uses.
type Timer = clock.Timer

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
			return
		}
	}
}
