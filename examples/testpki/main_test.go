package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ocsp"
)

func TestWritesAPKIAndServesItsResponder(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"-dir", dir, "-addr", "127.0.0.1:0"}, pw); pw.Close() }()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil || !strings.Contains(line, "OCSP responder at http://127.0.0.1:") {
		t.Fatalf("got %q %v", line, err)
	}
	// The files the walkthroughs of docs/operations.md name.
	for _, pair := range [][2]string{{"chain.pem", "key.pem"}, {"rsa-chain.pem", "rsa-key.pem"}} {
		if _, err := tls.LoadX509KeyPair(filepath.Join(dir, pair[0]), filepath.Join(dir, pair[1])); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "ca.pem")); err != nil {
		t.Fatal(err)
	}
	// Revoked on request, and good again.
	pair, _ := tls.LoadX509KeyPair(filepath.Join(dir, "chain.pem"), filepath.Join(dir, "key.pem"))
	leaf, _ := x509.ParseCertificate(pair.Certificate[0])
	ca, _ := x509.ParseCertificate(pair.Certificate[1])
	url := strings.TrimSpace(line[strings.Index(line, "OCSP responder at ")+len("OCSP responder at "):])
	url = url[:strings.Index(url, " ")]
	for _, tc := range []struct {
		path string
		want int
	}{{"/revoke", ocsp.Revoked}, {"/unrevoke", ocsp.Good}} {
		resp, err := http.Post(url+tc.path, "", nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("POST %s: %v %v", tc.path, resp, err)
		}
		resp.Body.Close()
		req, _ := ocsp.CreateRequest(leaf, ca, nil)
		answer, err := http.Post(url, "application/ocsp-request", bytes.NewReader(req))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(answer.Body)
		answer.Body.Close()
		parsed, err := ocsp.ParseResponseForCert(body, leaf, ca)
		if err != nil || parsed.Status != tc.want {
			t.Fatalf("after POST %s: %v, status %v", tc.path, err, parsed)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
