package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/hex"
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

	"github.com/staplerkit/ocsp/responder"
)

// fixedPKI is a test PKI whose responder runs on a frozen clock, the
// same one the probe is given: the figures the probe prints are exact.
func fixedPKI(t *testing.T) (*pki, time.Time) {
	t.Helper()
	p := newPKI(t)
	t0 := time.Now().Truncate(time.Second)
	p.r.SetClock(func() time.Time { return t0 })
	return p, t0
}

// probeAt runs the probe at the frozen time t0 and returns its exit code,
// its text output and its stderr.
func probeAt(t *testing.T, t0 time.Time, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	if !hasFlag(args, "-timeout") {
		args = append(args, "-timeout", hangLimit.String())
	}
	code := runAt(context.Background(), func() time.Time { return t0 }, args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// probeJSONAt is probeAt with -json, decoded.
func probeJSONAt(t *testing.T, t0 time.Time, args ...string) (int, map[string]any) {
	t.Helper()
	code, out, errOut := probeAt(t, t0, append(args, "-json")...)
	var obj map[string]any
	if err := json.Unmarshal([]byte(out), &obj); err != nil {
		t.Fatalf("not JSON: %v\n%s\n%s", err, out, errOut)
	}
	return code, obj
}

func hasFlag(args []string, f string) bool {
	for _, a := range args {
		if a == f {
			return true
		}
	}
	return false
}

// serveTLS serves cfg on loopback until the test ends: each connection is
// handshaken and closed.
func serveTLS(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
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

// serveStaple serves leaf with staple (none when nil), as crypto/tls does
// with Certificate.OCSPStaple.
func serveStaple(t *testing.T, leaf *responder.Leaf, staple []byte) string {
	t.Helper()
	cert := leaf.Certificate
	cert.OCSPStaple = staple
	return serveTLS(t, &tls.Config{Certificates: []tls.Certificate{cert}})
}

// respond is the responder's answer about leaf now under window w.
func respond(t *testing.T, p *pki, leaf *responder.Leaf, w responder.Window) []byte {
	t.Helper()
	p.r.SetWindow(w)
	defer p.r.SetWindow(responder.Window{})
	der, err := p.r.Respond(leaf.Cert)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// TestDefaultThresholdsFollowTheResponsesValidity: without -w and -c a
// healthy staple is OK whatever its lifetime (a day, as the responder
// package and examples/testpki make them; an hour), WARNING below a
// quarter of its validity and CRITICAL below a tenth; -w and -c (and the
// old -warn) replace the rule with fixed durations.
func TestDefaultThresholdsFollowTheResponsesValidity(t *testing.T) {
	p, t0 := fixedPKI(t)
	leaf, _ := p.srv.Issue(responder.LeafOptions{})
	for _, tc := range []struct {
		name   string
		window responder.Window
		flags  []string
		want   int
		reason string
	}{
		{"a day, fresh", responder.Window{}, nil, exitOK, "staple good, expires in 23h59m"},
		{"an hour, fresh", responder.Window{Backdate: time.Minute, Lifetime: time.Hour}, nil, exitOK, "staple good, expires in 59m"},
		{"2h, 40m left", responder.Window{Backdate: 80 * time.Minute, Lifetime: 2 * time.Hour}, nil, exitOK, "staple good, expires in 40m"},
		{"2h, 20m left", responder.Window{Backdate: 100 * time.Minute, Lifetime: 2 * time.Hour}, nil, exitWarning, "staple expires in 20m (less than a quarter of its 2h validity)"},
		{"2h, 10m left", responder.Window{Backdate: 110 * time.Minute, Lifetime: 2 * time.Hour}, nil, exitCritical, "staple expires in 10m (less than a tenth of its 2h validity)"},
		{"a day, -w 24h", responder.Window{}, []string{"-w", "24h"}, exitWarning, "staple expires in 23h59m (less than -w 24h)"},
		{"a day, -warn 24h (the old flag)", responder.Window{}, []string{"-warn", "24h"}, exitWarning, "staple expires in 23h59m (less than -w 24h)"},
		{"a day, -c 24h", responder.Window{}, []string{"-c", "24h"}, exitCritical, "staple expires in 23h59m (less than -c 24h)"},
		{"2h, 20m left, -w 10m", responder.Window{Backdate: 100 * time.Minute, Lifetime: 2 * time.Hour}, []string{"-w", "10m"}, exitOK, "staple good, expires in 20m"},
		{"expired", responder.Window{Backdate: 3 * time.Hour, Lifetime: 2 * time.Hour}, nil, exitCritical, "invalid OCSP staple: OCSP response expired"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := serveStaple(t, leaf, respond(t, p, leaf, tc.window))
			code, out, errOut := probeAt(t, t0, append([]string{"-connect", addr, "-servername", "localhost", "-CAfile", p.caFile}, tc.flags...)...)
			if code != tc.want {
				t.Fatalf("exit %d, want %d:\n%s%s", code, tc.want, out, errOut)
			}
			want := fmt.Sprintf("OCSP %s - %s", verdictWord(tc.want), tc.reason)
			if !strings.HasPrefix(firstLine(out), want) {
				t.Fatalf("first line %q, want it to start %q", firstLine(out), want)
			}
		})
	}
}

// TestHealthyStaplerServerIsOK: a server stapling with the library from a
// responder whose answers live a day (the responder package's default,
// which examples/testpki serves) is OK with the default thresholds.
func TestHealthyStaplerServerIsOK(t *testing.T) {
	p := newPKI(t)
	good, _ := p.srv.Issue(responder.LeafOptions{})
	addr := serveStapler(t, p, good)
	if code, obj := runCheck(t, "-connect", addr, "-servername", "localhost", "-CAfile", p.caFile); code != exitOK || obj["verdict"] != "OK" {
		t.Fatalf("exit %d: %v", code, obj)
	}
}

// TestOpenSSLResponderOfHourLongResponsesIsOK: openssl ocsp -nmin 60
// answers with one-hour responses; a server stapling them is healthy, not
// WARNING under a fixed day-long threshold.
func TestOpenSSLResponderOfHourLongResponsesIsOK(t *testing.T) {
	openssl := needOpenSSL(t)
	p := newPKI(t)
	port := freePort(t)
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	leaf, err := p.ca.Issue(responder.LeafOptions{OCSPServer: []string{url}})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	index := fmt.Sprintf("V\t%s\t\t%s\tunknown\t/CN=localhost\n",
		leaf.Cert.NotAfter.UTC().Format("060102150405Z"), strings.ToUpper(hex.EncodeToString(leaf.Cert.SerialNumber.Bytes())))
	files := map[string][]byte{"index.txt": []byte(index), "ca.pem": p.ca.CertPEM, "cakey.pem": p.ca.KeyPEM}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(openssl, "ocsp", "-index", "index.txt", "-port", fmt.Sprint(port),
		"-rsigner", "ca.pem", "-rkey", "cakey.pem", "-CA", "ca.pem", "-nmin", "60", "-ignore_err")
	cmd.Dir = dir
	// Readiness is read from its log: a probe connection would stall
	// openssl's single-threaded responder.
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait(); pw.Close() })
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "waiting for OCSP client connections") {
				close(ready)
				break
			}
		}
		io.Copy(io.Discard, pr)
	}()
	select {
	case <-ready:
	case <-time.After(hangLimit):
		t.Fatal("openssl ocsp did not start")
	}

	addr := serveStapler(t, p, leaf)
	code, obj := runCheck(t, "-connect", addr, "-servername", "localhost", "-CAfile", p.caFile)
	if code != exitOK {
		t.Fatalf("exit %d, want OK: %v", code, obj)
	}
	r := obj["results"].([]any)[0].(map[string]any)
	if th := r["thresholds"].(map[string]any); th["validity_seconds"] != float64(3600) || th["warn_seconds"] != float64(900) || th["crit_seconds"] != float64(360) {
		t.Fatalf("thresholds for an hour-long response: %v", th)
	}
}

