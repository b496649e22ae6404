package stapler

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/staplerkit/ocsp/config"
	"github.com/staplerkit/ocsp/responder"
	"golang.org/x/crypto/ocsp"
)

func TestFirstHandshakeIsStapled(t *testing.T) {
	e := newEnv(t, on)
	addr := e.wrapAndServe(e.leaf.Certificate)
	// No wait: the first handshake waits for the eager fetch (bounded).
	resp := e.mustGetStaple(addr, e.leaf, ocsp.Good)
	if resp.Certificate != nil {
		t.Fatal("CA-signed response should embed no certificate")
	}
	if n := e.r.RequestCount(); n != 1 {
		t.Fatalf("%d responder requests, want 1", n)
	}
	if reqs := e.r.Requests(); reqs[0].Method != "GET" {
		t.Fatalf("method %s, want GET for a short URL", reqs[0].Method)
	}
	st := e.status(e.leaf)
	if st.CertStatus != config.CertGood || st.State != StateGood || !st.Stapled || st.ResponderURL != e.srv.URL {
		t.Fatalf("status %+v", st)
	}
}

func TestDelegatedResponderStapleVerifies(t *testing.T) {
	e := newEnv(t, on)
	d, err := e.ca.NewDelegate(responder.DelegateOptions{KeyType: responder.RSA})
	if err != nil {
		t.Fatal(err)
	}
	e.r.UseDelegate(d)
	addr := e.wrapAndServe(e.leaf.Certificate)
	if resp := e.mustGetStaple(addr, e.leaf, ocsp.Good); resp.Certificate == nil {
		t.Fatal("delegate not embedded")
	}
}

func TestDualRSAAndECDSACertificatesEachGetTheirOwnStaple(t *testing.T) {
	e := newEnv(t, on)
	rsaLeaf, err := e.srv.Issue(responder.LeafOptions{KeyType: responder.RSA})
	if err != nil {
		t.Fatal(err)
	}
	addr := e.wrapAndServe(e.leaf.Certificate, rsaLeaf.Certificate)
	for _, tc := range []struct {
		leaf   *responder.Leaf
		suites []uint16
	}{
		{e.leaf, []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}},
		{rsaLeaf, []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}},
	} {
		staple, st, err := e.handshake(addr, func(c *tls.Config) {
			c.MaxVersion = tls.VersionTLS12
			c.CipherSuites = tc.suites
		})
		if err != nil {
			t.Fatal(err)
		}
		if !st.PeerCertificates[0].Equal(tc.leaf.Cert) {
			t.Fatal("server picked the other certificate")
		}
		if _, err := ocsp.ParseResponseForCert(staple, tc.leaf.Cert, e.ca.Cert); err != nil {
			t.Fatalf("%v staple: %v", tc.leaf.Cert.PublicKeyAlgorithm, err)
		}
	}
}

// gatedTransport holds every request until open is closed, so that a test
// decides when the responder is reached (not the scheduler of a busy machine).
type gatedTransport struct{ open chan struct{} }

func (g gatedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	select {
	case <-g.open:
	case <-r.Context().Done():
		return nil, r.Context().Err()
	}
	return http.DefaultTransport.RoundTrip(r)
}

func TestHerdOfColdHandshakesMakesOneRequest(t *testing.T) {
	// The fetch is held at the gate until every caller has arrived, so all
	// of them are cold however slowly the machine runs them; the limits
	// (response_timeout 60 s, the cold wait a minute) are reached only by a
	// hang.
	gate := gatedTransport{open: make(chan struct{})}
	e := newEnv(t, config.OCSP{OCSPFunctionality: true, ResponseTimeout: 60},
		WithHTTPClient(&http.Client{Transport: gate}), WithColdWait(time.Minute))
	var user atomic.Pointer[tls.Certificate]
	user.Store(&e.leaf.Certificate)
	cfg := e.s.Wrap(&tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return user.Load(), nil }})

	const n = 10000
	var wg sync.WaitGroup
	var stapled, arrived atomic.Int64
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			arrived.Add(1)
			c, err := cfg.GetCertificate(&tls.ClientHelloInfo{ServerName: "localhost"})
			if err != nil {
				t.Error(err)
				return
			}
			if c.OCSPStaple != nil {
				stapled.Add(1)
			}
		}()
	}
	eventually(t, "every caller to arrive", func() bool { return arrived.Load() == n })
	if stapled.Load() != 0 {
		t.Fatalf("%d handshakes stapled before the responder was reached", stapled.Load())
	}
	close(gate.open)
	wg.Wait()
	if got := e.r.RequestCount(); got != 1 {
		t.Fatalf("%d responder requests for %d cold handshakes, want 1", got, n)
	}
	if stapled.Load() != n {
		t.Fatalf("%d of %d handshakes stapled", stapled.Load(), n)
	}
	// And through real handshakes on loopback.
	addr := e.serve(cfg)
	var hs sync.WaitGroup
	for range 50 {
		hs.Add(1)
		go func() {
			defer hs.Done()
			staple, _, err := e.handshake(addr)
			if err != nil || staple == nil {
				t.Errorf("handshake: staple %v, err %v", staple != nil, err)
			}
		}()
	}
	hs.Wait()
	if got := e.r.RequestCount(); got != 1 {
		t.Fatalf("%d responder requests, want 1", got)
	}
}

