package stapler

import (
	"crypto/tls"
	"sync"
	"testing"
	"time"

	"github.com/staplerkit/ocsp/responder"
	"github.com/staplerkit/ocsp/stapler/clock"
)

// PROBE (passes): promise "no panic on any input", "-race clean". On the
// system clock, Close runs while handshakes go on and configs are wrapped
// (listed leaves and leaves from GetCertificate, new and known); after
// Close, new leaves are wrapped and served: every handshake completes.
func TestWrapAndServeAcrossClose(t *testing.T) {
	e := newEnv(t, on, WithClock(clock.System{}), WithColdWait(50*time.Millisecond)) // see TestNewCertificateAfterCloseWaitsTheColdWait
	e.r.SetClock(time.Now)
	issue := func() tls.Certificate {
		l, err := e.srv.Issue(responder.LeafOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return l.Certificate
	}
	known := issue()
	addrKnown := e.serve(e.s.Wrap(&tls.Config{Certificates: []tls.Certificate{known, issue()}}))
	e.handshake(addrKnown)
	var wg sync.WaitGroup
	for g := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 15 {
				var cfg *tls.Config
				switch (g + i) % 3 {
				case 0:
					cfg = e.s.Wrap(&tls.Config{Certificates: []tls.Certificate{issue(), known}})
				case 1:
					c := issue()
					cfg = e.s.Wrap(&tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &c, nil }})
				default:
					if _, _, err := e.handshake(addrKnown); err != nil {
						t.Errorf("handshake: %v", err)
					}
					continue
				}
				if _, err := cfg.GetCertificate(helloFor()); err != nil {
					t.Errorf("GetCertificate: %v", err)
				}
			}
		}()
	}
	e.s.Close()
	wg.Wait()
	addr := e.serve(e.s.Wrap(&tls.Config{Certificates: []tls.Certificate{issue(), known}}))
	for range 3 {
		if _, _, err := e.handshake(addr); err != nil {
			t.Fatalf("after Close: %v", err)
		}
	}
}

// FINDING (fixed; latency, outside the listed promises; found by the probe above
// with the default test cold wait of a minute): after Close, a certificate
// seen for the first time gets a cold gate that nothing will ever open (no
// fetch starts once closed), so every handshake serving it waits the full
// cold wait (Timeout/4 by default) before being served without a staple.
// Checked white-box, without a clock: the gate of a certificate added
// after Close must be open (or absent).
func TestNewCertificateAfterCloseWaitsTheColdWait(t *testing.T) {
	e := newEnv(t, on)
	l, err := e.srv.Issue(responder.LeafOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e.s.Close()
	c := l.Certificate
	m := e.s.add(&c)
	if g := m.pending.Load(); g != nil {
		select {
		case <-g.done:
		default:
			t.Fatalf("after Close, a new certificate's cold gate is shut with no fetch to open it: each handshake waits the cold wait (%v)", e.s.coldWait())
		}
	}
}
