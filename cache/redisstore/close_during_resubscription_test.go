package redisstore

import (
	"runtime"
	"strings"
	"testing"
	"time"
)

// goroutinesRunning counts the goroutines whose stack mentions substr.
func goroutinesRunning(substr string) int {
	buf := make([]byte, 1<<22)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, substr) {
			n++
		}
	}
	return n
}

// TestCloseDuringResubscriptionLeaksNothing: Close while the
// subscription is being made again (Redis stopped answering, then killed)
// leaves no subscriber goroutine behind.
func TestCloseDuringResubscriptionLeaksNothing(t *testing.T) {
	f := newFleet(t, 0, 2)
	s := f.addNode()
	waitFor(t, "a subscriber", func() bool { return goroutinesRunning("redisstore.(*Store).listen") > 0 })
	f.redis.Stop()
	time.Sleep(2500 * time.Millisecond) // a ping goes unanswered: resubscribing
	f.redis.Continue()
	f.redis.Kill()
	time.Sleep(500 * time.Millisecond)
	s.Close()
	waitFor(t, "the subscriber goroutines to end after Close", func() bool {
		return goroutinesRunning("redisstore.(*Store).listen") == 0 && goroutinesRunning("redisstore.(*Store).Subscribe") == 0
	})
}
