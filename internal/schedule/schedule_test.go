package schedule

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/staplerkit/ocsp/stapler/clock"
)

// item is a test item: a name, its task, and a removed mark.
type item struct {
	name    string
	task    Task
	removed atomic.Bool
}

func (it *item) Task() *Task   { return &it.task }
func (it *item) Removed() bool { return it.removed.Load() }

// hangLimit is how long a test waits for what must happen: only a hang
// reaches it.
const hangLimit = time.Minute

// started runs s on clk with one worker that sends each item it is handed
// to the returned channel and then waits for release.
func started(t *testing.T, s *Scheduler[*item]) (ran <-chan *item, release chan<- struct{}) {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	out, rel := make(chan *item), make(chan struct{})
	go s.Run(ctx)
	go s.Serve(ctx, func(it *item) {
		select {
		case out <- it:
		case <-ctx.Done():
			return
		}
		select {
		case <-rel:
		case <-ctx.Done():
		}
	})
	return out, rel
}

func next(t *testing.T, ran <-chan *item) *item {
	t.Helper()
	select {
	case it := <-ran:
		return it
	case <-time.After(hangLimit):
		t.Fatal("no item was run")
		return nil
	}
}

// Items run in the order of their due times, each once it is due on the
// scheduler's clock, and an urgent item due goes before the others due.
func TestItemsRunWhenDueAndUrgentFirst(t *testing.T) {
	clk := clock.NewManual(time.Unix(1_000_000, 0))
	s := New[*item](clk)
	a, b, c := &item{name: "a"}, &item{name: "b"}, &item{name: "c"}
	now := clk.Now()
	s.Schedule(b, now.Add(2*time.Second))
	s.Schedule(a, now.Add(time.Second))
	s.Schedule(c, now.Add(3*time.Second))
	if got := s.DueAt(a); !got.Equal(now.Add(time.Second)) {
		t.Fatalf("a due at %v", got)
	}
	ran, release := started(t, s)
	clk.Advance(3 * time.Second) // all three due
	s.Hurry(c)
	for _, want := range []*item{c, a, b} {
		if got := next(t, ran); got != want {
			t.Fatalf("ran %s, want %s", got.name, want.name)
		}
		if s.Planned(want) || !s.DueAt(want).IsZero() {
			t.Fatalf("%s still planned while it runs", want.name)
		}
		if s.Next(want).IsZero() {
			t.Fatalf("%s's due time was lost while it runs", want.name)
		}
		release <- struct{}{}
	}
	for deadline := time.Now().Add(hangLimit); !s.Quiet(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the scheduler never went quiet after its runs ended")
		}
	}
}

// A removed item is never put back on the heap, and ScheduleEarlier and
// Hasten only ever move a plan earlier (Hasten only a plan on the heap).
func TestPlansOnlyMoveEarlierAndRemovedItemsStayOff(t *testing.T) {
	clk := clock.NewManual(time.Unix(1_000_000, 0))
	s := New[*item](clk)
	now := clk.Now()
	it := &item{name: "x"}
	s.Hasten(it, now)
	if s.Planned(it) {
		t.Fatal("Hasten planned an item that was not planned")
	}
	s.ScheduleEarlier(it, now.Add(time.Hour))
	s.ScheduleEarlier(it, now.Add(2*time.Hour))
	if got := s.DueAt(it); !got.Equal(now.Add(time.Hour)) {
		t.Fatalf("due at %v, want in an hour (a later plan moved it)", got)
	}
	s.Hasten(it, now.Add(3*time.Hour))
	s.Hasten(it, now.Add(time.Minute))
	if got := s.DueAt(it); !got.Equal(now.Add(time.Minute)) {
		t.Fatalf("due at %v, want in a minute", got)
	}
	s.Unschedule(it)
	if s.Planned(it) || !s.Next(it).IsZero() {
		t.Fatal("still planned after Unschedule")
	}
	it.removed.Store(true)
	s.Schedule(it, now)
	if s.Planned(it) {
		t.Fatal("a removed item was scheduled")
	}
}

// Jitter shortens by at most a tenth and never lengthens.
func TestJitterShortensByAtMostATenth(t *testing.T) {
	for range 1000 {
		if j := Jitter(time.Hour); j > time.Hour || j < 54*time.Minute {
			t.Fatalf("Jitter(1h) = %v", j)
		}
	}
	if Jitter(-time.Second) != 0 {
		t.Fatal("a negative duration was not made zero")
	}
}

// BenchmarkSchedulerDispatch is the scheduler's own cost per run:
// scheduling a due item and handing it to a worker.
func BenchmarkSchedulerDispatch(b *testing.B) {
	sched := New[*item](clock.System{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go sched.Run(ctx)
	items := make([]*item, 1024)
	for i := range items {
		items[i] = &item{}
	}
	now := time.Now()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		sched.Schedule(items[i%len(items)], now)
		<-sched.work
		i++
	}
}
