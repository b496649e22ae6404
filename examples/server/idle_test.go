package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/staplerkit/ocsp/examples/internal/cli"
	"github.com/staplerkit/ocsp/responder"
)

// TestIdleConnectionsAreClosed: a keep-alive connection left idle, on the
// TLS listener and on the admin listener, is closed by the server once
// cli.IdleTimeout passes (it used to stay open forever), and an over-long
// header is refused.
func TestIdleConnectionsAreClosed(t *testing.T) {
	defer func(d time.Duration) { cli.IdleTimeout = d }(cli.IdleTimeout)
	cli.IdleTimeout = 200 * time.Millisecond
	ca, err := responder.NewCA(responder.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ocspServer := responder.NewServer(responder.New(ca))
	defer ocspServer.Close()
	leaf, err := ocspServer.Issue(responder.LeafOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certPath, keyPath := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certPath, leaf.CertPEM, 0o600)
	os.WriteFile(keyPath, leaf.KeyPEM, 0o600)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-cert", certPath, "-key", keyPath, "-addr", "127.0.0.1:0", "-admin-addr", "127.0.0.1:0", "-admin-key", "k"}, pw, io.Discard)
		pw.Close()
	}()
	addr, admin := readAddrs(t, pr)
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)

	tlsConn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	adminConn, err := net.Dial("tcp", admin[len("http://"):])
	if err != nil {
		t.Fatal(err)
	}
	for name, conn := range map[string]net.Conn{"TLS": tlsConn, "admin": adminConn} {
		fmt.Fprintf(conn, "GET /v1/ocsp HTTP/1.1\r\nHost: x\r\nX-API-KEY: k\r\n\r\n")
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		// Idle now; the server must hang up. Only a hang reaches a minute.
		conn.SetReadDeadline(time.Now().Add(time.Minute))
		if _, err := br.ReadByte(); err != io.EOF && !isClosed(err) {
			t.Fatalf("%s: an idle keep-alive connection was not closed: %v", name, err)
		}
		conn.Close()
	}

	conn, err := net.Dial("tcp", admin[len("http://"):])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /v1/ocsp HTTP/1.1\r\nHost: x\r\nX-Big: %s\r\n\r\n", strings.Repeat("a", 64<<10))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil || resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("a 64 KiB header: %v %v, want 431", resp, err)
	}
	cancel()
	<-done
}

// isClosed reports whether err is the server hanging up (a reset, say),
// not the read deadline passing.
func isClosed(err error) bool {
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}
