package redisstore

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/staplerkit/ocsp/stapler"
	"github.com/staplerkit/ocsp/stapler/clock"
)

// TestFleetScaleStartups starts 10 and 20 Staplers together (-fleet.scale.sizes),
// each serving the same 1,000 certificates (-fleet.scale.certs), on one
// redis-server, -fleet.scale times per size (each on an empty Redis, with
// new Staplers), and asks whether every node × certificate pair ends up
// stapled from the fleet's one response with the clock standing still:
// a node that found another's lease planned a look on its clock later, and
// only the notification that the response was stored can make it staple
// before that look. It waits until every pair is stapled, or until the
// fleet is idle (no lease left in Redis, no pair stapled and no request
// made for 10 s of real time); then counts the pairs not stapled, and
// moves the clock in 100 ms steps to see what the clock alone brings.
// Run only with -fleet.loop > 0.
func TestFleetScaleStartups(t *testing.T) {
	if *fleetLoopN <= 0 {
		t.Skip("runs only with -fleet.loop=N (.ci/fleetloop)")
	}
	for _, size := range strings.Split(*fleetScaleSize, ",") {
		nodes, err := strconv.Atoi(size)
		if err != nil {
			t.Fatal(err)
		}
		t.Run(fmt.Sprintf("%d nodes × %d certificates", nodes, *fleetScaleCert), func(t *testing.T) {
			f := newFleet(t, 0, *fleetScaleCert)
			var summary []string
			failed := 0
			for run := 1; run <= *fleetScaleRuns; run++ {
				line, ok := scaleStartup(t, f, nodes, run)
				summary = append(summary, line)
				if !ok {
					failed++
				}
			}
			t.Logf("%d start-ups:\n  %s", *fleetScaleRuns, strings.Join(summary, "\n  "))
			if failed > 0 {
				t.Errorf("%d of %d start-ups left pairs unstapled with the clock standing still", failed, *fleetScaleRuns)
			}
		})
	}
}

// scaleStartup starts n nodes together on an empty Redis and reports what
// they stapled; ok when every pair was stapled with the clock still.
func scaleStartup(t *testing.T, f *fleet, n, run int) (string, bool) {
	ctx := context.Background()
	admin := f.redis.Client()
	if err := admin.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	f.r.ResetRequests()
	// A clock of their own, standing still unless moved below.
	clk := clock.NewManual(f.clock.Now().Add(time.Duration(run) * 24 * time.Hour))
	f.r.SetClock(clk.Now)
	var certs []tls.Certificate
	for _, l := range f.leaves {
		certs = append(certs, l.Certificate)
	}
	nodes := make([]*stapler.Stapler, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			s, err := stapler.New(fleetConfig,
				stapler.WithClock(clk),
				stapler.WithLogger(slog.New(newLogCounter(testLogger().Handler()))),
				stapler.WithStore(New(f.redis.Client(), "fleet:")),
				stapler.WithColdWait(10*time.Millisecond),
				stapler.WithRateLimit(0, 0))
			if err != nil {
				t.Error(err)
				return
			}
			s.Wrap(&tls.Config{Certificates: certs})
			nodes[i] = s
		})
	}
	began := time.Now()
	close(start)
	wg.Wait()
	defer func() {
		for _, s := range nodes {
			if s != nil {
				s.Close()
			}
		}
	}()
	if t.Failed() {
		t.FailNow()
	}
	total := n * len(f.leaves)
	stapled := func() int {
		k := 0
		for _, s := range nodes {
			for _, st := range s.Status() {
				if st.Stapled {
					k++
				}
			}
		}
		return k
	}
	leases := func() int {
		keys, _ := admin.Keys(ctx, "fleet:*:lease").Result()
		return len(keys)
	}
	// Wait, the clock standing still, until every pair is stapled or the
	// fleet is idle.
	lastProgress, lastStapled, lastRequests := time.Now(), -1, -1
	deadline := time.Now().Add(5 * hangLimit)
	var got int
	for {
		got = stapled()
		reqs := f.r.RequestCount()
		if got == total {
			break
		}
		if got != lastStapled || reqs != lastRequests {
			lastProgress, lastStapled, lastRequests = time.Now(), got, reqs
		} else if time.Since(lastProgress) > 10*time.Second && leases() == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("start-up %d: still not idle after %v: %d of %d pairs stapled, %d leases", run, 5*hangLimit, got, total, leases())
		}
		time.Sleep(100 * time.Millisecond)
	}
	took := time.Since(began).Round(100 * time.Millisecond)
	unstapledStill := total - got
	// What the fleet's one response per certificate comes to: requests
	// per certificate, and nodes stapling another response than node 0.
	counts := f.requestsPerLeaf()
	extra := 0
	for _, l := range f.leaves {
		if c := counts[l.Cert.SerialNumber.String()]; c > 1 {
			extra += c - 1
		}
	}
	// Then the clock: 100 ms steps until every pair is stapled (at most a
	// minute of clock).
	moved := time.Duration(0)
	for stapled() < total && moved < time.Minute {
		clk.Advance(100 * time.Millisecond)
		moved += 100 * time.Millisecond
		time.Sleep(20 * time.Millisecond)
	}
	after := total - stapled()
	different := 0
	for j := range f.leaves {
		id := stapler.CertificateID(f.leaves[j].Cert.Raw)
		var first string
		for i, s := range nodes {
			st, _ := s.StatusOf(id)
			key := st.ThisUpdate.String()
			if i == 0 {
				first = key
			} else if key != first {
				different++
			}
		}
	}
	line := fmt.Sprintf("start-up %d (clock %s): %d of %d pairs unstapled with the clock still (idle after %v); %d extra responder requests over %d certificates; after moving the clock %v: %d unstapled; %d pairs with another thisUpdate than node 0",
		run, clk.Now().Format(time.RFC3339), unstapledStill, total, took, extra, len(f.leaves), moved, after, different)
	t.Log(line)
	return line, unstapledStill == 0
}
