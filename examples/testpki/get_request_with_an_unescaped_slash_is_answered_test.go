package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"io"
	"math/big"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ocsp"
)

// RFC 5019 GET requests put the base64 request in the path. Clients differ
// on escaping its '/' (the responder package decodes either form, "clients
// differ on whether they escape"), and base64 may hold "//". testpki now
// serves the responder behind an http.ServeMux (for /revoke), which
// "cleans" such a path with a redirect to another path: the request is
// mangled and the responder answers malformedRequest where it answered the
// same request by POST, and where responder.Listen (used before) answered
// the GET too.
func TestGETRequestWithAnUnescapedSlashIsAnswered(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"-dir", dir, "-addr", "127.0.0.1:0"}, pw); pw.Close() }()
	defer func() {
		cancel()
		go io.Copy(io.Discard, pr)
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	url := strings.TrimSpace(line[strings.Index(line, "OCSP responder at ")+len("OCSP responder at "):])
	url = url[:strings.Index(url, " ")]
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, "chain.pem"), filepath.Join(dir, "key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(pair.Certificate[0])
	ca, _ := x509.ParseCertificate(pair.Certificate[1])
	template, err := ocsp.CreateRequest(leaf, ca, &ocsp.RequestOptions{Hash: crypto.SHA1})
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := ocsp.ParseRequest(template)
	if err != nil {
		t.Fatal(err)
	}
	// A request to this CA for some serial whose base64 holds "//".
	var der []byte
	for der == nil {
		serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
		parsed.SerialNumber = serial
		b, err := parsed.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(base64.StdEncoding.EncodeToString(b), "//") {
			der = b
		}
	}
	post, err := http.Post(url, "application/ocsp-request", bytes.NewReader(der))
	if err != nil {
		t.Fatal(err)
	}
	postBody, _ := io.ReadAll(post.Body)
	post.Body.Close()
	_, postErr := ocsp.ParseResponse(postBody, nil)

	get, err := http.Get(url + "/" + base64.StdEncoding.EncodeToString(der)) // '/' left as is
	if err != nil {
		t.Fatal(err)
	}
	getBody, _ := io.ReadAll(get.Body)
	get.Body.Close()
	_, getErr := ocsp.ParseResponse(getBody, nil)
	if get.StatusCode != post.StatusCode || (getErr == nil) != (postErr == nil) || getErr != nil && getErr.Error() != postErr.Error() {
		t.Fatalf("the same request: by POST %d (%v), by GET %d (%v; final URL %s)", post.StatusCode, postErr, get.StatusCode, getErr, get.Request.URL)
	}
}
