package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/staplerkit/ocsp/config"
	"github.com/staplerkit/ocsp/responder"
	"github.com/staplerkit/ocsp/stapler"
)

// hangLimit bounds real-time waits: only a hang reaches it.
const hangLimit = time.Minute

type pki struct {
	dir    string
	ca     *responder.CA
	r      *responder.Responder
	srv    *responder.Server
	caFile string
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	ca, err := responder.NewCA(responder.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p := &pki{dir: t.TempDir(), ca: ca, r: responder.New(ca)}
	p.srv = responder.NewServer(p.r)
	t.Cleanup(p.srv.Close)
	p.caFile = filepath.Join(p.dir, "ca.pem")
	os.WriteFile(p.caFile, ca.CertPEM, 0o600)
	return p
}

// runCheck runs the command and returns its exit code and JSON output.
func runCheck(t *testing.T, args ...string) (int, map[string]any) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(context.Background(), append(args, "-json", "-timeout", hangLimit.String()), &out, &errOut)
	var obj map[string]any
	if out.Len() > 0 {
		if err := json.Unmarshal(out.Bytes(), &obj); err != nil {
			t.Fatalf("not JSON: %v\n%s", err, out.String())
		}
	}
	return code, obj
}

// serveStapler serves leaf through a Stapler-wrapped config, as
// examples/server does, until the test ends.
func serveStapler(t *testing.T, p *pki, leaf *responder.Leaf) string {
	t.Helper()
	s, err := stapler.New(config.OCSP{OCSPFunctionality: true}, stapler.WithColdWait(hangLimit))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ln, err := tls.Listen("tcp", "127.0.0.1:0", s.Wrap(&tls.Config{Certificates: []tls.Certificate{leaf.Certificate}}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { c.(*tls.Conn).Handshake(); c.Close() }()
		}
	}()
	return ln.Addr().String()
}

func TestCheckAgainstAStaplerServer(t *testing.T) {
	p := newPKI(t)
	good, _ := p.srv.Issue(responder.LeafOptions{})
	revoked, _ := p.srv.Issue(responder.LeafOptions{DNSNames: []string{"revoked.test"}})
	p.r.SetStatus(revoked.Cert.SerialNumber, responder.Revoked(time.Now().Add(-time.Hour), ocsp.KeyCompromise))
	unknown, _ := p.srv.Issue(responder.LeafOptions{DNSNames: []string{"unknown.test"}})
	p.r.Forget(unknown.Cert.SerialNumber) // never stapled: an unknown answer

	code, obj := runCheck(t, "-connect", serveStapler(t, p, good), "-servername", "localhost", "-CAfile", p.caFile, "-warn", "1h")
	if code != exitOK {
		t.Fatalf("good: exit %d: %v", code, obj)
	}
	results := obj["results"].([]any)
	for _, r := range results {
		r := r.(map[string]any)
		if r["status"] != "good" || r["stapled"] != true || r["signer"] != "issuer" {
			t.Fatalf("good: %v", r)
		}
	}
	if code, obj := runCheck(t, "-connect", serveStapler(t, p, revoked), "-servername", "revoked.test", "-CAfile", p.caFile); code != exitCritical {
		t.Fatalf("revoked: exit %d: %v", code, obj)
	}
	addr := serveStapler(t, p, unknown)
	if code, obj := runCheck(t, "-connect", addr, "-servername", "unknown.test", "-CAfile", p.caFile); code != exitWarning {
		t.Fatalf("no staple on a plain leaf: exit %d: %v", code, obj)
	}
	// -fetch: nothing stapled, the responder asked instead, and its answer
	// judged: "unknown" is no valid answer.
	if code, obj := runCheck(t, "-connect", addr, "-servername", "unknown.test", "-CAfile", p.caFile, "-fetch"); code != exitCritical || !strings.Contains(fmt.Sprint(obj), "fetched:true") {
		t.Fatalf("-fetch with an unknown answer: exit %d: %v", code, obj)
	}
	if code, _ := runCheck(t, "-connect", "127.0.0.1:1", "-CAfile", p.caFile); code != exitUnknown {
		t.Fatalf("nothing listening: exit %d", code)
	}
	// An IP address: no server name is sent; the chain is still checked.
	if code, obj := runCheck(t, "-connect", serveStapler(t, p, good), "-CAfile", p.caFile, "-warn", "1h"); code != exitOK {
		t.Fatalf("by IP address: exit %d: %v", code, obj)
	}
}

