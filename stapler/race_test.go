package stapler

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	cryptorand "crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/staplerkit/ocsp/config"
	"github.com/staplerkit/ocsp/responder"
	"golang.org/x/crypto/ocsp"
)

var soakDuration = flag.Duration("soak", 2*time.Second, "how long TestRaceSoak runs (go test ./stapler -run Soak -race -soak 10m)")

// TestRaceSoak does handshakes from many goroutines while others update the
// configuration, change per-certificate settings, rotate certificates and
// flap the responder. Under the lenient policy no handshake may fail, and
// every staple a client receives must verify for the certificate it came
// with and not have expired.
func TestRaceSoak(t *testing.T) {
	ca, err := responder.NewCA(responder.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r := responder.New(ca)
	srv := responder.NewServer(r)
	defer srv.Close()
	s, err := New(config.OCSP{OCSPFunctionality: true}, WithLogger(quietLogger()), WithColdWait(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	// A pool of certificates the application rotates through.
	var pool []*responder.Leaf
	for i := range 6 {
		kt := responder.ECDSA
		if i%3 == 0 {
			kt = responder.RSA
		}
		leaf, err := srv.Issue(responder.LeafOptions{KeyType: kt})
		if err != nil {
			t.Fatal(err)
		}
		pool = append(pool, leaf)
	}
	var current atomic.Pointer[tls.Certificate]
	current.Store(&pool[0].Certificate)
	cfg := s.Wrap(&tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return current.Load(), nil }})
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	var serverWG sync.WaitGroup
	defer func() { ln.Close(); serverWG.Wait() }()
	serverWG.Add(1)
	go func() {
		defer serverWG.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			serverWG.Add(1)
			go func() {
				defer serverWG.Done()
				conn.SetDeadline(time.Now().Add(hangLimit))
				conn.(*tls.Conn).Handshake()
				conn.Close()
			}()
		}
	}()
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)

	// The soak runs for soakDuration and, on a machine too busy to staple
	// anything that soon, on until a handshake has been stapled (only a
	// hang reaches hangLimit).
	ctx, cancel := context.WithTimeout(context.Background(), max(*soakDuration, hangLimit))
	defer cancel()
	var wg sync.WaitGroup
	var handshakes, stapled atomic.Int64
	go func() {
		end := time.NewTimer(*soakDuration)
		defer end.Stop()
		select {
		case <-end.C:
		case <-ctx.Done():
			return
		}
		for stapled.Load() == 0 && ctx.Err() == nil {
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
	}()
	loop := func(f func()) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				f()
			}
		}()
	}
	for range 6 {
		loop(func() {
			conn, err := tls.DialWithDialer(&net.Dialer{Timeout: hangLimit}, "tcp", ln.Addr().String(), &tls.Config{RootCAs: roots, ServerName: "localhost"})
			if err != nil {
				t.Errorf("handshake failed under the lenient policy: %v", err)
				return
			}
			st := conn.ConnectionState()
			conn.Close()
			handshakes.Add(1)
			if st.OCSPResponse == nil {
				return
			}
			stapled.Add(1)
			resp, err := ocsp.ParseResponseForCert(st.OCSPResponse, st.PeerCertificates[0], ca.Cert)
			if err != nil {
				t.Errorf("a staple does not verify for the certificate it came with: %v", err)
				return
			}
			until := resp.NextUpdate
			if until.IsZero() {
				until = resp.ThisUpdate.Add(DefaultNoNextUpdateLifetime)
			}
			if !time.Now().Before(until) {
				t.Errorf("an expired staple was served")
			}
		})
	}
	loop(func() { // the configuration
		u := config.OCSPUpdate{QueryFrequency: ptr(60 + rand.IntN(4000)), RecoveryMaxTries: ptr(rand.IntN(120))}
		before := s.Get()
		if got, err := s.Update(u); err != nil && got != before {
			t.Errorf("a rejected update changed the configuration")
		}
		time.Sleep(time.Millisecond)
	})
	loop(func() { // per-certificate settings
		leaf := pool[rand.IntN(len(pool))]
		s.UpdateStapling(CertificateID(leaf.Cert.Raw), config.StaplingUpdate{CacheTTL: ptr(30 + rand.IntN(7200)), Enabled: ptr(rand.IntN(8) != 0)})
		time.Sleep(time.Millisecond)
	})
	loop(func() { // rotation
		current.Store(&pool[rand.IntN(len(pool))].Certificate)
		time.Sleep(2 * time.Millisecond)
	})
	faults := responder.AllFaults()
	loop(func() { // a flapping responder
		if rand.IntN(2) == 0 {
			r.SetFault(responder.Fault{})
		} else if k := faults[rand.IntN(len(faults))]; k != responder.FaultHang && k != responder.FaultHugeBody {
			r.SetFault(responder.Fault{Kind: k})
		}
		time.Sleep(3 * time.Millisecond)
	})
	loop(func() { // operators asking the responder now
		leaf := pool[rand.IntN(len(pool))]
		tctx, tcancel := context.WithTimeout(ctx, 500*time.Millisecond)
		s.Test(tctx, CertificateID(leaf.Cert.Raw))
		tcancel()
		s.Status()
	})
	wg.Wait()
	if handshakes.Load() == 0 || stapled.Load() == 0 {
		t.Fatalf("%d handshakes, %d stapled: the soak did nothing", handshakes.Load(), stapled.Load())
	}
	t.Logf("%d handshakes, %d stapled", handshakes.Load(), stapled.Load())
}