func TestGetCertificateAndGetConfigForClientAreStapled(t *testing.T) {
	e := newEnv(t, on)
	other, err := e.srv.Issue(responder.LeafOptions{DNSNames: []string{"other.test"}})
	if err != nil {
		t.Fatal(err)
	}
	inner := &tls.Config{Certificates: []tls.Certificate{other.Certificate}}
	user := &tls.Config{
		GetCertificate: func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
			if h.ServerName == "localhost" {
				return &e.leaf.Certificate, nil
			}
			return nil, nil
		},
		GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			if h.ServerName == "other.test" {
				return inner, nil
			}
			return nil, nil
		},
	}
	addr := e.serve(e.s.Wrap(user))
	e.mustGetStaple(addr, e.leaf, ocsp.Good)
	staple, st, err := e.handshake(addr, func(c *tls.Config) { c.ServerName = "other.test" })
	if err != nil {
		t.Fatal(err)
	}
	if !st.PeerCertificates[0].Equal(other.Cert) {
		t.Fatal("wrong certificate")
	}
	if _, err := ocsp.ParseResponseForCert(staple, other.Cert, e.ca.Cert); err != nil {
		t.Fatalf("GetConfigForClient certificate not stapled: %v", err)
	}
	if e.leaf.Certificate.OCSPStaple != nil || other.Certificate.OCSPStaple != nil || inner.Certificates[0].OCSPStaple != nil {
		t.Fatal("the application's certificates were modified")
	}
	if len(e.s.Status()) != 2 {
		t.Fatalf("%d managed certificates", len(e.s.Status()))
	}
}

func TestClientCertificateIsStapledUnderTLS13(t *testing.T) {
	e := newEnv(t, on)
	client, err := e.srv.Issue(responder.LeafOptions{DNSNames: []string{"client.test"}})
	if err != nil {
		t.Fatal(err)
	}
	serverLeaf, _ := e.srv.Issue(responder.LeafOptions{})
	roots := x509.NewCertPool()
	roots.AddCert(e.ca.Cert)
	got := make(chan []byte, 1)
	addr := e.serve(&tls.Config{
		Certificates: []tls.Certificate{serverLeaf.Certificate},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    roots,
		MinVersion:   tls.VersionTLS13,
		VerifyConnection: func(cs tls.ConnectionState) error {
			got <- cs.OCSPResponse
			return nil
		},
	})
	clientConfig := e.s.Wrap(&tls.Config{Certificates: []tls.Certificate{client.Certificate}, RootCAs: roots, ServerName: "localhost"})
	e.waitStapled(client)
	conn, err := tls.Dial("tcp", addr, clientConfig)
	if err != nil {
		t.Fatal(err)
	}
	conn.Write([]byte("x")) // the server reads the client's certificate after the client's Finished
	defer conn.Close()
	select {
	case staple := <-got:
		if _, err := ocsp.ParseResponseForCert(staple, client.Cert, e.ca.Cert); err != nil {
			t.Fatalf("server did not get the client's staple: %v", err)
		}
	case <-time.After(hangLimit):
		t.Fatal("server never verified the connection")
	}
}

// A handshake whose cold wait ends while the first query is under way waits
// on for that query: a herd that slows the machine down must not give up on
// the one query that staples it (issue 14).
func TestAColdHandshakeWaitsPastTheColdWaitForAQueryUnderWay(t *testing.T) {
	e := newEnv(t, config.OCSP{OCSPFunctionality: true, ResponseTimeout: 60}, WithColdWait(10*time.Millisecond))
	e.r.SetFault(responder.Fault{Kind: responder.FaultDelay, Delay: 300 * time.Millisecond})
	cfg := e.s.Wrap(tlsConfigFor(e.leaf))
	eventually(t, "the first query reaches the responder", func() bool { return e.r.RequestCount() > 0 })
	cert, err := cfg.GetCertificate(helloFor())
	if err != nil {
		t.Fatal(err)
	}
	if cert.OCSPStaple == nil {
		t.Fatal("the handshake went on without a staple while the query was under way")
	}
}

