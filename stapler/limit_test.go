package stapler

import (
	"context"
	"testing"
	"time"
)

func TestLimiterSpacesRequests(t *testing.T) {
	l := newLimiter(200, 5)
	start := time.Now()
	for range 25 {
		if err := l.wait(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	// 5 go at once, the other 20 one every 5 ms: at least 95 ms. (Only a
	// lower bound: a slow machine may take longer, never shorter.)
	if elapsed := time.Since(start); elapsed < 95*time.Millisecond {
		t.Fatalf("25 requests at 200/s with a burst of 5 took only %v", elapsed)
	}
	if newLimiter(0, 0) != nil {
		t.Fatal("rate 0 should mean no limit")
	}
	var none *limiter
	if err := none.wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	slow := newLimiter(0.001, 1)
	slow.wait(ctx) // takes the burst
	if err := slow.wait(ctx); err == nil {
		t.Fatal("wait ignored a cancelled context")
	}
}
