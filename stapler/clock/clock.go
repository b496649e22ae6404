// Package clock is the time source of a Stapler: the system clock, and a
// manual clock for tests that run a week of refreshes, retries and expiry
// in milliseconds.
package clock

import (
	"sync"
	"time"
)

// Clock tells the time and makes timers.
type Clock interface {
	Now() time.Time
	// NewTimer returns a timer that fires once, d from Now.
	NewTimer(d time.Duration) Timer
}

// Timer is a one-shot timer, like *time.Timer but set to an absolute time,
// so that a clock that jumps (a manual clock in a test) can never leave it
// waiting for a deadline computed against an older "now".
type Timer interface {
	C() <-chan time.Time
	// ResetAt makes the timer fire when the clock reaches t (at once if it
	// has); no stale value is received after ResetAt.
	ResetAt(t time.Time)
	Stop() bool
}

// System is the system clock.
type System struct{}

// Now returns time.Now().
func (System) Now() time.Time { return time.Now() }

// NewTimer returns a *time.Timer.
func (System) NewTimer(d time.Duration) Timer { return systemTimer{time.NewTimer(d)} }

type systemTimer struct{ t *time.Timer }

func (t systemTimer) C() <-chan time.Time  { return t.t.C }
func (t systemTimer) ResetAt(at time.Time) { t.t.Reset(time.Until(at)) }
func (t systemTimer) Stop() bool           { return t.t.Stop() }

// Manual is a Clock that moves only when told to: Advance fires every timer
// that comes due. It is safe for concurrent use.
type Manual struct {
	mu     sync.Mutex
	now    time.Time
	timers []*manualTimer
}

// NewManual returns a manual clock set to start.
func NewManual(start time.Time) *Manual { return &Manual{now: start} }

// Now returns the clock's time.
func (c *Manual) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// NewTimer returns a timer that fires when the clock reaches Now()+d.
func (c *Manual) NewTimer(d time.Duration) Timer {
	t := &manualTimer{c: c, ch: make(chan time.Time, 1)}
	c.mu.Lock()
	c.timers = append(c.timers, t)
	at := c.now.Add(d)
	c.mu.Unlock()
	t.ResetAt(at)
	return t
}

// Advance moves the clock forward by d and fires the timers that came due.
func (c *Manual) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	c.fireLocked()
}

func (c *Manual) fireLocked() {
	for _, t := range c.timers {
		if t.active && !t.at.After(c.now) {
			t.active = false
			select {
			case t.ch <- c.now:
			default:
			}
		}
	}
}

type manualTimer struct {
	c      *Manual
	ch     chan time.Time
	at     time.Time
	active bool
}

func (t *manualTimer) C() <-chan time.Time { return t.ch }

func (t *manualTimer) ResetAt(at time.Time) {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	select {
	case <-t.ch:
	default:
	}
	t.at, t.active = at, true
	t.c.fireLocked()
}

func (t *manualTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := t.active
	t.active = false
	return was
}
