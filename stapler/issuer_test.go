package stapler

import (
	"crypto/tls"
	"crypto/x509"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/staplerkit/ocsp/responder"
)

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
