package stapler

import (
	"crypto/tls"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
)

// PASSING PROBE. TestReWrapStorm: one goroutine wraps the same leaf
// again and again with alternating chains (each a new list entry taking
// the state's view), a GetConfigForClient returns a new application config
// on every call (wrapped each time: the view moves on every handshake), and
// handshakes run on the old wrapped configs, the newest, and real
// connections, while the staple is refreshed. Every handshake must get the
// chain its config held, by identity, and a staple of the leaf once
// stapled; -race must see nothing.
func TestReWrapStorm(t *testing.T) {
	e := newEnv(t, on)
	k := &attack5StapleChecker{t: t, e: e}
	chains := [][][]byte{e.leaf.Certificate.Certificate, slices.Clone(e.leaf.Certificate.Certificate)}
	certOf := func(i int) tls.Certificate {
		c := e.leaf.Certificate
		c.Certificate = chains[i%2]
		return c
	}
	type wrapped struct {
		cfg   *tls.Config
		chain [][]byte
	}
	var olds []wrapped
	for i := range 4 {
		c := certOf(i)
		olds = append(olds, wrapped{e.s.Wrap(&tls.Config{Certificates: []tls.Certificate{c}}), c.Certificate})
	}
	var n atomic.Int64
	perCall := e.s.Wrap(&tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
		c := certOf(int(n.Add(1)))
		return &tls.Config{Certificates: []tls.Certificate{c}}, nil
	}})
	addr := e.serve(olds[0].cfg)
	e.mustGetStaple(addr, e.leaf, 0)

	var newest atomic.Pointer[wrapped]
	newest.Store(&olds[3])
	var failure atomic.Pointer[string]
	fail := func(s string) { failure.CompareAndSwap(nil, &s) }
	check := func(w wrapped, hello *tls.ClientHelloInfo) {
		c, err := w.cfg.GetCertificate(hello)
		switch {
		case err != nil:
			fail("error: " + err.Error())
		case !sameSlice(c.Certificate, w.chain):
			fail("another chain than its config held")
		case c.OCSPStaple == nil:
			fail("no staple")
		case !k.ok(c.OCSPStaple):
			fail("a staple not the leaf's")
		}
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	// Stopped however the test ends: left running after a failure, the
	// goroutines would allocate under the next tests' AllocsPerRun.
	defer func() { stop.Store(true); wg.Wait() }()
	wg.Add(4)
	go func() { // the storm of Wraps
		defer wg.Done()
		for i := 0; i < 300 && failure.Load() == nil && !stop.Load(); i++ {
			c := certOf(i)
			w := wrapped{e.s.Wrap(&tls.Config{Certificates: []tls.Certificate{c}}), c.Certificate}
			check(w, helloFor())
			newest.Store(&w)
		}
		stop.Store(true)
	}()
	for g := range 2 {
		go func() {
			defer wg.Done()
			hello := helloFor()
			if g == 1 {
				hello = &tls.ClientHelloInfo{}
			}
			for !stop.Load() && failure.Load() == nil {
				for _, w := range olds {
					check(w, hello)
				}
				check(*newest.Load(), hello)
				inner, err := perCall.GetConfigForClient(hello)
				if err != nil {
					fail(err.Error())
					continue
				}
				c, err := inner.GetCertificate(hello)
				if err != nil || c.OCSPStaple == nil || !k.ok(c.OCSPStaple) {
					fail("a per-call config's handshake without the leaf's staple")
				}
			}
		}()
	}
	go func() { // real handshakes, TLS 1.2 and 1.3, with and without SNI
		defer wg.Done()
		for i := 0; !stop.Load() && failure.Load() == nil; i++ {
			staple, st, err := e.handshake(addr, func(c *tls.Config) {
				if i%2 == 0 {
					c.MaxVersion = tls.VersionTLS12
				}
				if i%3 == 0 {
					c.ServerName = "127.0.0.1"
				}
			})
			if err != nil || !k.ok(staple) || staple == nil || len(st.PeerCertificates) != 2 {
				fail("a real handshake without its staple or chain")
			}
		}
	}()
	for round := 0; round < 5 && !stop.Load(); round++ {
		before := e.advanceToNextRefresh(e.leaf)
		e.waitQueries(e.leaf, before+1)
	}
	wg.Wait()
	if p := failure.Load(); p != nil {
		t.Fatalf("a handshake got %s", *p)
	}
}
