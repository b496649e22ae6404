package ratelimit

import (
	"context"
	"sync"
	"time"
)

// Limiter spaces requests evenly at a set rate, letting a burst
// through at once: a token bucket kept as the time of the next free slot.
// It runs on the real clock, since it protects a real responder.
type Limiter struct {
	interval time.Duration
	burst    time.Duration // how far behind now the next slot may lag: burst-1 intervals

	mu   sync.Mutex
	next time.Time
	// waiting are the requests asleep until their slots, which WaitNext
	// moves back when it takes a slot ahead of them.
	waiting []*waiter
}

// waiter is a request asleep until its slot.
type waiter struct {
	slot  time.Time     // guarded by mu
	moved chan struct{} // told (without blocking) when slot moves back
}

// New returns a Limiter of perSecond requests a second, burst of them at
// once; nil (no limit, whose waits return at once) when perSecond is not
// positive.
func New(perSecond float64, burst int) *Limiter {
	if perSecond <= 0 {
		return nil
	}
	interval := time.Duration(float64(time.Second) / perSecond)
	return &Limiter{interval: interval, burst: time.Duration(max(burst, 1)-1) * interval}
}

// Wait blocks until a request may be sent, or ctx ends.
func (l *Limiter) Wait(ctx context.Context) error {
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
	return l.sleep(ctx, slot, now)
}

// sleep waits until slot, or until ctx ends; l.mu is held, and released.
// A request that sleeps is among l.waiting until it wakes, so that
// WaitNext can move its slot back.
func (l *Limiter) sleep(ctx context.Context, slot, now time.Time) error {
	if !slot.After(now) {
		l.mu.Unlock()
		return nil
	}
	w := &waiter{slot: slot, moved: make(chan struct{}, 1)}
	l.waiting = append(l.waiting, w)
	for {
		d := time.Until(w.slot)
		if d <= 0 {
			l.leave(w)
			l.mu.Unlock()
			return nil
		}
		l.mu.Unlock()
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-w.moved:
		case <-ctx.Done():
			t.Stop()
			l.mu.Lock()
			l.leave(w)
			l.mu.Unlock()
			return ctx.Err()
		}
		t.Stop()
		l.mu.Lock()
	}
}

// leave removes w from l.waiting; l.mu is held.
func (l *Limiter) leave(w *waiter) {
	for i, o := range l.waiting {
		if o == w {
			l.waiting = append(l.waiting[:i], l.waiting[i+1:]...)
			return
		}
	}
}

// WaitNext blocks until a request that follows up one just sent (the POST
// after a refused GET) may be sent, or ctx ends. It takes the slot after
// the last one whose time has come, ahead of the requests still waiting
// for theirs, which all move back by one interval: the rate holds over
// time, and the follow-up is never queued behind every other
// certificate's first request. With no request waiting, it waits as Wait
// does.
func (l *Limiter) WaitNext(ctx context.Context) error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	now := time.Now()
	waiting := l.next.Sub(now) > l.interval
	if !waiting {
		l.mu.Unlock()
		return l.Wait(ctx)
	}
	// The slots are next-interval, next-2×interval, ...: the last one at
	// or before now is reached, the one after it is taken.
	pending := (l.next.Sub(now) + l.interval - 1) / l.interval
	slot := l.next.Add(-time.Duration(pending) * l.interval).Add(l.interval)
	l.next = l.next.Add(l.interval)
	for _, w := range l.waiting {
		if !w.slot.Before(slot) {
			w.slot = w.slot.Add(l.interval)
			select {
			case w.moved <- struct{}{}:
			default:
			}
		}
	}
	return l.sleep(ctx, slot, now)
}

// Backlog is how long a request asked for now would wait for its slot
// (zero or less when one is free now).
func (l *Limiter) Backlog() time.Duration {
	if l == nil {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return time.Until(l.next)
}
