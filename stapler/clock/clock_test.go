package clock

import (
	"testing"
	"time"
)

func TestManualFiresTimersAsItAdvances(t *testing.T) {
	start := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	c := NewManual(start)
	timer := c.NewTimer(time.Hour)
	c.Advance(59 * time.Minute)
	select {
	case <-timer.C():
		t.Fatal("fired early")
	default:
	}
	c.Advance(time.Minute)
	select {
	case at := <-timer.C():
		if !at.Equal(start.Add(time.Hour)) {
			t.Fatalf("fired at %v", at)
		}
	default:
		t.Fatal("did not fire")
	}
	timer.ResetAt(c.Now().Add(time.Minute))
	if !timer.Stop() {
		t.Fatal("Stop of an active timer returned false")
	}
	c.Advance(time.Hour)
	select {
	case <-timer.C():
		t.Fatal("a stopped timer fired")
	default:
	}
	timer.ResetAt(c.Now().Add(-time.Second))
	select {
	case <-timer.C():
	default:
		t.Fatal("ResetAt in the past did not fire at once")
	}
	if c.Now() != start.Add(2*time.Hour) {
		t.Fatalf("now %v", c.Now())
	}
}