func needOpenSSL(t *testing.T) string {
	t.Helper()
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("openssl is required in CI: .ci/run installs it")
		}
		t.Skip("openssl not installed")
	}
	return openssl
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestBadCertificateIsCriticalHoweverReached: a certificate for another
// name, from an untrusted CA, or expired is CRITICAL whether the probe is
// given a name or an IP address: the handshake happened, the certificate
// is what fails.
func TestBadCertificateIsCriticalHoweverReached(t *testing.T) {
	p, t0 := fixedPKI(t)
	stranger, err := responder.NewCA(responder.CAOptions{CommonName: "someone else's CA"})
	if err != nil {
		t.Fatal(err)
	}
	otherName, _ := p.srv.Issue(responder.LeafOptions{DNSNames: []string{"elsewhere.test"}})
	untrusted, _ := stranger.Issue(responder.LeafOptions{})
	expired, _ := p.srv.Issue(responder.LeafOptions{NotBefore: t0.Add(-48 * time.Hour), NotAfter: t0.Add(-24 * time.Hour)})
	for _, tc := range []struct {
		name string
		leaf *responder.Leaf
		want string
	}{
		{"name mismatch", otherName, "not localhost"},
		{"untrusted chain", untrusted, "unknown authority"},
		{"expired", expired, "expired"},
	} {
		addr := serveStaple(t, tc.leaf, nil)
		_, port, _ := net.SplitHostPort(addr)
		for _, reach := range []struct {
			how  string
			args []string
		}{
			{"by name", []string{"-connect", net.JoinHostPort("localhost", port)}},
			{"by -servername", []string{"-connect", addr, "-servername", "localhost"}},
			{"by IP", []string{"-connect", addr}},
		} {
			t.Run(tc.name+"/"+reach.how, func(t *testing.T) {
				if tc.leaf == otherName && reach.how == "by IP" {
					tc.want = "127.0.0.1" // the address dialled is what the name must match
				}
				code, out, errOut := probeAt(t, t0, append(reach.args, "-CAfile", p.caFile)...)
				if code != exitCritical {
					t.Fatalf("exit %d, want CRITICAL:\n%s%s", code, out, errOut)
				}
				if l := firstLine(out); !strings.HasPrefix(l, "OCSP CRITICAL - the server's certificate does not verify") || !strings.Contains(l, tc.want) {
					t.Fatalf("first line %q", l)
				}
			})
		}
	}
}

