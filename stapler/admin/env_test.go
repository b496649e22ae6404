package admin

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/staplerkit/ocsp/config"
	"github.com/staplerkit/ocsp/responder"
	"github.com/staplerkit/ocsp/stapler"
	"golang.org/x/crypto/ocsp"
)

// env is a Stapler with a live responder, as the admin API's tests need it.
type env struct {
	t    testing.TB
	ca   *responder.CA
	r    *responder.Responder
	srv  *responder.Server
	leaf *responder.Leaf
	s    *stapler.Stapler
}

var on = config.OCSP{OCSPFunctionality: true}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newEnv(t testing.TB, cfg config.OCSP) *env {
	t.Helper()
	e := &env{t: t}
	var err error
	if e.ca, err = responder.NewCA(responder.CAOptions{}); err != nil {
		t.Fatal(err)
	}
	e.r = responder.New(e.ca)
	e.srv = responder.NewServer(e.r)
	t.Cleanup(e.srv.Close)
	if e.leaf, err = e.srv.Issue(responder.LeafOptions{}); err != nil {
		t.Fatal(err)
	}
	if e.s, err = stapler.New(cfg, stapler.WithLogger(quietLogger())); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.s.Close() })
	return e
}

// wrap registers certs with the Stapler, as a server wrapping a config
// that lists them does.
func (e *env) wrap(certs ...tls.Certificate) {
	e.s.Wrap(&tls.Config{Certificates: certs})
}

// waitStapled waits, in real time up to a minute (only a hang reaches it),
// until leaf is stapled.
func (e *env) waitStapled(leaf *responder.Leaf) {
	e.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		st, err := e.s.StatusOf(stapler.CertificateID(leaf.Cert.Raw))
		if err == nil && st.Stapled {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("no staple: %+v %v", st, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// serve serves TLS handshakes with a wrapped config listing certs, and
// returns the address.
func (e *env) serve(certs ...tls.Certificate) string {
	e.t.Helper()
	l, err := tls.Listen("tcp", "127.0.0.1:0", e.s.Wrap(&tls.Config{Certificates: certs}))
	if err != nil {
		e.t.Fatal(err)
	}
	var wg sync.WaitGroup
	e.t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer conn.Close()
				conn.SetDeadline(time.Now().Add(time.Minute))
				if err := conn.(*tls.Conn).Handshake(); err == nil {
					io.Copy(io.Discard, conn)
				}
			}()
		}
	}()
	return l.Addr().String()
}

// staple makes a handshake with addr and returns the staple it got.
func (e *env) staple(addr string) []byte {
	e.t.Helper()
	roots := x509.NewCertPool()
	roots.AddCert(e.ca.Cert)
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: time.Minute}, "tcp", addr, &tls.Config{RootCAs: roots, ServerName: "localhost"})
	if err != nil {
		e.t.Fatalf("handshake: %v", err)
	}
	defer conn.Close()
	return conn.ConnectionState().OCSPResponse
}

func (e *env) mustGetStaple(addr string, leaf *responder.Leaf, want int) {
	e.t.Helper()
	staple := e.staple(addr)
	if staple == nil {
		e.t.Fatal("no staple")
	}
	resp, err := ocsp.ParseResponseForCert(staple, leaf.Cert, e.ca.Cert)
	if err != nil {
		e.t.Fatalf("staple does not verify: %v", err)
	}
	if resp.Status != want {
		e.t.Fatalf("staple status %d, want %d", resp.Status, want)
	}
}

func (e *env) mustGetNoStaple(addr string) {
	e.t.Helper()
	if e.staple(addr) != nil {
		e.t.Fatal("stapled, want none")
	}
}