// Real handshakes on several wrapped configs (a Clone per connection with
// other versions, a GetConfigForClient config) while the application wraps
// again, removes certificates, changes their settings and the
// configuration. Run with -race.
func TestRaceHandshakesWrapRemove(t *testing.T) {
	e := newEnv(t, on)
	var certs []tls.Certificate
	for i := 0; i < 4; i++ {
		kt := responder.ECDSA
		if i%2 == 1 {
			kt = responder.RSA
		}
		l, err := e.srv.Issue(responder.LeafOptions{KeyType: kt, DNSNames: []string{"www.example.com", "*.example.com"}})
		if err != nil {
			t.Fatal(err)
		}
		certs = append(certs, l.Certificate)
	}
	base := &tls.Config{Certificates: certs}
	wrapped := e.s.Wrap(base)
	inner := &tls.Config{Certificates: certs[1:]}
	outer := e.s.Wrap(&tls.Config{Certificates: certs[:1], GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) { return inner, nil }})
	roots := x509.NewCertPool()
	roots.AddCert(e.ca.Cert)
	var stop atomic.Bool
	var wg sync.WaitGroup
	const rounds = 40
	for g := 0; g < 3; g++ {
		wg.Go(func() {
			for i := 0; i < rounds; i++ {
				srv := wrapped.Clone()
				if i%2 == 0 {
					srv.MaxVersion = tls.VersionTLS12
				}
				if g == 2 {
					srv = outer
				}
				client := func(c *tls.Config) {
					if i%3 == 0 {
						c.MaxVersion = tls.VersionTLS12
					}
				}
				loopbackHandshake(t, srv, roots, "a.example.com", client)
			}
		})
	}
	wg.Go(func() {
		for i := 0; !stop.Load() && i < 200; i++ {
			c := base.Clone()
			c.MinVersion = tls.VersionTLS12
			e.s.Wrap(c)
			id := CertificateID(certs[i%len(certs)].Certificate[0])
			e.s.Remove(id)
			e.s.SetPolicy(id, Strict)
			e.s.UpdateStapling(id, config.StaplingUpdate{})
			e.s.Status()
		}
	})
	wg.Wait()
	stop.Store(true)
}

