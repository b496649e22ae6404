package stapler

import (
	"crypto/tls"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/staplerkit/ocsp/responder"
	"golang.org/x/crypto/ocsp"
)

// PROBE (passes): promises "never another certificate's staple", "no
// panic", "-race clean". Two wrapped configs list the same two leaves in
// opposite orders (and a third lists one of them alone) while a goroutine
// removes the leaves over and over, so that handshakes re-register them
// (wrapper.readd) from both configs at once. Every staple served must be
// the served leaf's own; the leaves end up stapled again.
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
