package stapler

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/staplerkit/ocsp/responder"
)

func TestIssuerFromAIACAIssuers(t *testing.T) {
	e := newEnv(t, on)
	var served atomic.Int64
	caIssuers := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		w.Write(e.ca.Cert.Raw)
	}))
	defer caIssuers.Close()
	leaf, err := e.srv.Issue(responder.LeafOptions{IssuingCertificateURL: []string{caIssuers.URL + "/ca.der"}})
	if err != nil {
		t.Fatal(err)
	}
	addr := e.wrapAndServe(leafOnly(leaf))
	staple, _, err := e.handshake(addr, func(c *tls.Config) { c.InsecureSkipVerify = true })
	if err != nil || staple == nil {
		t.Fatalf("staple %v, err %v", staple != nil, err)
	}
	if _, err := ocsp.ParseResponseForCert(staple, leaf.Cert, e.ca.Cert); err != nil {
		t.Fatal(err)
	}
	if served.Load() != 1 {
		t.Fatalf("issuer fetched %d times", served.Load())
	}
}

func TestIssuerThatDidNotSignTheLeafIsRejected(t *testing.T) {
	e := newEnv(t, on)
	other, _ := responder.NewCA(responder.CAOptions{CommonName: "impostor"})
	caIssuers := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(other.Cert.Raw) }))
	defer caIssuers.Close()
	leaf, _ := e.srv.Issue(responder.LeafOptions{IssuingCertificateURL: []string{caIssuers.URL}})
	wrong := leaf.Certificate
	wrong.Certificate = [][]byte{leaf.Cert.Raw, other.Cert.Raw} // a chain whose "issuer" did not sign the leaf
	e.wrapAndServe(wrong)
	st := e.waitQueries(leaf, 1)
	if st.Stapled || st.LastError == "" {
		t.Fatalf("status %+v", st)
	}
	if e.r.RequestCount() != 0 {
		t.Fatal("queried the responder without a verified issuer")
	}
}

func TestIssuerFromOption(t *testing.T) {
	e := newEnv(t, on)
	e.s.Close()
	s, err := New(on, WithClock(e.clock), WithLogger(quietLogger()), WithIssuer(e.ca.Cert), WithColdWait(hangLimit))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	e.s = s
	addr := e.wrapAndServe(leafOnly(e.leaf))
	staple, _, err := e.handshake(addr, func(c *tls.Config) { c.InsecureSkipVerify = true })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ocsp.ParseResponseForCert(staple, e.leaf.Cert, e.ca.Cert); err != nil {
		t.Fatal(err)
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
