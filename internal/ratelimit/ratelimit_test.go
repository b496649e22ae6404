package ratelimit

import (
	"context"
	"testing"
	"time"
)

// A limiter lets a burst through at once and spaces the rest; no rate is
// no limit; a wait ends with its context.
func TestLimiterSpacesRequests(t *testing.T) {
	l := New(200, 5)
	start := time.Now()
	for range 25 {
		if err := l.Wait(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	// 5 go at once, the other 20 one every 5 ms: at least 95 ms. (Only a
	// lower bound: a slow machine may take longer, never shorter.)
	if elapsed := time.Since(start); elapsed < 95*time.Millisecond {
		t.Fatalf("25 requests at 200/s with a burst of 5 took only %v", elapsed)
	}
	if New(0, 0) != nil {
		t.Fatal("rate 0 should mean no limit")
	}
	var none *Limiter
	if err := none.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	slow := New(0.001, 1)
	slow.Wait(ctx) // takes the burst
	if err := slow.Wait(ctx); err == nil {
		t.Fatal("wait ignored a cancelled context")
	}
}

// Backlog is how long the next request would wait: nothing while the
// burst lasts, then an interval more for each request asked.
func TestBacklogIsTheNextRequestsWait(t *testing.T) {
	l := New(1, 2) // one a second, two at once
	if b := l.Backlog(); b > 0 {
		t.Fatalf("a fresh limiter has a backlog of %v", b)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the waits below only take their slots
	start := time.Now()
	for range 4 {
		l.Wait(ctx)
	}
	// The first wait, at t >= start, took the slot a second before t (the
	// burst); then t, t+1s and t+2s: the next free slot is t+3s. (Checked
	// against start, so that a slow machine cannot fail it.)
	b := l.Backlog()
	if elapsed := time.Since(start); b > 3*time.Second || b+elapsed < 3*time.Second {
		t.Fatalf("backlog %v, %v after the first request, at 1/s with a burst of 2: want the slot 3s after it", b, elapsed)
	}
	if (*Limiter)(nil).Backlog() != 0 {
		t.Fatal("no limit has a backlog")
	}
}

// WaitNext puts a follow-up ahead of the requests still waiting, which
// "all move back by one interval": the follow-up and the first request
// waiting are not both let through at the slot that one had taken (two
// requests at once, at a burst of one).
func TestAFollowUpAheadOfTheQueueMovesTheWaitingBack(t *testing.T) {
	const interval = 2 * time.Second
	l := New(float64(time.Second)/float64(interval), 1)  // one every 2 s, one at once
	if err := l.Wait(context.Background()); err != nil { // the burst: sent now
		t.Fatal(err)
	}
	done := make(chan string, 2)
	go func() {
		l.Wait(context.Background()) // waiting for the next slot
		done <- "the request waiting"
	}()
	// It has taken its slot: the next free one is two intervals away.
	for l.Backlog() <= interval+interval/2 {
		time.Sleep(time.Millisecond)
	}
	go func() {
		l.WaitNext(context.Background())
		done <- "the follow-up"
	}()
	first := <-done
	// The second is an interval after the first; half of one is the
	// margin for a slow machine.
	select {
	case second := <-done:
		t.Fatalf("%s and %s were let through together, at a rate of one every %v with a burst of 1", first, second, interval)
	case <-time.After(interval / 2):
	}
	<-done
}
