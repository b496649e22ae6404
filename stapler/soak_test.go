package stapler

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/staplerkit/ocsp/config"
	"github.com/staplerkit/ocsp/responder"
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
