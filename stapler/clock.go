package stapler

import "time"

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
