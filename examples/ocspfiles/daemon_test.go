package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/staplerkit/ocsp/examples/internal/cli"
	"github.com/staplerkit/ocsp/responder"
	"github.com/staplerkit/ocsp/stapler"
)

// fileStatus verifies the response file as the response about p's leaf
// and returns its status ("" when the file is missing or does not verify).
func fileStatus(p *pki, path string) string {
	der, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	r, err := stapler.VerifyResponse(der, p.leaf.Cert, p.ca.Cert, stapler.VerifyOptions{})
	if err != nil {
		return ""
	}
	switch r.Status {
	case ocsp.Good:
		return "good"
	case ocsp.Revoked:
		return "revoked"
	}
	return "other"
}

func TestExpiredResponseFileIsRemoved(t *testing.T) {
	p := newPKI(t)
	// Responses that expire a few seconds from now.
	p.srv.Responder.SetWindow(responder.Window{Backdate: time.Minute, Lifetime: time.Minute + 3*time.Second})
	out := p.chain + ".ocsp"
	// The reload command records what the nginx include said when it ran.
	marker := filepath.Join(p.dir, "reloads")
	startDaemon(t, "-cert", p.chain, "-nginx-conf", "-reload-delay", "10ms", "-reload", "cat "+out+".conf >> "+marker)
	waitFor(t, "the response file", func() bool { return fileStatus(p, out) == "good" })
	// No fresh response from now on.
	p.srv.Responder.SetFault(responder.Fault{Kind: responder.FaultHTTP500})
	waitFor(t, "the expired file to be removed", func() bool { return fileGone(out) })
	conf, _ := os.ReadFile(out + ".conf")
	if !strings.Contains(string(conf), "ssl_stapling off;") {
		t.Fatalf("the nginx include still turns stapling on:\n%s", conf)
	}
	waitFor(t, "a reload after the removal", func() bool {
		b, _ := os.ReadFile(marker)
		return strings.HasSuffix(string(b), "ssl_stapling off;\n")
	})
}

// TestAnInvalidResponseLeavesTheLastGoodFile: whatever a responder answers
// that does not verify, the file keeps the last good response.
func TestAnInvalidResponseLeavesTheLastGoodFile(t *testing.T) {
	p := newPKI(t)
	d := startDaemon(t, "-cert", p.chain)
	out := p.chain + ".ocsp"
	waitFor(t, "the response file", func() bool { return fileStatus(p, out) == "good" })
	good, _ := os.ReadFile(out)
	for _, fault := range []responder.FaultKind{
		responder.FaultGarbageBody,
		responder.FaultTruncatedBody,
		responder.FaultWrongSerial,
		responder.FaultWrongIssuerHash,
		responder.FaultUnauthorizedSigner,
		responder.FaultNextUpdateInPast,
		responder.FaultInternalError,
	} {
		p.srv.Responder.SetFault(responder.Fault{Kind: fault})
		if code, body := d.test(t, p.id()); code == 200 {
			t.Fatalf("%v: the test query succeeded: %s", fault, body)
		}
		if !fileEquals(out, good) {
			t.Fatalf("%v: the file changed", fault)
		}
	}
}

// TestAnOlderResponseDoesNotRollTheFileBack: once the file says revoked, an
// older good answer (a stale cache, a replay) never replaces it.
func TestAnOlderResponseDoesNotRollTheFileBack(t *testing.T) {
	p := newPKI(t)
	d := startDaemon(t, "-cert", p.chain)
	out := p.chain + ".ocsp"
	waitFor(t, "the response file", func() bool { return fileStatus(p, out) == "good" })
	p.srv.Responder.SetStatus(p.leaf.Cert.SerialNumber, responder.Revoked(time.Now().Add(-time.Hour), ocsp.KeyCompromise))
	if code, body := d.test(t, p.id()); code != 200 {
		t.Fatalf("test query: %d %s", code, body)
	}
	waitFor(t, "the revocation in the file", func() bool { return fileStatus(p, out) == "revoked" })
	revoked, _ := os.ReadFile(out)

	p.srv.Responder.SetStatus(p.leaf.Cert.SerialNumber, responder.Good())
	p.srv.Responder.SetWindow(responder.Window{Backdate: 2 * time.Hour, Lifetime: 24 * time.Hour})
	if code, body := d.test(t, p.id()); code == 200 {
		t.Fatalf("an older good answer was taken: %s", body)
	}
	if !fileEquals(out, revoked) {
		t.Fatal("the file went back to an older response")
	}
}

// TestAnUnchangedResponseIsNotRewritten: a restart finds the file, the
// Stapler verifies it (Push) and serves it, and the file is left as it is
// (same inode, same modification time), even when the responder is down.
func TestAnUnchangedResponseIsNotRewritten(t *testing.T) {
	p := newPKI(t)
	out := p.chain + ".ocsp"
	d := startDaemon(t, "-cert", p.chain)
	waitFor(t, "the response file", func() bool { return fileStatus(p, out) == "good" })
	d.stop(t)
	before, err := os.Stat(out)
	if err != nil {
		t.Fatal(err)
	}
	p.srv.Responder.SetFault(responder.Fault{Kind: responder.FaultHTTP500})

	d = startDaemon(t, "-cert", p.chain, "-metrics-addr", "127.0.0.1:0", "-check-interval", "10ms")
	if !strings.Contains(d.logs.String(), "existing response file verified") {
		t.Fatalf("the existing file was not taken:\n%s", d.logs)
	}
	d.test(t, p.id()) // fails: the responder is down
	waitFor(t, "a few periodic checks", func() bool {
		return metricValue(metricsText(t, d.metrics), "staplerkit_ocspfiles_checks_total") >= 3
	})
	after, err := os.Stat(out)
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(before, after) || !before.ModTime().Equal(after.ModTime()) {
		t.Fatal("the unchanged response was written again")
	}
	if n := metricValue(metricsText(t, d.metrics), "staplerkit_ocspfiles_writes_total"); n != 0 {
		t.Fatalf("%v writes counted", n)
	}
}

