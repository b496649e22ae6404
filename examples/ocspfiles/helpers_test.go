package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/staplerkit/ocsp/responder"
	"github.com/staplerkit/ocsp/stapler"
)

// hang is the limit only a hang reaches: tests wait for events, never for
// a time budget.
const hang = time.Minute

// pki is a test CA, its responder, and one leaf written to disk.
type pki struct {
	ca   *responder.CA
	srv  *responder.Server
	leaf *responder.Leaf
	dir  string
	// chain is the leaf then the CA (PEM); caFile the CA alone.
	chain, key, caFile string
}

func newPKI(t *testing.T, names ...string) *pki {
	t.Helper()
	ca, err := responder.NewCA(responder.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	srv := responder.NewServer(responder.New(ca))
	t.Cleanup(srv.Close)
	p := &pki{ca: ca, srv: srv, dir: t.TempDir()}
	p.caFile = p.write(t, "ca.pem", ca.CertPEM)
	p.issue(t, names...)
	return p
}

// issue mints a new leaf and writes it over chain.pem and key.pem.
func (p *pki) issue(t *testing.T, names ...string) {
	t.Helper()
	leaf, err := p.srv.Issue(responder.LeafOptions{DNSNames: names})
	if err != nil {
		t.Fatal(err)
	}
	p.leaf = leaf
	p.chain = p.write(t, "chain.pem", leaf.CertPEM)
	p.key = p.write(t, "key.pem", leaf.KeyPEM)
}

func (p *pki) write(t *testing.T, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func (p *pki) id() string { return stapler.CertificateID(p.leaf.Certificate.Certificate[0]) }

// daemon is run() in-process.
type runningDaemon struct {
	admin   string
	metrics string
	cancel  context.CancelFunc
	done    chan error
	logs    *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startDaemon runs the daemon with args (and an admin API) until the test
// ends, and returns once it printed "managing".
func startDaemon(t *testing.T, args ...string) *runningDaemon {
	t.Helper()
	args = append([]string{"-admin-addr", "127.0.0.1:0", "-admin-key", "k"}, args...)
	ctx, cancel := context.WithCancel(context.Background())
	d := &runningDaemon{cancel: cancel, done: make(chan error, 1), logs: &syncBuffer{}}
	pr, pw := io.Pipe()
	go func() { d.done <- run(ctx, args, pw, d.logs); pw.Close() }()
	t.Cleanup(func() { d.stop(t) })
	br := bufio.NewReader(pr)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("daemon output ended: %v\n%s", err, d.logs)
		}
		line = strings.TrimSpace(line)
		if rest, ok := strings.CutPrefix(line, "admin API on "); ok {
			d.admin = rest
		}
		if rest, ok := strings.CutPrefix(line, "metrics on "); ok {
			d.metrics = rest
		}
		if strings.HasPrefix(line, "managing ") {
			go io.Copy(io.Discard, br)
			return d
		}
	}
}

func (d *runningDaemon) stop(t *testing.T) {
	t.Helper()
	if d.cancel == nil {
		return
	}
	d.cancel()
	d.cancel = nil
	select {
	case err := <-d.done:
		if err != nil {
			t.Errorf("daemon: %v", err)
		}
	case <-time.After(hang):
		t.Errorf("daemon did not stop")
	}
	if t.Failed() {
		t.Logf("daemon log:\n%s", d.logs)
	}
}

// test asks the daemon's admin API to query the responder now.
func (d *runningDaemon) test(t *testing.T, id string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", d.admin+"/v1/ocsp/test?id="+id, nil)
	req.Header.Set("X-API-KEY", "k")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// waitFor polls cond until it holds; only a hang reaches the limit.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(hang)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func fileEquals(path string, want []byte) bool {
	got, err := os.ReadFile(path)
	return err == nil && bytes.Equal(got, want)
}

func fileGone(path string) bool {
	_, err := os.Lstat(path)
	return os.IsNotExist(err)
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

// needTool finds a peer program: skipped when missing, unless in CI.
func needTool(t *testing.T, name string, paths ...string) string {
	t.Helper()
	for _, p := range paths {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is required in CI: .ci/run installs it", name)
	}
	t.Skipf("%s not installed; not tested against it", name)
	return ""
}

// startProcess runs a server in its own process group, stopped (and its
// children with it) when the test ends. The channel is closed when it exits.
func startProcess(t *testing.T, log io.Writer, name string, args ...string) <-chan struct{} {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(hang):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	})
	return exited
}

// waitTLS polls until a TLS handshake at addr succeeds.
func waitTLS(t *testing.T, addr string, log *syncBuffer) {
	t.Helper()
	deadline := time.Now().Add(hang)
	for {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{InsecureSkipVerify: true})
		if err == nil {
			conn.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no TLS at %s: %v\n%s", addr, err, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// certStatus runs openssl s_client -status against addr and returns the
// "Cert Status:" it shows ("" when no staple came).
func certStatus(t *testing.T, openssl, addr, name, caFile string) string {
	t.Helper()
	cmd := exec.Command(openssl, "s_client", "-status", "-connect", addr, "-servername", name, "-CAfile", caFile)
	cmd.Stdin = strings.NewReader("")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "s_client failed: " + err.Error()
	}
	for line := range strings.SplitSeq(string(out), "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "Cert Status: "); ok {
			return rest
		}
	}
	if strings.Contains(string(out), "no response sent") {
		return ""
	}
	return "unparsed output: " + string(out)
}

// waitStatus polls s_client until it shows want.
func waitStatus(t *testing.T, openssl, addr, name, caFile, want string, log *syncBuffer) {
	t.Helper()
	deadline := time.Now().Add(hang)
	for {
		got := certStatus(t, openssl, addr, name, caFile)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("s_client shows %q, want %q\n%s", got, want, log)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func combinedOutput(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	return string(out), err
}
