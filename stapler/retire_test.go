package stapler

import (
	"crypto/tls"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"
	"weak"

	"github.com/staplerkit/ocsp/responder"
)

// TestRotatingLeavesFollowTheLiveSet: an application's GetCertificate hands
// out a new leaf every day and serves each for three days (rotation, per-
// tenant certificates loaded on demand). Over a simulated month on the
// injected clock, the managed certificates, their memory and the responder
// requests follow the live set, not the total ever served; a listed
// certificate never retires; a retired leaf served again is managed afresh.
func TestRotatingLeavesFollowTheLiveSet(t *testing.T) {
	const day = 24 * time.Hour
	e := newEnv(t, on, WithIdleRetirement(2*day))
	listed, err := e.srv.Issue(responder.LeafOptions{DNSNames: []string{"listed.test"}})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	live := map[string]*tls.Certificate{}
	cfg := e.s.Wrap(&tls.Config{
		Certificates: []tls.Certificate{listed.Certificate},
		GetCertificate: func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
			mu.Lock()
			defer mu.Unlock()
			return live[h.ServerName], nil
		},
	})
	var all []*responder.Leaf
	var firstState weak.Pointer[managed] // the first day's leaf's state, once managed
	requestsOnDay := make([]int, 31)
	for d := range 30 {
		leaf, err := e.srv.Issue(responder.LeafOptions{DNSNames: []string{fmt.Sprintf("day%d.test", d)}})
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, leaf)
		mu.Lock()
		live[fmt.Sprintf("day%d.test", d)] = &leaf.Certificate
		delete(live, fmt.Sprintf("day%d.test", d-3))
		names := make([]string, 0, len(live))
		for n := range live {
			names = append(names, n)
		}
		mu.Unlock()
		before := e.r.RequestCount()
		// Handshakes through the day, every six hours.
		for range 4 {
			for _, n := range names {
				if _, err := cfg.GetCertificate(&tls.ClientHelloInfo{ServerName: n}); err != nil {
					t.Fatal(err)
				}
			}
			cfg.GetCertificate(&tls.ClientHelloInfo{ServerName: "listed.test"})
			e.clock.Advance(6 * time.Hour)
			time.Sleep(5 * time.Millisecond) // let due refreshes run
		}
		requestsOnDay[d] = e.r.RequestCount() - before
		if d == 0 {
			m, err := e.s.lookup(CertificateID(leaf.Cert.Raw))
			if err != nil {
				t.Fatal(err)
			}
			firstState = weak.Make(m)
		}
	}
	eventually(t, "the last retirements", func() bool { return len(e.s.Status()) <= 1+3+2 })
	n := len(e.s.Status())
	t.Logf("after a month: %d managed of %d ever served; requests per day %v; %d retired", n, len(all)+1, requestsOnDay, e.s.Metrics().Retired)
	if n > 1+3+2 {
		t.Fatalf("%d certificates still managed after a month; the live set is 1 listed + 3", n)
	}
	if _, err := e.s.StatusOf(CertificateID(listed.Cert.Raw)); err != nil {
		t.Fatalf("the listed certificate retired: %v", err)
	}
	if r := e.s.Metrics().Retired; r < 20 {
		t.Fatalf("%d retired, want most of the 30 rotated-out leaves", r)
	}
	// Requests on a late day follow the live set (4 certificates), not the
	// 31 ever served: a day's refreshes of 4 to 6 certificates.
	if last := requestsOnDay[28]; last > 6*30 {
		t.Fatalf("%d requests on day 28", last)
	}
	// A retired certificate's state is memory no more: nothing holds it.
	eventually(t, "the retired state to be collected", func() bool {
		runtime.GC()
		return firstState.Value() == nil
	})
	// Served again, a retired leaf is managed afresh, with a fetch.
	old := all[0]
	mu.Lock()
	live["day0.test"] = &old.Certificate
	mu.Unlock()
	c, err := cfg.GetCertificate(&tls.ClientHelloInfo{ServerName: "day0.test"})
	if err != nil {
		t.Fatal(err)
	}
	if c.OCSPStaple == nil {
		eventually(t, "day0 stapled again", func() bool {
			c, _ := cfg.GetCertificate(&tls.ClientHelloInfo{ServerName: "day0.test"})
			return c != nil && c.OCSPStaple != nil
		})
	}
	runtime.KeepAlive(all)
}

// TestMaxCertificatesRetiresTheLeastRecentlyServed: under a flood of
// distinct leaves, the bound holds, and the most recently served survive.
func TestMaxCertificatesRetiresTheLeastRecentlyServed(t *testing.T) {
	e := newEnv(t, on, WithMaxCertificates(16), WithIdleRetirement(0))
	var leaves []*responder.Leaf
	for i := range 64 {
		l, err := e.srv.Issue(responder.LeafOptions{DNSNames: []string{fmt.Sprintf("f%d.test", i)}})
		if err != nil {
			t.Fatal(err)
		}
		leaves = append(leaves, l)
	}
	cfg := e.s.Wrap(&tls.Config{GetCertificate: func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
		var i int
		fmt.Sscanf(h.ServerName, "f%d.test", &i)
		return &leaves[i].Certificate, nil
	}})
	for i := range leaves {
		cfg.GetCertificate(&tls.ClientHelloInfo{ServerName: fmt.Sprintf("f%d.test", i)})
		e.clock.Advance(2 * time.Second) // each served a little later than the last
		if n := len(e.s.Status()); n > 16 {
			t.Fatalf("%d managed with a bound of 16", n)
		}
	}
	if _, err := e.s.StatusOf(CertificateID(leaves[63].Cert.Raw)); err != nil {
		t.Fatalf("the most recently served leaf retired: %v", err)
	}
	if _, err := e.s.StatusOf(CertificateID(leaves[0].Cert.Raw)); err == nil {
		t.Fatal("the least recently served leaf is still managed")
	}
}