// TestCheckAgainstOpenSSL: openssl s_server staples whatever file it is
// given (-status_file): good, revoked, expired, another certificate's, and
// none for a must-staple leaf.
func TestCheckAgainstOpenSSL(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("openssl is required in CI: .ci/run installs it")
		}
		t.Skip("openssl not installed")
	}
	p := newPKI(t)
	leaf, _ := p.ca.Issue(responder.LeafOptions{})
	must, _ := p.ca.Issue(responder.LeafOptions{MustStaple: true})
	other, _ := p.ca.Issue(responder.LeafOptions{})
	aia, _ := p.srv.Issue(responder.LeafOptions{}) // names the live responder
	for _, l := range []*responder.Leaf{leaf, must, other} {
		p.r.SetStatus(l.Cert.SerialNumber, responder.Good())
	}
	respond := func(l *responder.Leaf, mod func()) []byte {
		mod()
		der, err := p.r.Respond(l.Cert)
		if err != nil {
			t.Fatal(err)
		}
		p.r.SetWindow(responder.Window{})
		return der
	}
	nothing := func() {}
	goodDER := respond(leaf, nothing)
	expiredDER := respond(leaf, func() { p.r.SetWindow(responder.Window{Backdate: 3 * time.Hour, Lifetime: time.Hour}) })
	soonDER := respond(leaf, func() { p.r.SetWindow(responder.Window{Backdate: time.Minute, Lifetime: 2 * time.Hour}) })
	otherDER := respond(other, nothing)
	p.r.SetStatus(leaf.Cert.SerialNumber, responder.Revoked(time.Now().Add(-time.Hour), ocsp.KeyCompromise))
	revokedDER := respond(leaf, nothing)

	for _, tc := range []struct {
		name   string
		leaf   *responder.Leaf
		staple []byte
		want   int
	}{
		{"good", leaf, goodDER, exitOK},
		{"expires within -warn", leaf, soonDER, exitWarning},
		{"revoked", leaf, revokedDER, exitCritical},
		{"expired", leaf, expiredDER, exitCritical},
		{"another certificate's", leaf, otherDER, exitCritical},
		{"none, must-staple", must, nil, exitCritical},
		{"none", leaf, nil, exitWarning},
		{"none, fetched from the responder", aia, nil, exitWarning},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := sServer(t, openssl, p, tc.leaf, tc.staple)
			code, obj := runCheck(t, "-connect", addr, "-servername", "localhost", "-CAfile", p.caFile, "-warn", "3h", "-fetch")
			if code != tc.want {
				t.Fatalf("exit %d, want %d: %v", code, tc.want, obj)
			}
			if tc.leaf == aia && !strings.Contains(fmt.Sprint(obj), "fetched:true") {
				t.Fatalf("not fetched: %v", obj)
			}
		})
	}
}

// sServer runs openssl s_server for leaf, stapling staple (none when nil),
// until the test ends.
func sServer(t *testing.T, openssl string, p *pki, leaf *responder.Leaf, staple []byte) string {
	t.Helper()
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(cert, leaf.CertPEM, 0o600)
	os.WriteFile(key, leaf.KeyPEM, 0o600)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	args := []string{"s_server", "-accept", fmt.Sprintf("127.0.0.1:%d", port), "-cert", cert, "-key", key, "-quiet"}
	if staple != nil {
		status := filepath.Join(dir, "status.der")
		os.WriteFile(status, staple, 0o600)
		args = append(args, "-status_file", status)
	}
	cmd := exec.Command(openssl, args...)
	var stderr bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = strings.NewReader(""), io.Discard, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	for deadline := time.Now().Add(hangLimit); ; {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("openssl s_server did not start: %s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestCheckAgainstExamplesServer runs the probe against the real
// examples/server binary: OK while the certificate is good, CRITICAL once a
// server started after the revocation staples it.
func TestCheckAgainstExamplesServer(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "server")
	if out, err := exec.Command("go", "build", "-o", bin, "../server").CombinedOutput(); err != nil {
		t.Fatalf("go build ../server: %v\n%s", err, out)
	}
	p := newPKI(t)
	leaf, _ := p.srv.Issue(responder.LeafOptions{})
	cert, key := filepath.Join(p.dir, "cert.pem"), filepath.Join(p.dir, "key.pem")
	os.WriteFile(cert, leaf.CertPEM, 0o600)
	os.WriteFile(key, leaf.KeyPEM, 0o600)
	start := func() string {
		cmd := exec.Command(bin, "-cert", cert, "-key", key, "-addr", "127.0.0.1:0")
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = io.Discard
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		addr := make(chan string, 1)
		go func() {
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				if rest, ok := strings.CutPrefix(sc.Text(), "listening on "); ok {
					addr <- rest
				}
			}
		}()
		select {
		case a := <-addr:
			return a
		case <-time.After(hangLimit):
			t.Fatal("examples/server did not start")
		}
		return ""
	}
	// Responses that live a day, under the default thresholds: OK.
	if code, obj := runCheck(t, "-connect", start(), "-servername", "localhost", "-CAfile", p.caFile); code != exitOK {
		t.Fatalf("good: exit %d: %v", code, obj)
	}
	p.r.SetStatus(leaf.Cert.SerialNumber, responder.Revoked(time.Now().Add(-time.Minute), ocsp.KeyCompromise))
	if code, obj := runCheck(t, "-connect", start(), "-servername", "localhost", "-CAfile", p.caFile, "-warn", "1h"); code != exitCritical {
		t.Fatalf("revoked: exit %d: %v", code, obj)
	}
}