// Promises "never another certificate's staple", "no panic", "-race clean".
// Two wrapped configs list the same two leaves in opposite orders (and a
// third lists one of them alone) while a goroutine removes the leaves over
// and over, so that handshakes re-register them (wrapper.readd) from both
// configs at once. Every staple served must be the served leaf's own; the
// leaves end up stapled again.
func TestReaddRaceSharedLeaves(t *testing.T) {
	e := newEnv(t, on)
	issue := func(names ...string) *responder.Leaf { return e.mustIssue(responder.ECDSA, names...) }
	a, b := issue("a.test", "localhost"), issue("b.test", "localhost")
	addrs := []string{
		e.serve(e.s.Wrap(&tls.Config{Certificates: []tls.Certificate{a.Certificate, b.Certificate}})),
		e.serve(e.s.Wrap(&tls.Config{Certificates: []tls.Certificate{b.Certificate, a.Certificate}})),
		e.serve(e.s.Wrap(&tls.Config{Certificates: []tls.Certificate{a.Certificate}})),
	}
	e.waitStapled(a)
	e.waitStapled(b)
	var stop atomic.Bool
	var wg sync.WaitGroup
	var handshakes atomic.Int64
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			names := []string{"a.test", "b.test", "localhost"}
			for i := 0; !stop.Load(); i++ {
				addr := addrs[(g+i)%len(addrs)]
				name := names[i%len(names)]
				if addr == addrs[2] && name == "b.test" {
					name = "a.test" // the third config lists a only
				}
				st, cs, err := e.handshake(addr, func(c *tls.Config) { c.ServerName = name })
				if err != nil {
					t.Errorf("handshake %s: %v", name, err)
					return
				}
				handshakes.Add(1)
				if len(st) == 0 {
					continue
				}
				r, err := ocsp.ParseResponse(st, nil)
				if err != nil {
					t.Errorf("staple does not parse: %v", err)
					return
				}
				if leaf := cs.PeerCertificates[0]; r.SerialNumber.Cmp(leaf.SerialNumber) != 0 {
					t.Errorf("%s: leaf serial %v served with the staple of serial %v", name, leaf.SerialNumber, r.SerialNumber)
					return
				}
			}
		}()
	}
	for i := range 200 {
		l := a
		if i%2 == 1 {
			l = b
		}
		e.s.Remove(CertificateID(l.Cert.Raw)) // may be removed already: error ignored
		before := handshakes.Load()
		eventually(t, "handshakes", func() bool { return handshakes.Load() > before+1 || t.Failed() })
		if t.Failed() {
			break
		}
	}
	stop.Store(true)
	wg.Wait()
	// Served again, both are registered and stapled again.
	for _, addr := range addrs[:2] {
		for _, n := range []string{"a.test", "b.test"} {
			if _, _, err := e.handshake(addr, func(c *tls.Config) { c.ServerName = n }); err != nil {
				t.Fatal(err)
			}
		}
	}
	e.waitStapled(a)
	e.waitStapled(b)
}

