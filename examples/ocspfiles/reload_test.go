package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// manualTimers replaces time.AfterFunc: timers fire when the test says.
type manualTimers struct {
	mu      sync.Mutex
	pending []*manualTimer
}

type manualTimer struct {
	f       func()
	stopped bool
}

func (m *manualTimer) Stop() bool {
	was := !m.stopped
	m.stopped = true
	return was
}

func (m *manualTimers) afterFunc(_ time.Duration, f func()) stopper {
	m.mu.Lock()
	defer m.mu.Unlock()
	t := &manualTimer{f: f}
	m.pending = append(m.pending, t)
	return t
}

// fire runs the timers armed so far and reports how many ran.
func (m *manualTimers) fire() int {
	m.mu.Lock()
	timers := m.pending
	m.pending = nil
	m.mu.Unlock()
	n := 0
	for _, t := range timers {
		if !t.stopped {
			t.stopped = true
			t.f()
			n++
		}
	}
	return n
}

func (m *manualTimers) armed() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, t := range m.pending {
		if !t.stopped {
			n++
		}
	}
	return n
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// TestABurstOfChangesReloadsOnce: every change made before the delay ends
// is covered by one run.
func TestABurstOfChangesReloadsOnce(t *testing.T) {
	var runs int
	timers := &manualTimers{}
	r := newReloader(time.Second, func(context.Context) error { runs++; return nil }, discardLogger())
	r.afterFunc = timers.afterFunc
	for range 100 {
		r.trigger()
	}
	if n := timers.armed(); n != 1 {
		t.Fatalf("%d timers armed by a burst, want 1", n)
	}
	timers.fire()
	if runs != 1 {
		t.Fatalf("%d runs for a burst, want 1", runs)
	}
	if n := timers.armed(); n != 0 {
		t.Fatalf("%d timers armed after the run, want none", n)
	}
	r.trigger()
	timers.fire()
	if runs != 2 {
		t.Fatalf("a later change: %d runs, want 2", runs)
	}
}

// TestChangesDuringAReloadRunItOnceMore: changes made while the command
// runs are not lost (the command may have read the files before them), and
// however many there are, they make one more run.
func TestChangesDuringAReloadRunItOnceMore(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	var mu sync.Mutex
	runs := 0
	r := newReloader(0, func(context.Context) error {
		mu.Lock()
		runs++
		first := runs == 1
		mu.Unlock()
		if first {
			close(started)
			<-release
		}
		return nil
	}, discardLogger())
	r.trigger()
	select {
	case <-started:
	case <-time.After(hang):
		t.Fatal("the first run did not start")
	}
	for range 50 {
		r.trigger()
	}
	close(release)
	r.waitIdle()
	mu.Lock()
	defer mu.Unlock()
	if runs != 2 {
		t.Fatalf("%d runs, want 2 (the first, and one for the changes made during it)", runs)
	}
}

// TestAFailedReloadIsRunAgainAtTheNextChange.
func TestAFailedReloadIsRunAgainAtTheNextChange(t *testing.T) {
	var results []error
	timers := &manualTimers{}
	fail := true
	r := newReloader(time.Second, func(context.Context) error {
		if fail {
			return errors.New("nginx: [emerg] bad config")
		}
		return nil
	}, discardLogger())
	r.afterFunc = timers.afterFunc
	r.onRun = func(err error) { results = append(results, err) }
	r.trigger()
	timers.fire()
	if len(results) != 1 || results[0] == nil {
		t.Fatalf("results %v", results)
	}
	if timers.armed() != 0 {
		t.Fatal("a failed run is retried without a change")
	}
	fail = false
	r.trigger()
	timers.fire()
	if len(results) != 2 || results[1] != nil {
		t.Fatalf("results %v", results)
	}
}

// TestAHangingReloadCommandIsKilled: the command, and what it started, is
// killed at the timeout, and the error says so.
func TestAHangingReloadCommandIsKilled(t *testing.T) {
	done := make(chan error, 1)
	go func() {
		done <- shellCommand("echo starting; sleep 600 & sleep 600", 200*time.Millisecond)(context.Background())
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "killed after") || !strings.Contains(err.Error(), "starting") {
			t.Fatalf("err = %v", err)
		}
	case <-time.After(hang):
		t.Fatal("the hanging command was not killed")
	}
}

func TestReloadCommandFailureQuotesItsOutput(t *testing.T) {
	err := shellCommand("echo 'nginx: [emerg] unknown directive' >&2; exit 1", time.Minute)(context.Background())
	if err == nil || !strings.Contains(err.Error(), "unknown directive") {
		t.Fatalf("err = %v", err)
	}
	if err := shellCommand("true", time.Minute)(context.Background()); err != nil {
		t.Fatal(err)
	}
}
