package stapler

import (
	"container/heap"
	"context"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/staplerkit/ocsp/stapler/clock"
)

// scheduler keeps one timer heap for every managed certificate: one
// goroutine and one timer, however many certificates. Due certificates go to
// a fixed pool of workers, which bounds how many fetches run at once. It is
// the one owner of "when next": a certificate's due time (its next query)
// is set here and nowhere else, and read back with next. Only queries go
// through the heap: fleet notifications have a worker of their own
// (fleet.go), so a due time is never a guess to be undone.
type scheduler struct {
	clock clock.Clock
	work  chan *managed
	wake  chan struct{}

	mu    sync.Mutex // guards queue and every managed's due and index
	queue timerHeap
	// busy counts the certificates handed to a worker whose refresh has
	// not ended; guarded by mu.
	busy int
}

func newScheduler(c clock.Clock) *scheduler {
	return &scheduler{clock: c, work: make(chan *managed), wake: make(chan struct{}, 1)}
}

// schedule sets when m is next due, replacing any earlier plan.
func (s *scheduler) schedule(m *managed, at time.Time) {
	s.mu.Lock()
	if m.removed.Load() {
		// Removed or retired, perhaps while its query was in flight:
		// never put back. (Remove marks m before it unschedules it, so
		// either this sees the mark or the unscheduling follows.)
		s.mu.Unlock()
		return
	}
	m.due = at.UnixNano()
	m.urgent = false
	if m.index >= 0 {
		heap.Fix(&s.queue, int(m.index))
	} else {
		heap.Push(&s.queue, m)
	}
	first := s.queue[0] == m
	s.mu.Unlock()
	if first {
		s.poke()
	}
}

// scheduleEarlier moves m's next run to at if that is sooner than planned.
func (s *scheduler) scheduleEarlier(m *managed, at time.Time) {
	s.mu.Lock()
	later := m.index < 0 || at.UnixNano() < m.due
	s.mu.Unlock()
	if later {
		s.schedule(m, at)
	}
}

// hasten moves m's next run to at if m is planned (waiting in the heap,
// not running) later than at; a certificate being refreshed is left alone.
func (s *scheduler) hasten(m *managed, at time.Time) {
	s.mu.Lock()
	planned := m.index >= 0 && at.UnixNano() < m.due
	s.mu.Unlock()
	if planned {
		s.schedule(m, at)
	}
}

// unschedule removes m from the heap: no query is planned.
// hurry moves m, if it is planned and due by now, ahead of every other
// certificate: a handshake is waiting for its first staple. The rate limit
// and the workers still apply; only the order changes.
func (s *scheduler) hurry(m *managed) {
	s.mu.Lock()
	moved := m.index >= 0 && !m.urgent && m.due <= s.clock.Now().UnixNano()
	if moved {
		m.urgent = true
		heap.Fix(&s.queue, int(m.index))
	}
	s.mu.Unlock()
	if moved {
		s.poke()
	}
}

func (s *scheduler) unschedule(m *managed) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m.index >= 0 {
		heap.Remove(&s.queue, int(m.index))
	}
	m.due = 0
}

// planned reports whether m is on the heap: planned and not yet handed to
// a worker. A refresh that finds its certificate planned again was
// overtaken by a newer plan.
func (s *scheduler) planned(m *managed) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return m.index >= 0
}

// next reports when m's next query is planned: its due time, kept while a
// worker runs it (zero when none is planned).
func (s *scheduler) next(m *managed) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m.due == 0 {
		return time.Time{}
	}
	return time.Unix(0, m.due)
}

// dueAt reports when m is next due (zero when not scheduled).
func (s *scheduler) dueAt(m *managed) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m.index < 0 {
		return time.Time{}
	}
	return time.Unix(0, m.due)
}

// done notes that a refresh handed out has ended.
func (s *scheduler) done() {
	s.mu.Lock()
	s.busy--
	s.mu.Unlock()
}

// quiet reports whether no refresh is running and none is due by now:
// everything the clock's time calls for has been done.
func (s *scheduler) quiet() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.busy == 0 && (len(s.queue) == 0 || s.queue[0].due > s.clock.Now().UnixNano())
}

func (s *scheduler) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// run hands due certificates to the workers until ctx ends.
func (s *scheduler) run(ctx context.Context) {
	const idle = time.Hour
	timer := s.clock.NewTimer(idle)
	defer timer.Stop()
	for {
		s.mu.Lock()
		now := s.clock.Now()
		var next *managed
		deadline := now.Add(idle)
		if len(s.queue) > 0 {
			if due := s.queue[0].due; due <= now.UnixNano() {
				next = heap.Pop(&s.queue).(*managed)
				next.urgent = false
				s.busy++
			} else if due < deadline.UnixNano() {
				deadline = time.Unix(0, due)
			}
		}
		s.mu.Unlock()
		if next != nil {
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

// serve is a worker: it runs refresh for each certificate handed out, one
// at a time, until ctx ends.
func (s *scheduler) serve(ctx context.Context, refresh func(*managed)) {
	for {
		select {
		case m := <-s.work:
			refresh(m)
			s.done()
		case <-ctx.Done():
			return
		}
	}
}

// jitter returns d shortened by up to a tenth, at random, so that
// certificates loaded together do not refresh in the same second.
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return d - rand.N(d/10+1)
}

// timerHeap orders managed certificates by due time.
type timerHeap []*managed

func (h timerHeap) Len() int { return len(h) }
func (h timerHeap) Less(i, j int) bool {
	if h[i].urgent != h[j].urgent {
		return h[i].urgent
	}
	return h[i].due < h[j].due
}
func (h timerHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = int32(i), int32(j)
}
func (h *timerHeap) Push(x any) {
	m := x.(*managed)
	m.index = int32(len(*h))
	*h = append(*h, m)
}
func (h *timerHeap) Pop() any {
	old := *h
	m := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	m.index = -1
	return m
}