// One goroutine wraps the same leaf again and again with alternating chains
// (each a new list entry taking the state's view), a GetConfigForClient
// returns a new application config on every call (wrapped each time: the
// view moves on every handshake), and handshakes run on the old wrapped
// configs, the newest, and real connections, while the staple is refreshed.
// Every handshake must get the chain its config held, by identity, and a
// staple of the leaf once stapled; -race must see nothing.
func TestReWrapStorm(t *testing.T) {
	e := newEnv(t, on)
	k := &stapleChecker{t: t, e: e}
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

// stapleChecker verifies staples for one leaf, each distinct staple
// (by its bytes' address) once: a signature check per call would be too
// slow under -race.
type stapleChecker struct {
	t    *testing.T
	e    *env
	seen sync.Map // *byte -> struct{}
}

func (k *stapleChecker) ok(staple []byte) bool {
	if staple == nil {
		return true
	}
	p := unsafe.SliceData(staple)
	if _, ok := k.seen.Load(p); ok {
		return true
	}
	if _, err := ocsp.ParseResponseForCert(staple, k.e.leaf.Cert, k.e.ca.Cert); err != nil {
		return false
	}
	k.seen.Store(p, struct{}{})
	return true
}

// Many configs list the same leaf with different chains (and one with
// another key object), an application GetCertificate hands out fresh
// copies, a GetConfigForClient alternates between two configs; handshakes
// race refreshes, re-Wraps, Remove, and OCSP turned off and on. Every
// handshake must get what its config held (chain and key, by identity), and
// a staple, when there is one, must be the leaf's.
func TestSameLeafConfigsUnderChurn(t *testing.T) {
	e := newEnv(t, on)
	k := &stapleChecker{t: t, e: e}
	full := e.leaf.Certificate
	// Another chain of the same content (not the leaf alone: a state
	// registered again, after Remove, from a chain without the issuer is
	// never stapled; see TestRemoveThenLeafOnlyFirstKeepsTheIssuer).
	leafOnly := full
	leafOnly.Certificate = slices.Clone(full.Certificate)
	otherKey, err := ecdsa.GenerateKey(elliptic.P256(), cryptorand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	withOtherKey := full
	withOtherKey.Certificate = slices.Clone(full.Certificate)
	withOtherKey.PrivateKey = otherKey

	type target struct {
		cfg  *tls.Config
		want *tls.Certificate // nil: any copy of the leaf
	}
	var targets []target
	for _, c := range []tls.Certificate{full, leafOnly, withOtherKey} {
		c := c
		targets = append(targets, target{e.s.Wrap(&tls.Config{Certificates: []tls.Certificate{c}}), &c})
	}
	fresh := e.s.Wrap(&tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		c := full
		c.Certificate = slices.Clone(full.Certificate)
		return &c, nil
	}})
	targets = append(targets, target{fresh, nil})
	appA := &tls.Config{Certificates: []tls.Certificate{full}, NextProtos: []string{"A"}}
	appB := &tls.Config{Certificates: []tls.Certificate{leafOnly}, NextProtos: []string{"B"}}
	var flip atomic.Bool
	byClient := e.s.Wrap(&tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
		if flip.Load() {
			return appA, nil
		}
		return appB, nil
	}})
	e.waitStapled(e.leaf)

	check := func(tg target, hello *tls.ClientHelloInfo) string {
		c, err := tg.cfg.GetCertificate(hello)
		if err != nil {
			return "error: " + err.Error()
		}
		if !k.ok(c.OCSPStaple) {
			return "a staple that is not the leaf's"
		}
		if tg.want != nil && (!sameSlice(c.Certificate, tg.want.Certificate) || !sameInterface(c.PrivateKey, tg.want.PrivateKey)) {
			return "a chain or key the config did not hold"
		}
		if tg.want == nil && (!c.Leaf.Equal(e.leaf.Cert) && !bytesEqual(c.Certificate[0], e.leaf.Cert.Raw)) {
			return "another leaf"
		}
		return ""
	}
	checkByClient := func(hello *tls.ClientHelloInfo) string {
		inner, err := byClient.GetConfigForClient(hello)
		if err != nil || inner == nil {
			return "GetConfigForClient failed"
		}
		want := &full
		if inner.NextProtos[0] == "B" {
			want = &leafOnly
		}
		return check(target{inner, want}, hello)
	}

	var stop atomic.Bool
	var wg sync.WaitGroup
	var failure atomic.Pointer[string]
	fail := func(s string) {
		if s != "" {
			failure.CompareAndSwap(nil, &s)
		}
	}
	// The workers stop however the test ends: left running after a
	// failure, they would allocate under the next tests' AllocsPerRun.
	defer func() { stop.Store(true); wg.Wait() }()
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			hello := helloFor()
			if w == 1 {
				hello = &tls.ClientHelloInfo{} // no SNI
			}
			for i := 0; !stop.Load(); i++ {
				for _, tg := range targets {
					fail(check(tg, hello))
				}
				flip.Store(i%2 == 0)
				fail(checkByClient(hello))
			}
		}()
	}

	id := CertificateID(e.leaf.Cert.Raw)
	off, onAgain := false, true
	for round := range 6 {
		before := e.advanceToNextRefresh(e.leaf)
		e.waitQueries(e.leaf, before+1)
		// A re-Wrap of the same leaf with yet another chain takes the view.
		again := full
		again.Certificate = slices.Clone(full.Certificate)
		rw := e.s.Wrap(&tls.Config{Certificates: []tls.Certificate{again}})
		fail(check(target{rw, &again}, helloFor()))
		switch round % 3 {
		case 0:
			if _, err := e.s.Update(config.OCSPUpdate{OCSPFunctionality: &off}); err != nil {
				t.Fatal(err)
			}
			if _, err := e.s.Update(config.OCSPUpdate{OCSPFunctionality: &onAgain}); err != nil {
				t.Fatal(err)
			}
		case 1:
			if err := e.s.Remove(id); err != nil {
				t.Fatal(err)
			}
		}
		// Served again (after Remove, managed afresh): wait for a staple.
		eventuallyStatus(t, e, fmt.Sprintf("a staple again (round %d)", round), func() bool {
			c, err := targets[0].cfg.GetCertificate(helloFor())
			return err == nil && c.OCSPStaple != nil
		})
		if p := failure.Load(); p != nil {
			break
		}
	}
	stop.Store(true)
	wg.Wait()
	if p := failure.Load(); p != nil {
		t.Fatalf("a handshake got %s", *p)
	}
	for _, tg := range targets {
		c, err := tg.cfg.GetCertificate(helloFor())
		if err != nil || c.OCSPStaple == nil {
			t.Fatalf("after the churn: not stapled (%v)", err)
		}
	}
}

// eventuallyStatus is eventually, telling the leaf's status when it
// times out.
func eventuallyStatus(t *testing.T, e *env, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(hangLimit)
	for !cond() {
		if time.Now().After(deadline) {
			st, err := e.s.StatusOf(CertificateID(e.leaf.Cert.Raw))
			t.Fatalf("timed out waiting for %s; status %+v (%v); clock %v", what, st, err, e.clock.Now())
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func bytesEqual(a, b []byte) bool { return string(a) == string(b) }

var _ = x509.ParseCertificate
