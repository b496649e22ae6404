package main

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/staplerkit/ocsp/responder"
)

// SIGHUP reads the certificate files again: a renewed certificate (as
// cert-manager, Vault Agent or certbot write one) is served, stapled, from
// the next handshake on, without a restart, and a connection opened before
// goes on working.
func TestSIGHUPServesRenewedCertificatesWithoutDroppingConnections(t *testing.T) {
	ca, err := responder.NewCA(responder.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ocspServer := responder.NewServer(responder.New(ca))
	t.Cleanup(ocspServer.Close)
	old, _ := ocspServer.Issue(responder.LeafOptions{DNSNames: []string{"localhost"}})
	renewed, _ := ocspServer.Issue(responder.LeafOptions{DNSNames: []string{"localhost"}})
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "chain.pem"), filepath.Join(dir, "key.pem")
	write := func(l *responder.Leaf) {
		if err := os.WriteFile(certFile, l.CertPEM, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(keyFile, l.KeyPEM, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(old)
	addr, _, _ := startServer(t, []string{"-addr", "127.0.0.1:0", "-cert", certFile, "-key", keyFile})

	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "localhost"}}}
	defer client.CloseIdleConnections()
	get := func() *tls.ConnectionState {
		resp, err := client.Get("https://" + addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		return resp.TLS
	}
	if st := get(); st.PeerCertificates[0].SerialNumber.Cmp(old.Cert.SerialNumber) != 0 || st.OCSPResponse == nil {
		t.Fatalf("before the renewal: serial %x, stapled %v", st.PeerCertificates[0].SerialNumber, st.OCSPResponse != nil)
	}

	write(renewed)
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	fresh := func() *tls.ConnectionState {
		conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, ServerName: "localhost"})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		st := conn.ConnectionState()
		return &st
	}
	deadline := time.Now().Add(time.Minute) // only a hang
	for st := fresh(); st.PeerCertificates[0].SerialNumber.Cmp(renewed.Cert.SerialNumber) != 0 || st.OCSPResponse == nil; st = fresh() {
		if time.Now().After(deadline) {
			t.Fatalf("the renewed certificate is not served stapled after SIGHUP: serial %x, stapled %v", st.PeerCertificates[0].SerialNumber, st.OCSPResponse != nil)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The connection opened before the renewal goes on (the old
	// certificate is what it was opened with).
	if st := get(); st.PeerCertificates[0].SerialNumber.Cmp(old.Cert.SerialNumber) != 0 {
		t.Fatalf("the kept-alive connection was dropped: a new one shows serial %x", st.PeerCertificates[0].SerialNumber)
	}
}
