package stapler

import (
	"context"
	"sync"
	"time"
)

// limiter spaces responder requests evenly at a set rate, letting a burst
// through at once: a token bucket kept as the time of the next free slot.
// It runs on the real clock, since it protects a real responder.
type limiter struct {
	interval time.Duration
	burst    time.Duration // how far behind now the next slot may lag: burst-1 intervals

	mu   sync.Mutex
	next time.Time
}

// newLimiter returns nil (no limit) when perSecond is not positive.
func newLimiter(perSecond float64, burst int) *limiter {
	if perSecond <= 0 {
		return nil
	}
	interval := time.Duration(float64(time.Second) / perSecond)
	return &limiter{interval: interval, burst: time.Duration(max(burst, 1)-1) * interval}
}

// wait blocks until a request may be sent, or ctx ends.
func (l *limiter) wait(ctx context.Context) error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	now := time.Now()
	if earliest := now.Add(-l.burst); l.next.Before(earliest) {
		l.next = earliest
	}
	slot := l.next
	l.next = l.next.Add(l.interval)
	l.mu.Unlock()
	d := slot.Sub(now)
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