// TestUnknownOnlyWithoutAnyHandshake: UNKNOWN is for a server the probe
// could not handshake with at all: nothing listening, nothing said before
// the timeout, or something that is not TLS.
func TestUnknownOnlyWithoutAnyHandshake(t *testing.T) {
	silent := listen(t, func(c net.Conn) { io.Copy(io.Discard, c) })
	notTLS := listen(t, func(c net.Conn) {
		io.WriteString(c, "HTTP/1.0 400 Bad Request\r\n\r\n")
		c.Close()
	})
	closed := listen(t, func(c net.Conn) { c.Close() })
	refused := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	for _, tc := range []struct {
		name, addr, timeout string
	}{
		{"connection refused", refused, hangLimit.String()},
		// Only a hang reaches the timeout: its length cannot change the verdict.
		{"silent until the timeout", silent, "200ms"},
		{"not TLS", notTLS, hangLimit.String()},
		{"closed at once", closed, hangLimit.String()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := probeAt(t, time.Now(), "-connect", tc.addr, "-timeout", tc.timeout)
			if code != exitUnknown || !strings.HasPrefix(out, "OCSP UNKNOWN - no TLS handshake: ") {
				t.Fatalf("exit %d, want UNKNOWN:\n%s%s", code, out, errOut)
			}
		})
	}
}

// listen serves each connection with handle until the test ends.
func listen(t *testing.T, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); close(done) })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				go func() { <-done; c.Close() }()
				handle(c)
			}()
		}
	}()
	return ln.Addr().String()
}

