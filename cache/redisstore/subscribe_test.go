package redisstore

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/staplerkit/ocsp/cache/redisstore/redistest"
)

// TestAClusterMessageIsPassedOnOnce: a subscriber on a 3-master Cluster
// listens on every master, so it hears every PUBLISH three times; it
// passes a change on once. A marker published after it through the same
// master, in the old unnumbered form (passed on every time it is heard),
// shows when all three copies of the change have arrived: each master
// delivers in the order it received.
func TestAClusterMessageIsPassedOnOnce(t *testing.T) {
	cluster := redistest.StartCluster(t, 3)
	var mu sync.Mutex
	heard := map[string]int{}
	count := func(key string) int {
		mu.Lock()
		defer mu.Unlock()
		return heard[key]
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		New(cluster.Client(), "fleet:").Subscribe(ctx, func(key string) {
			mu.Lock()
			heard[key]++
			mu.Unlock()
		})
	}()
	defer func() { cancel(); <-done }()
	wait := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(hangLimit)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	for _, m := range cluster.Masters {
		c := redis.NewClient(&redis.Options{Addr: m.Addr()})
		defer c.Close()
		wait("a subscriber on "+m.Addr(), func() bool {
			n, _ := c.PubSubNumSub(ctx, "fleet:changes").Result()
			return n["fleet:changes"] == 1
		})
	}

	if err := New(cluster.Client(), "fleet:").Put(ctx, "X", []byte("v")); err != nil {
		t.Fatal(err)
	}
	node := redis.NewClient(&redis.Options{Addr: cluster.MasterFor("fleet:{X}").Addr()})
	defer node.Close()
	if err := node.Publish(ctx, "fleet:changes", "marker end").Err(); err != nil {
		t.Fatal(err)
	}
	wait("the marker from every master", func() bool { return count("end") == 3 })
	if n := count("X"); n != 1 {
		t.Fatalf("the change was passed on %d times, want 1", n)
	}
	// The three first subscriptions say once, together, that what came
	// before them was not heard.
	if n := count(""); n != 1 {
		t.Fatalf("the first subscriptions reported missed changes %d times, want 1", n)
	}
}

// FuzzHear: no payload from pubsub makes the subscriber panic, and none
// passes on this Store's own changes or an empty key.
func FuzzHear(f *testing.F) {
	for _, seed := range []string{"", " ", "a b", "self/1 k", "other/1 k", "other k", "/ ", "other/ k k", "x/y/z k"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, payload string) {
		from, _, _ := strings.Cut(payload, " ")
		sender, _, _ := strings.Cut(from, "/")
		h := &hearer{self: "self", seen: map[string]bool{}, f: func(key string) {
			if key == "" {
				t.Fatalf("%q passed on an empty key", payload)
			}
			if sender == "self" {
				t.Fatalf("%q, this Store's own change, passed on", payload)
			}
		}}
		h.hear(payload)
		h.hear(payload)
	})
}
