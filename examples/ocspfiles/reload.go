package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// reloader runs the -reload command after files change, coalescing bursts:
// the first change after a quiet period starts a delay, every change during
// it (or during a run) is covered by one run at its end. A failed run is
// logged and retried at the next change.
type reloader struct {
	delay time.Duration
	run   func(context.Context) error
	log   *slog.Logger
	// afterFunc is time.AfterFunc; tests replace it to fire timers by hand.
	afterFunc func(time.Duration, func()) stopper
	// onRun, when set, is told each run's result (metrics).
	onRun func(error)

	mu      sync.Mutex
	pending bool // a change not yet covered by a run that started after it
	armed   bool // a timer will start a run
	running bool
	closed  bool
	timer   stopper
	idle    *sync.Cond
}

type stopper interface{ Stop() bool }

func newReloader(delay time.Duration, run func(context.Context) error, log *slog.Logger) *reloader {
	r := &reloader{delay: delay, run: run, log: log,
		afterFunc: func(d time.Duration, f func()) stopper { return time.AfterFunc(d, f) }}
	r.idle = sync.NewCond(&r.mu)
	return r
}

// trigger records a change: a run will follow, after the delay.
func (r *reloader) trigger() {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	r.pending = true
	if !r.armed && !r.running {
		r.armed = true
		r.timer = r.afterFunc(r.delay, r.fire)
	}
}

func (r *reloader) fire() {
	r.mu.Lock()
	r.armed = false
	if r.closed || !r.pending {
		r.idle.Broadcast()
		r.mu.Unlock()
		return
	}
	r.pending, r.running = false, true
	r.mu.Unlock()

	err := r.run(context.Background())
	if r.onRun != nil {
		r.onRun(err)
	}
	if err != nil {
		r.log.Error("reload command failed; it is run again at the next change", "err", err)
	} else {
		r.log.Info("reload command done")
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	r.running = false
	if r.pending && !r.closed {
		r.armed = true
		r.timer = r.afterFunc(r.delay, r.fire)
	}
	r.idle.Broadcast()
}

// close stops future runs and waits for a run under way.
func (r *reloader) close() {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	if r.armed && r.timer.Stop() {
		r.armed = false
	}
	for r.running || r.armed {
		r.idle.Wait()
	}
}

// waitIdle waits until no run is under way or due (for tests).
func (r *reloader) waitIdle() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for r.running || r.armed {
		r.idle.Wait()
	}
}

// maxCommandOutput bounds how much of a failed command's output is logged.
const maxCommandOutput = 4 << 10

// shellCommand runs command with sh -c, killing it and every process it
// started (its process group) when timeout passes: a reload that hangs must
// not hold up the next one forever.
func shellCommand(command string, timeout time.Duration) func(context.Context) error {
	return func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, "/bin/sh", "-c", command)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
		// A grandchild that keeps the output pipe open must not hold Wait.
		cmd.WaitDelay = time.Second
		var out bytes.Buffer
		cmd.Stdout = &limitedWriter{w: &out, n: maxCommandOutput}
		cmd.Stderr = cmd.Stdout
		err := cmd.Run()
		if ctx.Err() != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("%q killed after %v: %s", command, timeout, strings.TrimSpace(out.String()))
		}
		if err != nil {
			return fmt.Errorf("%q: %w: %s", command, err, strings.TrimSpace(out.String()))
		}
		return nil
	}
}

// limitedWriter keeps the first n bytes written and drops the rest.
type limitedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
	n  int
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if room := l.n - l.w.Len(); room > 0 {
		l.w.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}
