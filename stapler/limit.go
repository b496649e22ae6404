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
	return sleepUntil(ctx, slot.Sub(now))
}

// sleepUntil waits d (nothing when it is not positive), or until ctx ends.
func sleepUntil(ctx context.Context, d time.Duration) error {
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

// waitNext blocks until a request that follows up one just sent (the POST
// after a refused GET) may be sent, or ctx ends. It takes the slot after
// the last one whose time has come, ahead of the requests still waiting
// for theirs, which all move back by one interval: the rate holds over
// time, and the follow-up is never queued behind every other
// certificate's first request. With no request waiting, it waits as wait
// does.
func (l *limiter) waitNext(ctx context.Context) error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	now := time.Now()
	waiting := l.next.Sub(now) > l.interval
	if !waiting {
		l.mu.Unlock()
		return l.wait(ctx)
	}
	// The slots are next-interval, next-2×interval, ...: the last one at
	// or before now is reached, the one after it is taken.
	pending := (l.next.Sub(now) + l.interval - 1) / l.interval
	slot := l.next.Add(-time.Duration(pending) * l.interval).Add(l.interval)
	l.next = l.next.Add(l.interval)
	l.mu.Unlock()
	return sleepUntil(ctx, slot.Sub(now))
}
