package stapler

import (
	"sync/atomic"
	"time"
)

// Clock is the source of time for refresh schedules, response validity and
// staple expiry. The default is the system clock; tests inject their own to
// run a week of refreshes in milliseconds.
type Clock interface {
	Now() time.Time
	// NewTimer returns a timer that fires once, d from Now.
	NewTimer(d time.Duration) Timer
}

// Timer is the part of *time.Timer the scheduler uses.
type Timer interface {
	C() <-chan time.Time
	// Reset makes the timer fire d from now (Go 1.23 semantics: no stale
	// value is received after Reset).
	Reset(d time.Duration)
	Stop() bool
}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

func (systemClock) NewTimer(d time.Duration) Timer { return systemTimer{time.NewTimer(d)} }

type systemTimer struct{ t *time.Timer }

func (t systemTimer) C() <-chan time.Time   { return t.t.C }
func (t systemTimer) Reset(d time.Duration) { t.t.Reset(d) }
func (t systemTimer) Stop() bool            { return t.t.Stop() }

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