// metricValue reads one unlabelled series from the text format (-1 when
// absent).
func metricValue(text, name string) float64 {
	for line := range strings.SplitSeq(text, "\n") {
		if rest, ok := strings.CutPrefix(line, name+" "); ok {
			var v float64
			if _, err := fmt.Sscan(rest, &v); err == nil {
				return v
			}
		}
	}
	return -1
}

func metricsText(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestAnExistingFileThatDoesNotVerifyIsRemovedAtStart: a file left by
// someone else (garbage, another certificate's response, an expired one)
// is never left for a server to staple.
func TestAnExistingFileThatDoesNotVerifyIsRemovedAtStart(t *testing.T) {
	p := newPKI(t)
	out := p.chain + ".ocsp"
	other, err := p.srv.Issue(responder.LeafOptions{})
	if err != nil {
		t.Fatal(err)
	}
	otherDER, err := p.srv.Responder.Respond(other.Cert)
	if err != nil {
		t.Fatal(err)
	}
	p.srv.Responder.SetWindow(responder.Window{Backdate: 2 * time.Hour, Lifetime: time.Hour})
	expiredDER, err := p.srv.Responder.Respond(p.leaf.Cert)
	if err != nil {
		t.Fatal(err)
	}
	p.srv.Responder.SetFault(responder.Fault{Kind: responder.FaultHTTP500})
	for _, content := range [][]byte{[]byte("not DER"), otherDER, expiredDER} {
		os.WriteFile(out, content, 0o644)
		d := startDaemon(t, "-cert", p.chain)
		if !fileGone(out) {
			t.Fatalf("a file that does not verify is still there")
		}
		if !strings.Contains(d.logs.String(), "existing response file refused") {
			t.Fatalf("no log line:\n%s", d.logs)
		}
		d.stop(t)
	}
}

// TestSIGHUPPicksUpARotatedCertificate: after the certificate file is
// replaced and the daemon gets SIGHUP, the file holds the new certificate's
// response and the old certificate is no longer managed.
func TestSIGHUPPicksUpARotatedCertificate(t *testing.T) {
	p := newPKI(t)
	out := p.chain + ".ocsp"
	d := startDaemon(t, "-cert", p.chain)
	waitFor(t, "the response file", func() bool { return fileStatus(p, out) == "good" })
	oldID := p.id()
	p.issue(t) // a new leaf in chain.pem
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the new certificate's response", func() bool { return fileStatus(p, out) == "good" })
	waitFor(t, "the old certificate to be removed", func() bool {
		req, _ := http.NewRequest("GET", d.admin+"/v1/ocsp/status", nil)
		req.Header.Set("X-API-KEY", "k")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return !strings.Contains(string(b), oldID) && strings.Contains(string(b), p.id())
	})
}

func TestFlags(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{},
		{"-cert", "/nonexistent"},
		{"-cert", "a.pem", "-suffix", ""},
		{"-cert", "a.pem", "-suffix", "/x"},
		{"-cert", "a.pem", "-cache-ttl", "10"},
		{"-cert", "a.pem", "-admin-addr", ":0"},
		{"-cert", filepath.Join(dir, "a", "x.pem"), "-cert", filepath.Join(dir, "b", "x.pem"), "-out-dir", dir},
		{"-cert", "a.pem", "stray"},
	} {
		t.Setenv(cli.AdminKeyEnv, "")
		if err := run(context.Background(), args, io.Discard, io.Discard); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
	var help strings.Builder
	if err := run(context.Background(), []string{"-help"}, io.Discard, &help); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-help: %v", err)
	}
	for _, f := range []string{"-cert", "-issuer", "-suffix", "-out-dir", "-nginx-conf", "-reload", "-reload-delay", "-reload-timeout",
		"-haproxy-socket", "-haproxy-timeout", "-check-interval", "-responder-url", "-cache-ttl", "-query-frequency",
		"-response-timeout", "-recovery-frequency", "-recovery-max-tries", "-skip-verify", "-admin-addr", "-admin-key", "-metrics-addr", "SIGHUP"} {
		if !strings.Contains(help.String(), f) {
			t.Errorf("-help does not mention %s", f)
		}
	}
}

func TestNginxIncludeQuotesThePath(t *testing.T) {
	on := string(nginxConf(&target{outPath: `/etc/ssl/my "site"; x\y.ocsp`}, true))
	if !strings.Contains(on, `ssl_stapling_file "/etc/ssl/my \"site\"; x\\y.ocsp";`) {
		t.Fatalf("include:\n%s", on)
	}
	if _, err := makeTargets([]string{"/etc/ssl/a\nssl_stapling off;.pem"}, "", ".ocsp", true); err == nil {
		t.Fatal("a path with a newline accepted for an nginx include")
	}
}