// TestFetchWhenTheResponderFailsIsAWarning: nothing stapled for a plain
// leaf is WARNING; with -fetch, a responder that cannot answer the probe
// (HTTP errors, OCSP error statuses, garbage) keeps it WARNING, its
// trouble in the reason: it is transient, and the missing staple is the
// finding. For a must-staple leaf it stays CRITICAL.
func TestFetchWhenTheResponderFailsIsAWarning(t *testing.T) {
	p, t0 := fixedPKI(t)
	plain, _ := p.srv.Issue(responder.LeafOptions{})
	must, _ := p.srv.Issue(responder.LeafOptions{MustStaple: true})
	for _, f := range []responder.FaultKind{
		responder.FaultHTTP500, responder.FaultHTTP503HTML, responder.FaultTryLater,
		responder.FaultInternalError, responder.FaultGarbageBody, responder.FaultTruncatedBody, responder.FaultHugeBody,
	} {
		for _, tc := range []struct {
			leaf *responder.Leaf
			want int
		}{{plain, exitWarning}, {must, exitCritical}} {
			t.Run(fmt.Sprintf("%v/must-staple=%v", f, tc.leaf == must), func(t *testing.T) {
				p.r.SetFault(responder.Fault{Kind: f})
				defer p.r.SetFault(responder.Fault{})
				code, out, errOut := probeAt(t, t0, "-connect", serveStaple(t, tc.leaf, nil), "-servername", "localhost", "-CAfile", p.caFile, "-fetch")
				if code != tc.want {
					t.Fatalf("exit %d, want %d:\n%s%s", code, tc.want, out, errOut)
				}
				if !strings.Contains(firstLine(out), "no OCSP response stapled") {
					t.Fatalf("first line %q", firstLine(out))
				}
			})
		}
	}
	// What the responder does say is still heard: revoked is CRITICAL.
	p.r.SetStatus(plain.Cert.SerialNumber, responder.Revoked(t0.Add(-time.Hour), ocsp.KeyCompromise))
	if code, out, _ := probeAt(t, t0, "-connect", serveStaple(t, plain, nil), "-servername", "localhost", "-CAfile", p.caFile, "-fetch"); code != exitCritical || !strings.Contains(firstLine(out), "revoked") {
		t.Fatalf("fetched revoked answer: exit %d:\n%s", code, out)
	}
}

