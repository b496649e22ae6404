package stapler

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/staplerkit/ocsp/config"
	"golang.org/x/crypto/ocsp"
)

// attack5StapleChecker verifies staples for one leaf, each distinct staple
// (by its bytes' address) once: a signature check per call would be too
// slow under -race.
type attack5StapleChecker struct {
	t    *testing.T
	e    *env
	seen sync.Map // *byte -> struct{}
}

func (k *attack5StapleChecker) ok(staple []byte) bool {
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

// PASSING PROBE. TestSameLeafConfigsUnderChurn: many configs list
// the same leaf with different chains (and one with another key object),
// an application GetCertificate hands out fresh copies, a
// GetConfigForClient alternates between two configs; handshakes race
// refreshes, re-Wraps, Remove, and OCSP turned off and on. Every handshake
// must get what its config held (chain and key, by identity), and a staple,
// when there is one, must be the leaf's.
func TestSameLeafConfigsUnderChurn(t *testing.T) {
	e := newEnv(t, on)
	k := &attack5StapleChecker{t: t, e: e}
	full := e.leaf.Certificate
	// Another chain of the same content (not the leaf alone: a state
	// registered again, after Remove, from a chain without the issuer is
	// never stapled; see TestRemoveThenLeafOnlyFirstLosesTheIssuer).
	leafOnly := full
	leafOnly.Certificate = slices.Clone(full.Certificate)
	otherKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
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
		attack5Eventually(t, e, fmt.Sprintf("a staple again (round %d)", round), func() bool {
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

// attack5Eventually is eventually, telling the leaf's status when it
// times out.
func attack5Eventually(t *testing.T, e *env, what string, cond func() bool) {
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
