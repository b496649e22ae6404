package schedule

import (
	"container/heap"
	"context"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/staplerkit/ocsp/stapler/clock"
)

// Task is an item's place in a Scheduler: its due time, its position in
// the heap and whether it is urgent. The zero Task is not scheduled. Only
// the Scheduler reads or writes it, under its lock.
type Task struct {
	due    int64 // Unix nanoseconds; 0 when none is planned
	pos    int32 // 1 + its index in the heap; 0 when not on it
	urgent bool  // taken before the items merely due
}

// Item is what a Scheduler schedules: a pointer whose Task is its own.
type Item interface {
	comparable
	// Task returns the item's Task, the same each time.
	Task() *Task
	// Removed reports whether the item is gone for good: it is never put
	// back on the heap.
	Removed() bool
}

// Scheduler keeps one timer heap for its items and is the one owner of
// "when next": an item's due time is set here and read back with Next.
type Scheduler[T Item] struct {
	clock clock.Clock
	work  chan T
	wake  chan struct{}

	mu    sync.Mutex // guards queue and every item's Task
	queue queue[T]
	// busy counts the items handed to a worker whose run has not ended.
	busy int
}

// New returns a Scheduler on clock c; Run and Serve start its work.
func New[T Item](c clock.Clock) *Scheduler[T] {
	return &Scheduler[T]{clock: c, work: make(chan T), wake: make(chan struct{}, 1)}
}

// Schedule sets when it is next due, replacing any earlier plan.
func (s *Scheduler[T]) Schedule(it T, at time.Time) {
	s.mu.Lock()
	if it.Removed() {
		// Removed, perhaps while it was running: never put back. (Its
		// owner marks it before it unschedules it, so either this sees
		// the mark or the unscheduling follows.)
		s.mu.Unlock()
		return
	}
	t := it.Task()
	t.due = at.UnixNano()
	t.urgent = false
	if t.pos > 0 {
		heap.Fix(&s.queue, int(t.pos-1))
	} else {
		heap.Push(&s.queue, it)
	}
	first := s.queue[0] == it
	s.mu.Unlock()
	if first {
		s.poke()
	}
}

// ScheduleEarlier moves it's next run to at if that is sooner than
// planned (or when none is).
func (s *Scheduler[T]) ScheduleEarlier(it T, at time.Time) {
	s.mu.Lock()
	t := it.Task()
	earlier := t.pos == 0 || at.UnixNano() < t.due
	s.mu.Unlock()
	if earlier {
		s.Schedule(it, at)
	}
}

// Hasten moves it's next run to at if it is planned (waiting in the heap,
// not running) later than at; an item being run is left alone.
func (s *Scheduler[T]) Hasten(it T, at time.Time) {
	s.mu.Lock()
	t := it.Task()
	planned := t.pos > 0 && at.UnixNano() < t.due
	s.mu.Unlock()
	if planned {
		s.Schedule(it, at)
	}
}

// Hurry moves it, if it is planned and due by now, ahead of every other
// item: something waits for its first result. The workers still apply;
// only the order changes.
func (s *Scheduler[T]) Hurry(it T) {
	s.mu.Lock()
	t := it.Task()
	moved := t.pos > 0 && !t.urgent && t.due <= s.clock.Now().UnixNano()
	if moved {
		t.urgent = true
		heap.Fix(&s.queue, int(t.pos-1))
	}
	s.mu.Unlock()
	if moved {
		s.poke()
	}
}

// Unschedule takes it off the heap: no run is planned.
func (s *Scheduler[T]) Unschedule(it T) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := it.Task()
	if t.pos > 0 {
		heap.Remove(&s.queue, int(t.pos-1))
	}
	t.due = 0
}

// Planned reports whether it is on the heap: planned and not yet handed
// to a worker. A run that finds its item planned again was overtaken by a
// newer plan.
func (s *Scheduler[T]) Planned(it T) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return it.Task().pos > 0
}

// Next reports when it's next run is planned: its due time, kept while a
// worker runs it (zero when none is planned).
func (s *Scheduler[T]) Next(it T) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	if due := it.Task().due; due != 0 {
		return time.Unix(0, due)
	}
	return time.Time{}
}

// DueAt reports when it is next due (zero when it is not on the heap).
func (s *Scheduler[T]) DueAt(it T) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t := it.Task(); t.pos > 0 {
		return time.Unix(0, t.due)
	}
	return time.Time{}
}

// done notes that a run handed out has ended.
func (s *Scheduler[T]) done() {
	s.mu.Lock()
	s.busy--
	s.mu.Unlock()
}

// Quiet reports whether nothing is running and nothing is due by now:
// everything the clock's time calls for has been done.
func (s *Scheduler[T]) Quiet() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.busy == 0 && (len(s.queue) == 0 || s.queue[0].Task().due > s.clock.Now().UnixNano())
}

func (s *Scheduler[T]) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Run hands due items to the workers until ctx ends.
func (s *Scheduler[T]) Run(ctx context.Context) {
	const idle = time.Hour
	timer := s.clock.NewTimer(idle)
	defer timer.Stop()
	for {
		s.mu.Lock()
		now := s.clock.Now()
		var next T
		var found bool
		deadline := now.Add(idle)
		if len(s.queue) > 0 {
			if due := s.queue[0].Task().due; due <= now.UnixNano() {
				next, found = heap.Pop(&s.queue).(T), true
				next.Task().urgent = false
				s.busy++
			} else if due < deadline.UnixNano() {
				deadline = time.Unix(0, due)
			}
		}
		s.mu.Unlock()
		if found {
			select {
			case s.work <- next:
			case <-ctx.Done():
				s.done()
				return
			}
			continue
		}
		timer.ResetAt(deadline)
		select {
		case <-timer.C():
		case <-s.wake:
		case <-ctx.Done():
			return
		}
	}
}

// Serve is a worker: it runs run for each item handed out, one at a time,
// until ctx ends.
func (s *Scheduler[T]) Serve(ctx context.Context, run func(T)) {
	for {
		select {
		case it := <-s.work:
			run(it)
			s.done()
		case <-ctx.Done():
			return
		}
	}
}

// Jitter returns d shortened by up to a tenth, at random, so that items
// loaded together do not run in the same second.
func Jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return d - rand.N(d/10+1)
}

// queue orders items by urgency, then due time.
type queue[T Item] []T

func (h queue[T]) Len() int { return len(h) }
func (h queue[T]) Less(i, j int) bool {
	a, b := h[i].Task(), h[j].Task()
	if a.urgent != b.urgent {
		return a.urgent
	}
	return a.due < b.due
}
func (h queue[T]) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].Task().pos, h[j].Task().pos = int32(i+1), int32(j+1)
}
func (h *queue[T]) Push(x any) {
	it := x.(T)
	it.Task().pos = int32(len(*h) + 1)
	*h = append(*h, it)
}
func (h *queue[T]) Pop() any {
	old := *h
	it := old[len(old)-1]
	var zero T
	old[len(old)-1] = zero
	*h = old[:len(old)-1]
	it.Task().pos = 0
	return it
}
