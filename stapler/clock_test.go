package stapler

import (
	"context"
	"testing"
	"time"
)

// The handshake clock reads the time it is even when the goroutine that
// refreshes it has not run for a long while (the process was paused: a VM
// pause, SIGSTOP): a staple that expired meanwhile is not served.
func TestHandshakeClockIsNotStaleAfterAPause(t *testing.T) {
	c := newCoarseClock()
	start := time.Now()
	c.set(start)
	// Ten minutes pass on the monotonic clock and the refreshing goroutine
	// never runs (moving the base back is what a pause looks like to it).
	c.base = c.base.Add(-10 * time.Minute)
	got := time.Unix(0, c.now())
	if d := got.Sub(start); d < 10*time.Minute || d > 10*time.Minute+time.Hour {
		t.Fatalf("after a 10-minute pause the clock moved %v", d)
	}
	s := &Stapler{coarse: c}
	staple := &view{expires: start.Add(5 * time.Minute).UnixNano(), hasStaple: true}
	if s.usable(staple) {
		t.Fatal("a staple that expired during the pause is still usable")
	}
	c.stop()
	if c.now() != 0 {
		t.Fatal("a stopped clock reads a time")
	}
}

// A certificate removed while its query was in flight is never put back
// on the scheduler by that query's outcome (which plans the next query).
func TestARemovedCertificateIsNeverScheduledAgain(t *testing.T) {
	e := newEnv(t, on)
	e.wrapAndServe(e.leaf.Certificate)
	e.waitStapled(e.leaf)
	m, err := e.s.lookup(CertificateID(e.leaf.Cert.Raw))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.s.Remove(m.ID()); err != nil {
		t.Fatal(err)
	}
	// What a refresh in flight does when its outcome lands after Remove.
	e.s.sched.Schedule(m, e.clock.Now())
	if due := e.s.sched.DueAt(m); !due.IsZero() {
		t.Fatalf("a removed certificate was scheduled again, due %v", due)
	}
	o := e.s.query(context.Background(), m)
	e.s.record(m, o)
	if due := e.s.sched.DueAt(m); !due.IsZero() {
		t.Fatalf("a query's outcome scheduled a removed certificate again, due %v", due)
	}
}
