package stapler

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ocsp"

	"github.com/staplerkit/ocsp/responder"
)

// writeKeyPair writes leaf's chain and key as PEM files, as a user has them.
func writeKeyPair(t *testing.T, leaf *responder.Leaf) (certFile, keyFile string) {
	t.Helper()
	dir := t.TempDir()
	var chain []byte
	for _, der := range leaf.Certificate.Certificate {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	key, err := x509.MarshalPKCS8PrivateKey(leaf.Certificate.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "chain.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, chain, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// serveHTTP runs srv on loopback with ServeTLS(certFile, keyFile), as
// ListenAndServeTLS does, until the test ends.
func serveHTTP(t *testing.T, srv *http.Server, certFile, keyFile string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.ServeTLS(ln, certFile, keyFile) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Error(err)
		}
	})
	return ln.Addr().String()
}

// The integration most Go teams write first, ListenAndServeTLS(cert, key)
// on a wrapped config, serves the files' certificate unstapled: net/http
// loads them into its own copy. The first handshake that asks the wrapped
// config logs a WARN naming the fix, once; LoadKeyPair before Wrap, with
// ListenAndServeTLS("", ""), staples every handshake, with or without SNI.
func TestListenAndServeTLSWithFilesWarnsAndLoadKeyPairStaples(t *testing.T) {
	var logs syncBuffer
	e := newEnv(t, on, WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	certFile, keyFile := writeKeyPair(t, e.leaf)

	// The habit: files given to ServeTLS.
	habit := serveHTTP(t, &http.Server{TLSConfig: e.s.Wrap(&tls.Config{})}, certFile, keyFile)
	for range 3 {
		if staple, _, err := e.handshake(habit); err != nil || staple != nil {
			t.Fatalf("the files' certificate: stapled %v (%v)", staple != nil, err)
		}
	}
	if n := strings.Count(logs.String(), "has no certificates of its own"); n != 1 {
		t.Fatalf("the WARN naming the fix was logged %d times, want once:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "stapler.LoadKeyPair") {
		t.Fatalf("the warning does not name the fix:\n%s", logs.String())
	}

	// The fix: the files loaded before Wrap.
	cfg, err := LoadKeyPair(nil, certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	fixed := serveHTTP(t, &http.Server{TLSConfig: e.s.Wrap(cfg)}, "", "")
	e.mustGetStaple(fixed, e.leaf, ocsp.Good)
	staple, _, err := e.handshake(fixed, func(c *tls.Config) { c.ServerName = ""; c.InsecureSkipVerify = true })
	if err != nil || staple == nil {
		t.Fatalf("no SNI: stapled %v (%v)", staple != nil, err)
	}
	if _, err := LoadKeyPair(cfg, certFile, filepath.Join(t.TempDir(), "missing.pem")); err == nil {
		t.Fatal("LoadKeyPair of a missing key file returned no error")
	}
	if len(cfg.Certificates) != 1 {
		t.Fatal("LoadKeyPair changed the config it was given")
	}
}