// The wait for a query under way is bounded by the query's own deadline
// (response_timeout) and a cold wait more: a hanging responder holds a
// handshake for about a second here, never for good.
// A real handshake on loopback against a hanging responder likewise ends
// unstapled after at most the cold wait (once TestColdHandshakeWaitIsBounded).
func TestAColdHandshakeGivesUpWithAHangingQuery(t *testing.T) {
	t.Run("GetCertificate", func(t *testing.T) {
		e := newEnv(t, config.OCSP{OCSPFunctionality: true, ResponseTimeout: 1}, WithColdWait(10*time.Millisecond))
		e.r.SetFault(responder.Fault{Kind: responder.FaultHang})
		cfg := e.s.Wrap(tlsConfigFor(e.leaf))
		eventually(t, "the first query reaches the responder", func() bool { return e.r.RequestCount() > 0 })
		done := make(chan error, 1)
		go func() {
			cert, err := cfg.GetCertificate(helloFor())
			if err == nil && cert.OCSPStaple != nil {
				t.Error("stapled by a hanging responder")
			}
			done <- err
		}()
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(hangLimit):
			t.Fatal("a handshake waited past the hang limit for a hanging responder")
		}
	})
	t.Run("handshake", func(t *testing.T) {
		e := newEnv(t, on, WithColdWait(100*time.Millisecond))
		e.r.SetFault(responder.Fault{Kind: responder.FaultHang})
		addr := e.wrapAndServe(e.leaf.Certificate)
		e.mustGetNoStaple(addr) // after at most the cold wait
	})
}

// Wrap's doc says "The certificates in the Certificates list are fetched at
// once, so the first handshake is stapled". With the defaults (100 requests
// a second, the cold wait response_timeout/4), a server wrapping 1,000
// certificates fetches most of them seconds later; clients of them arriving
// right after Wrap wait the cold wait (their fetch has not started, so it
// is not waited on) and get no staple (a refusal under must-staple), though
// the responder answers at once. Measured: of ten certificates c200..c999
// handshaken right after Wrap, 8 unstapled (c999 and c998 stapled). Issue
// 14's first-herd fix (BenchmarkFirstHerd) covers one certificate only;
// Ready is the remedy, but the Wrap doc promises otherwise.
func TestTheFirstHandshakeOfALaterCertificateIsStapled(t *testing.T) {
	e := newEnv(t, on, WithColdWait(0))
	var certs []tls.Certificate
	for i := 0; i < 1000; i++ {
		l, err := e.srv.Issue(responder.LeafOptions{DNSNames: []string{fmt.Sprintf("c%d.test", i)}})
		if err != nil {
			t.Fatal(err)
		}
		certs = append(certs, l.Certificate)
	}
	wrapped := e.s.Wrap(&tls.Config{Certificates: certs})
	roots := x509.NewCertPool()
	roots.AddCert(e.ca.Cert)
	names := []string{"c999.test", "c998.test", "c900.test", "c800.test", "c700.test", "c600.test", "c500.test", "c400.test", "c300.test", "c200.test"}
	errs := make(chan string, len(names))
	for _, n := range names {
		go func() {
			staple, err := handshakeStaple(t, wrapped, roots, n)
			switch {
			case err != nil:
				errs <- n + ": " + err.Error()
			case staple == nil:
				errs <- n + ": no staple"
			default:
				errs <- ""
			}
		}()
	}
	var bad []string
	for range names {
		if m := <-errs; m != "" {
			bad = append(bad, m)
		}
	}
	if len(bad) > 0 {
		t.Fatalf("first handshakes right after Wrap for later listed certificates: %v", bad)
	}
}

// handshakeStaple is one real handshake on loopback; it returns
// the staple the client got.
func handshakeStaple(t *testing.T, server *tls.Config, roots *x509.CertPool, name string) ([]byte, error) {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", server)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: roots, ServerName: name})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.ConnectionState().OCSPResponse, nil
}

// After Ready, every certificate known has been stapled or has failed with
// a reason; a hanging responder holds Ready up until its context ends.
func TestReadyWaitsForEveryFirstAttempt(t *testing.T) {
	e := newEnv(t, on)
	down, err := e.srv.Issue(responder.LeafOptions{DNSNames: []string{"down.test"}})
	if err != nil {
		t.Fatal(err)
	}
	e.r.SetSerialFault(down.Cert.SerialNumber, responder.Fault{Kind: responder.FaultHTTP500})
	var certs []tls.Certificate
	certs = append(certs, e.leaf.Certificate, down.Certificate)
	for i := range 20 {
		l, err := e.srv.Issue(responder.LeafOptions{DNSNames: []string{fmt.Sprintf("r%d.test", i)}})
		if err != nil {
			t.Fatal(err)
		}
		certs = append(certs, l.Certificate)
	}
	e.s.Wrap(&tls.Config{Certificates: certs})
	if err := e.s.Ready(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, st := range e.s.Status() {
		switch {
		case st.SNIs[0] == "down.test":
			if st.Stapled || st.LastError == "" {
				t.Fatalf("down.test after Ready: %+v", st)
			}
		case !st.Stapled:
			t.Fatalf("%s not stapled after Ready: %+v", st.SNIs[0], st)
		}
	}

	hang, err := e.srv.Issue(responder.LeafOptions{DNSNames: []string{"hang.test"}})
	if err != nil {
		t.Fatal(err)
	}
	e.r.SetSerialFault(hang.Cert.SerialNumber, responder.Fault{Kind: responder.FaultHang})
	e.s.Wrap(tlsConfigFor(hang))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := e.s.Ready(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Ready with a hanging responder and a done context: %v", err)
	}
}
