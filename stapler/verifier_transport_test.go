package stapler

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/staplerkit/ocsp/responder"
)

type countingTransport struct {
	n    atomic.Int64
	next http.RoundTripper
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.next.RoundTrip(r)
}

// DEFECT (the Client field's doc lies): "If nil, the Verifier uses its own
// transport ..., as the Stapler does." The Stapler clones a transport of
// its own (newHTTPClient); the Verifier builds &http.Client{CheckRedirect:
// ...} with a nil Transport, i.e. the process-wide http.DefaultTransport:
// its OCSP requests share the application's pool (2 idle connections per
// host) and go through whatever RoundTripper the application or a library
// has installed there (a tracing or mocking transport, a proxy dialer).
func TestZeroClientVerifierUsesItsOwnTransport(t *testing.T) {
	ca, err := responder.NewCA(responder.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	srv := responder.NewServer(responder.New(ca))
	t.Cleanup(srv.Close)
	leaf, err := srv.Issue(responder.LeafOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// A server that staples nothing: a Verifier with FetchTimeout asks
	// the responder.
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{leaf.Certificate}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()

	counting := &countingTransport{next: http.DefaultTransport}
	old := http.DefaultTransport
	http.DefaultTransport = counting
	t.Cleanup(func() { http.DefaultTransport = old })

	v := &Verifier{FetchTimeout: time.Minute}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: roots, ServerName: "localhost", VerifyConnection: v.VerifyConnection})
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	conn.Close()
	if srv.Responder.RequestCount() == 0 {
		t.Fatal("the Verifier did not ask the responder")
	}
	if n := counting.n.Load(); n > 0 {
		t.Fatalf("the Verifier with a nil Client sent %d request(s) through http.DefaultTransport, not a transport of its own", n)
	}
}
