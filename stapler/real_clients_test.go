package stapler

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/staplerkit/ocsp/responder"
)

// PASSING PROBE. TestOpenSSLStatus: openssl s_client -status, with
// and without SNI, TLS 1.2 and 1.3, against a wrapped config listing two
// certificates for different names: each gets the certificate for its
// name (the first without SNI) and an OCSP response.
func TestOpenSSLStatus(t *testing.T) {
	path, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl not installed")
	}
	e := newEnv(t, on)
	a, ca := attack5Leaf(t, e, false, "a.test")
	_, cb := attack5Leaf(t, e, false, "b.test")
	_ = a
	addr := e.serve(e.s.Wrap(&tls.Config{Certificates: []tls.Certificate{ca, cb}}))
	for _, tc := range []struct{ sni, version, wantCN string }{
		{"", "-tls1_2", "a.test"}, {"", "-tls1_3", "a.test"},
		{"b.test", "-tls1_2", "b.test"}, {"b.test", "-tls1_3", "b.test"},
	} {
		args := []string{"s_client", "-connect", addr, "-status", tc.version}
		if tc.sni == "" {
			args = append(args, "-noservername")
		} else {
			args = append(args, "-servername", tc.sni)
		}
		ctx, cancel := context.WithTimeout(context.Background(), hangLimit)
		cmd := exec.CommandContext(ctx, path, args...)
		cmd.Stdin = strings.NewReader("Q\n")
		out, _ := cmd.CombinedOutput()
		cancel()
		s := string(out)
		if !strings.Contains(s, "OCSP Response Status: successful") {
			t.Fatalf("%s %s: no OCSP response:\n%s", tc.sni, tc.version, s)
		}
		if !strings.Contains(s, "CN = "+tc.wantCN) && !strings.Contains(s, "CN="+tc.wantCN) {
			t.Fatalf("%s %s: not the certificate for %s:\n%s", tc.sni, tc.version, tc.wantCN, s)
		}
	}
}

// PASSING PROBE. TestMutualTLS: a wrapped client config listing
// two certificates (the first for a CA the server does not accept), and
// one with GetClientCertificate, in real mutual TLS 1.2 and 1.3
// handshakes: the server sees the certificate it accepts, with no panic.
func TestMutualTLS(t *testing.T) {
	e := newEnv(t, on)
	foreignCA, err := responder.NewCA(responder.CAOptions{CommonName: "foreign"})
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := foreignCA.Issue(responder.LeafOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(e.ca.Cert)
	server := &tls.Config{Certificates: []tls.Certificate{e.leaf.Certificate}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}
	addr := e.serve(server)
	listed := e.s.Wrap(&tls.Config{Certificates: []tls.Certificate{foreign.Certificate, e.leaf.Certificate}})
	app := e.s.Wrap(&tls.Config{GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		return &e.leaf.Certificate, nil
	}})
	for _, client := range []*tls.Config{listed, app} {
		for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
			c := client.Clone()
			c.RootCAs, c.ServerName, c.MaxVersion = pool, "localhost", v
			conn, err := tls.Dial("tcp", addr, c)
			if err != nil {
				t.Fatalf("TLS %x: %v", v, err)
			}
			// The server verifies the client's certificate during the
			// handshake; a read completes it on TLS 1.3.
			conn.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			conn.Read(make([]byte, 1))
			conn.Close()
		}
	}
}
