package stapler

import (
	"sync/atomic"
	"time"
)

// The handshake clock: with the system clock, a Stapler reads the time on
// the handshake path as the monotonic time elapsed since a base (a
// time.Since, which reads the monotonic clock alone, about half the cost of
// time.Now) plus an offset to the wall clock that a goroutine refreshes
// every coarseTick. A handshake is therefore never served from a stale
// reading: the monotonic clock runs on while the process is paused
// (SIGSTOP, a debugger, a VM pause), and the first handshake after the
// pause sees the time it is, not the time of the last tick, whether or not
// the refreshing goroutine has run since. Only a step of the wall clock
// reaches the handshake path late, by at most a tick plus the refreshing
// goroutine's delay; the staple is withdrawn coarseMargin early for that.
const (
	coarseTick = 100 * time.Millisecond
	// coarseMargin is how early a staple is withdrawn: ten ticks, so that
	// a wall clock step that the offset has not caught up with yet (the
	// goroutine delayed by a loaded machine) never lets a staple be served
	// past its expiry.
	coarseMargin = time.Second
)

// coarseClock is the handshake clock. The zero offset means stopped.
type coarseClock struct {
	base   time.Time    // with a monotonic reading
	offset atomic.Int64 // wall Unix nanoseconds at base, as last measured
}

func newCoarseClock() *coarseClock {
	c := &coarseClock{base: time.Now()}
	c.offset.Store(c.base.UnixNano())
	return c
}

// now is the wall time in Unix nanoseconds, or 0 once stopped.
func (c *coarseClock) now() int64 {
	off := c.offset.Load()
	if off == 0 {
		return 0
	}
	return off + int64(time.Since(c.base))
}

// set makes now read t: the offset measured anew.
func (c *coarseClock) set(t time.Time) {
	c.offset.Store(t.UnixNano() - int64(time.Since(c.base)))
}

// stop makes now read 0: readers take the exact clock from then on.
func (c *coarseClock) stop() { c.offset.Store(0) }

// run refreshes the offset every coarseTick until done is closed, then
// stops the clock.
func (c *coarseClock) run(done <-chan struct{}) {
	t := time.NewTicker(coarseTick)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			c.set(time.Now())
		case <-done:
			c.stop()
			return
		}
	}
}