// TestDelegatedSignerExpiryShortensTheStaple: a response valid for three
// days, signed by a delegate that expires in 30 minutes, is relied on for
// 30 minutes (Response.Expires): under -w 24h that is a WARNING.
func TestDelegatedSignerExpiryShortensTheStaple(t *testing.T) {
	p, t0 := fixedPKI(t)
	leaf, _ := p.srv.Issue(responder.LeafOptions{})
	d, err := p.ca.NewDelegate(responder.DelegateOptions{NotBefore: t0.Add(-time.Hour), NotAfter: t0.Add(30 * time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	p.r.UseDelegate(d)
	staple := respond(t, p, leaf, responder.Window{Backdate: time.Minute, Lifetime: 3*24*time.Hour + time.Minute})
	code, out, errOut := probeAt(t, t0, "-connect", serveStaple(t, leaf, staple), "-servername", "localhost", "-CAfile", p.caFile, "-warn", "24h")
	if code != exitWarning {
		t.Fatalf("exit %d, want WARNING:\n%s%s", code, out, errOut)
	}
	want := "OCSP WARNING - staple expires in 30m, when its delegated signer's certificate does, (less than -w 24h) | staple_ttl=1800s;86400:;"
	if !strings.HasPrefix(firstLine(out), want) {
		t.Fatalf("first line %q, want it to start %q", firstLine(out), want)
	}
}

// TestPerfDataFormat: the first line is "OCSP <verdict> - <reason> |
// <perfdata>", where the perfdata is staple_ttl (with the thresholds as
// Nagios ranges, "N:" = alert below N) and response_age for the staple
// with the least time left, then both again per TLS version.
func TestPerfDataFormat(t *testing.T) {
	p, t0 := fixedPKI(t)
	leaf, _ := p.srv.Issue(responder.LeafOptions{})
	addr := serveStaple(t, leaf, respond(t, p, leaf, responder.Window{}))
	code, out, _ := probeAt(t, t0, "-connect", addr, "-servername", "localhost", "-CAfile", p.caFile)
	want := "OCSP OK - staple good, expires in 23h59m | " +
		"staple_ttl=86340s;21600:;8640: response_age=60s " +
		"staple_ttl_tls13=86340s;21600:;8640: response_age_tls13=60s " +
		"staple_ttl_tls12=86340s;21600:;8640: response_age_tls12=60s"
	if code != exitOK || firstLine(out) != want {
		t.Fatalf("exit %d, first line\n%q, want\n%q", code, firstLine(out), want)
	}
	// Nothing stapled: no figures at all, rather than a made-up zero.
	code, out, _ = probeAt(t, t0, "-connect", serveStaple(t, leaf, nil), "-servername", "localhost", "-CAfile", p.caFile)
	if l := firstLine(out); code != exitWarning || l != "OCSP WARNING - no OCSP response stapled" {
		t.Fatalf("exit %d, first line %q", code, l)
	}
}

// TestJSONCarriesTheVerdict: -json has the verdict word, the reason, the
// perfdata (as the plugin writes it and as values) and, per handshake,
// the thresholds used and how they were chosen.
func TestJSONCarriesTheVerdict(t *testing.T) {
	p, t0 := fixedPKI(t)
	leaf, _ := p.srv.Issue(responder.LeafOptions{})
	addr := serveStaple(t, leaf, respond(t, p, leaf, responder.Window{Backdate: 100 * time.Minute, Lifetime: 2 * time.Hour}))
	code, obj := probeJSONAt(t, t0, "-connect", addr, "-servername", "localhost", "-CAfile", p.caFile, "-c", "5m")
	if code != exitWarning || obj["verdict"] != "WARNING" || obj["exit"] != float64(exitWarning) ||
		obj["reason"] != "staple expires in 20m (less than a quarter of its 2h validity)" ||
		obj["perfdata"] != "staple_ttl=1200s;1800:;300: response_age=6000s staple_ttl_tls13=1200s;1800:;300: response_age_tls13=6000s staple_ttl_tls12=1200s;1800:;300: response_age_tls12=6000s" {
		t.Fatalf("exit %d: %v", code, obj)
	}
	ttl := obj["perf"].(map[string]any)["staple_ttl"].(map[string]any)
	if ttl["value"] != float64(1200) || ttl["unit"] != "s" || ttl["warn"] != "1800:" || ttl["crit"] != "300:" {
		t.Fatalf("perf staple_ttl: %v", ttl)
	}
	r := obj["results"].([]any)[0].(map[string]any)
	th := r["thresholds"].(map[string]any)
	if r["verdict"] != "WARNING" || r["seconds_left"] != float64(1200) ||
		th["warn_seconds"] != float64(1800) || th["warn_rule"] != "a quarter of its 2h validity" ||
		th["crit_seconds"] != float64(300) || th["crit_rule"] != "-c 5m" || th["validity_seconds"] != float64(7200) {
		t.Fatalf("result: %v", r)
	}
}

// TestHelpNamesTheDefaultRule: -help says how the default thresholds are
// chosen.
func TestHelpNamesTheDefaultRule(t *testing.T) {
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"-help"}, &out, &errOut)
	help := strings.Join(strings.Fields(out.String()+errOut.String()), " ")
	for _, want := range []string{"WARNING when less than a quarter of the validity is left", "CRITICAL when less than a tenth is left", "-w", "-c", "-warn", "3 UNKNOWN"} {
		if !strings.Contains(help, want) {
			t.Errorf("-help does not say %q:\n%s", want, help)
		}
	}
	if code != exitUnknown {
		t.Errorf("-help: exit %d, want %d as monitoring plugins do", code, exitUnknown)
	}
}

// TestThresholdFlagsAreChecked: a negative threshold, or -c longer than
// -w, is a usage error (UNKNOWN), not a silently odd verdict.
func TestThresholdFlagsAreChecked(t *testing.T) {
	for _, args := range [][]string{
		{"-w", "-1h"}, {"-c", "-1m"}, {"-w", "1h", "-c", "2h"}, {"-warn", "soon"}, {"-timeout", "0s"},
	} {
		var out, errOut bytes.Buffer
		if code := run(context.Background(), append([]string{"-connect", "127.0.0.1:1"}, args...), &out, &errOut); code != exitUnknown || errOut.Len() == 0 {
			t.Errorf("%v: exit %d, stderr %q", args, code, errOut.String())
		}
	}
}
