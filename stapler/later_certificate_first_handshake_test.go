package stapler

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"testing"

	"github.com/staplerkit/ocsp/responder"
)

// TestTheFirstHandshakeOfALaterCertificateIsStapled: Wrap's doc
// says "The certificates in the Certificates list are fetched at once, so
// the first handshake is stapled". With the defaults (100 requests a
// second, the cold wait response_timeout/4), a server wrapping 1,000
// certificates fetches most of them seconds later; clients of them
// arriving right after Wrap wait the cold wait (their fetch has not
// started, so it is not waited on) and get no staple (a refusal under
// must-staple), though the responder answers at once. Measured: of ten
// certificates c200..c999 handshaken right after Wrap, 8 unstapled (c999
// and c998 stapled). Issue 14's first-herd fix (BenchmarkFirstHerd) covers
// one certificate only; Ready is the remedy, but the Wrap doc promises
// otherwise.
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
			staple, err := attack4HandshakeStaple(t, wrapped, roots, n)
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

// attack4HandshakeStaple is one real handshake on loopback; it returns
// the staple the client got.
func attack4HandshakeStaple(t *testing.T, server *tls.Config, roots *x509.CertPool, name string) ([]byte, error) {
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
