package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/staplerkit/ocsp/responder"
)

func TestServerStaplesDualCertificatesAndShutsDown(t *testing.T) {
	ca, err := responder.NewCA(responder.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ocspServer := responder.NewServer(responder.New(ca))
	defer ocspServer.Close()
	dir := t.TempDir()
	var args []string
	leaves := map[x509.PublicKeyAlgorithm]*responder.Leaf{}
	for _, kt := range []responder.KeyType{responder.ECDSA, responder.RSA} {
		leaf, err := ocspServer.Issue(responder.LeafOptions{KeyType: kt})
		if err != nil {
			t.Fatal(err)
		}
		leaves[leaf.Cert.PublicKeyAlgorithm] = leaf
		certPath := filepath.Join(dir, kt.String()+"-cert.pem")
		keyPath := filepath.Join(dir, kt.String()+"-key.pem")
		os.WriteFile(certPath, leaf.CertPEM, 0o600)
		os.WriteFile(keyPath, leaf.KeyPEM, 0o600)
		args = append(args, "-cert", certPath, "-key", keyPath)
	}
	args = append(args, "-addr", "127.0.0.1:0", "-query-frequency", "120")

	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- run(ctx, args, pw, io.Discard); pw.Close() }()
	addr, _ := readAddrs(t, pr)

	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	for _, suite := range []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256} {
		conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, ServerName: "localhost", MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{suite}})
		if err != nil {
			t.Fatal(err)
		}
		st := conn.ConnectionState()
		conn.Close()
		leaf := leaves[st.PeerCertificates[0].PublicKeyAlgorithm]
		if _, err := ocsp.ParseResponseForCert(st.OCSPResponse, leaf.Cert, ca.Cert); err != nil {
			t.Fatalf("%v: staple: %v", leaf.Cert.PublicKeyAlgorithm, err)
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Minute): // only a hang
		t.Fatal("server did not shut down")
	}
}

// readAddrs reads the server's stdout up to its "listening on" line and
// returns the TLS address and the admin URL (empty when off).
func readAddrs(t *testing.T, r io.Reader) (addr, admin string) {
	t.Helper()
	br := bufio.NewReader(r)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("server output ended: %v", err)
		}
		line = strings.TrimSpace(line)
		if rest, ok := strings.CutPrefix(line, "admin API on "); ok {
			admin = rest
		}
		if rest, ok := strings.CutPrefix(line, "listening on "); ok {
			go io.Copy(io.Discard, br)
			return rest, admin
		}
	}
}

func TestServerRejectsBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"-cert", "a.pem"},
		{"-cert", "a.pem", "-key", "a.key", "-policy", "sometimes"},
		{"-cert", "a.pem", "-key", "a.key", "-cache-ttl", "10"},
		{"-cert", "/nonexistent", "-key", "/nonexistent"},
	} {
		if err := run(context.Background(), args, io.Discard, io.Discard); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
}
