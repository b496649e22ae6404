package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// The interoperability tests use Debian's openssl as every peer that is not
// ours: the CA (openssl req and openssl ca), the OCSP responder (openssl
// ocsp -index), and the TLS client (openssl s_client -status).

func needOpenSSL(t *testing.T) string { return needTool(t, "openssl", "openssl") }

// needTool returns the path of the command name, which the Debian package
// pkg installs: the test is skipped without it, but fails in CI, where
// .ci/run installs it.
func needTool(t *testing.T, name, pkg string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is required in CI: .ci/run installs %s", name, pkg)
		}
		t.Skipf("%s not installed; not tested", name)
	}
	return path
}

// startServer runs the server with args, and returns its TLS and admin
// addresses once it listens; stop shuts it down (the test's end does too)
// and fails the test if the server returned an error.
func startServer(t *testing.T, args []string) (addr, admin string, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- run(ctx, args, pw, io.Discard); pw.Close() }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Error(err)
			}
		})
	}
	t.Cleanup(stop)
	addr, admin = readAddrs(t, pr)
	return addr, admin, stop
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

type opensslCA struct {
	t       *testing.T
	openssl string
	dir     string
}

func (c *opensslCA) run(args ...string) string {
	c.t.Helper()
	cmd := exec.Command(c.openssl, args...)
	cmd.Dir = c.dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		c.t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func (c *opensslCA) write(name, content string) string {
	c.t.Helper()
	p := filepath.Join(c.dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		c.t.Fatal(err)
	}
	return p
}

// newOpenSSLCA makes a CA with openssl, its database, and three leaves for
// good.test, revoked.test and unknown.test whose AIA points at
// 127.0.0.1:ocspPort. unknown.test is signed outside the database.
func newOpenSSLCA(t *testing.T, openssl string, ocspPort int) *opensslCA {
	c := &opensslCA{t: t, openssl: openssl, dir: t.TempDir()}
	os.Mkdir(filepath.Join(c.dir, "newcerts"), 0o700)
	c.write("index.txt", "")
	c.write("serial", "1000\n")
	c.write("ca.cnf", fmt.Sprintf(`[ ca ]
default_ca = CA_default
[ CA_default ]
dir = .
database = ./index.txt
new_certs_dir = ./newcerts
serial = ./serial
default_md = sha256
default_days = 30
policy = policy_any
unique_subject = no
copy_extensions = copy
x509_extensions = leaf_ext
[ policy_any ]
commonName = supplied
[ leaf_ext ]
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
authorityInfoAccess = OCSP;URI:http://127.0.0.1:%d
`, ocspPort))
	c.run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
		"-subj", "/CN=openssl interop CA", "-days", "30",
		"-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature")
	for _, name := range []string{"good", "revoked", "unknown"} {
		c.run("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", name+".key", "-out", name+".csr",
			"-subj", "/CN="+name+".test", "-addext", "subjectAltName=DNS:"+name+".test")
		if name == "unknown" {
			c.run("x509", "-req", "-in", name+".csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-set_serial", "0x7777", "-days", "30",
				"-copy_extensions", "copy", "-extfile", "ca.cnf", "-extensions", "leaf_ext", "-out", name+".pem")
		} else {
			c.run("ca", "-batch", "-config", "ca.cnf", "-cert", "ca.pem", "-keyfile", "ca.key", "-in", name+".csr", "-out", name+".pem", "-notext")
		}
		leaf, _ := os.ReadFile(filepath.Join(c.dir, name+".pem"))
		ca, _ := os.ReadFile(filepath.Join(c.dir, "ca.pem"))
		c.write(name+"-chain.pem", string(leaf)+string(ca))
	}
	c.run("ca", "-config", "ca.cnf", "-cert", "ca.pem", "-keyfile", "ca.key", "-revoke", "revoked.pem", "-crl_reason", "keyCompromise")
	return c
}

// startResponder runs openssl ocsp as the responder on port, its responses
// valid for an hour (-nmin 60).
func (c *opensslCA) startResponder(port int) *exec.Cmd {
	c.t.Helper()
	return c.startResponderWith(port, "-nmin", "60")
}

// startResponderWith runs openssl ocsp as the responder on port with extra
// arguments; with none, its responses carry no nextUpdate (its default).
func (c *opensslCA) startResponderWith(port int, extra ...string) *exec.Cmd {
	c.t.Helper()
	args := append([]string{"ocsp", "-index", "index.txt", "-port", fmt.Sprint(port),
		"-rsigner", "ca.pem", "-rkey", "ca.key", "-CA", "ca.pem", "-ignore_err"}, extra...)
	cmd := exec.Command(c.openssl, args...)
	// Readiness is read from its log: a probe connection that sends nothing
	// would stall openssl's single-threaded responder.
	c.startLogged(cmd, "waiting for OCSP client connections")
	return cmd
}

// startLogged starts cmd in the CA's folder, stopped when the test ends,
// and returns once it has logged a line containing marker.
func (c *opensslCA) startLogged(cmd *exec.Cmd, marker string) {
	c.t.Helper()
	cmd.Dir = c.dir
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait(); pw.Close() })
	ready := make(chan struct{})
	go func() {
		scanner := bufio.NewScanner(pr)
		for scanner.Scan() {
			if strings.Contains(scanner.Text(), marker) {
				close(ready)
				break
			}
		}
		io.Copy(io.Discard, pr)
	}()
	select {
	case <-ready:
	case <-time.After(time.Minute): // only a hang
		c.t.Fatalf("%s did not start (no %q in its log)", cmd.Path, marker)
	}
}

func (c *opensslCA) sClient(addr, name, version string) string {
	c.t.Helper()
	out, err := c.trySClient(addr, name, version)
	if err != nil {
		c.t.Fatalf("s_client %s %s: %v\n%s", name, version, err, out)
	}
	return out
}

// trySClient runs openssl s_client -status; an empty name sends no SNI
// (-noservername), as a client dialling an IP address does.
func (c *opensslCA) trySClient(addr, name, version string) (string, error) {
	c.t.Helper()
	sni := []string{"-servername", name}
	if name == "" {
		sni = []string{"-noservername"}
	}
	args := append([]string{"s_client", "-status", "-connect", addr}, sni...)
	cmd := exec.Command(c.openssl, append(args, version, "-CAfile", filepath.Join(c.dir, "ca.pem"))...)
	cmd.Stdin = strings.NewReader("")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// waitQueried polls the admin API until n certificates have been queried
// and returns their statuses.
func waitQueried(t *testing.T, admin string, n int) []map[string]any {
	t.Helper()
	deadline := time.Now().Add(time.Minute) // only a hang
	for {
		code, body := adminGet(t, "GET", admin+"/v1/certificates", "k")
		var resources []struct {
			Status map[string]any `json:"status"`
		}
		json.Unmarshal(body, &resources)
		var statuses []map[string]any
		for _, r := range resources {
			statuses = append(statuses, r.Status)
		}
		queried := 0
		for _, st := range statuses {
			if st["queries"].(float64) > 0 {
				queried++
			}
		}
		if code == 200 && queried == n {
			return statuses
		}
		if time.Now().After(deadline) {
			t.Fatalf("not all queried: %d %s", code, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func adminGet(t *testing.T, method, url, key string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	req.Header.Set("X-API-KEY", key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

func TestInteropWithOpenSSL(t *testing.T) {
	openssl := needOpenSSL(t)
	port := freePort(t)
	ca := newOpenSSLCA(t, openssl, port)
	responder := ca.startResponder(port)

	args := []string{"-addr", "127.0.0.1:0", "-admin-addr", ":0", "-admin-key", "k", "-response-timeout", "5"}
	for _, name := range []string{"good", "revoked", "unknown"} {
		args = append(args, "-cert", filepath.Join(ca.dir, name+"-chain.pem"), "-key", filepath.Join(ca.dir, name+".key"))
	}
	addr, admin, stop := startServer(t, args)
	if !strings.HasPrefix(admin, "http://127.0.0.1:") {
		t.Fatalf("admin API at %q, want loopback", admin)
	}

	// Every certificate has been queried once the statuses say so.
	statuses := waitQueried(t, admin, 3)
	byName := map[string]map[string]any{}
	for _, st := range statuses {
		byName[st["snis"].([]any)[0].(string)] = st
	}
	for name, want := range map[string]string{"good.test": "GOOD", "revoked.test": "REVOKED", "unknown.test": "UNKNOWN"} {
		if got := byName[name]["cert_status"]; got != want {
			t.Errorf("%s: cert_status %v, want %s (%v)", name, got, want, byName[name]["last_error"])
		}
	}

	for _, version := range []string{"-tls1_2", "-tls1_3"} {
		for name, want := range map[string]string{"good.test": "Cert Status: good", "revoked.test": "Cert Status: revoked"} {
			out := ca.sClient(addr, name, version)
			if !strings.Contains(out, "OCSP Response Status: successful (0x0)") || !strings.Contains(out, want) {
				t.Fatalf("s_client %s %s:\n%s", name, version, out)
			}
		}
		if out := ca.sClient(addr, "unknown.test", version); !strings.Contains(out, "OCSP response: no response sent") {
			t.Fatalf("unknown certificate stapled (%s):\n%s", version, out)
		}
		// No SNI (-noservername): the first certificate, stapled all the same.
		if out := ca.sClient(addr, "", version); !strings.Contains(out, "s:CN = good.test") || !strings.Contains(out, "Cert Status: good") {
			t.Fatalf("s_client -noservername %s got no staple:\n%s", version, out)
		}
	}

	// The responder stops: a test query fails, and the good staple is still served.
	responder.Process.Kill()
	responder.Wait()
	goodID := byName["good.test"]["id"].(string)
	if code, body := adminGet(t, "POST", admin+"/v1/ocsp/test?id="+goodID, "k"); code != 500 || !strings.Contains(string(body), "invalid_ocsp_response") {
		t.Fatalf("test with the responder down: %d %s", code, body)
	}
	for _, version := range []string{"-tls1_2", "-tls1_3"} {
		if out := ca.sClient(addr, "good.test", version); !strings.Contains(out, "Cert Status: good") {
			t.Fatalf("good staple lost with the responder down (%s):\n%s", version, out)
		}
	}
	stop()
}

// A client that sends no SNI gets the Stapler's policy too: a strict server
// refuses its revoked certificate to openssl s_client -noservername.
func TestInteropStrictRefusesRevokedWithoutSNI(t *testing.T) {
	openssl := needOpenSSL(t)
	port := freePort(t)
	ca := newOpenSSLCA(t, openssl, port)
	ca.startResponder(port)
	args := []string{"-addr", "127.0.0.1:0", "-admin-addr", ":0", "-admin-key", "k", "-response-timeout", "5", "-policy", "strict",
		"-cert", filepath.Join(ca.dir, "revoked-chain.pem"), "-key", filepath.Join(ca.dir, "revoked.key")}
	addr, admin, stop := startServer(t, args)
	if st := waitQueried(t, admin, 1); st[0]["cert_status"] != "REVOKED" {
		t.Fatalf("status %v", st[0])
	}
	for _, version := range []string{"-tls1_2", "-tls1_3"} {
		for _, name := range []string{"", "revoked.test"} {
			out, err := ca.trySClient(addr, name, version)
			if err == nil || strings.Contains(out, "s:CN = revoked.test") {
				t.Fatalf("strict served a revoked certificate to s_client (SNI %q) %s: %v\n%s", name, version, err, out)
			}
		}
	}
	stop()
}

// openssl ocsp run with its defaults sends responses without nextUpdate
// (RFC 6960 allows it). They are stapled, for DefaultNoNextUpdateLifetime
// after their thisUpdate at most, and Status shows that chosen expiry with
// next_update absent.
func TestInteropStaplesOpenSSLResponsesWithoutNextUpdate(t *testing.T) {
	openssl := needOpenSSL(t)
	port := freePort(t)
	ca := newOpenSSLCA(t, openssl, port)
	ca.startResponderWith(port) // no -nmin, no -ndays: no nextUpdate
	args := []string{"-addr", "127.0.0.1:0", "-admin-addr", ":0", "-admin-key", "k", "-response-timeout", "5"}
	for _, name := range []string{"good", "revoked"} {
		args = append(args, "-cert", filepath.Join(ca.dir, name+"-chain.pem"), "-key", filepath.Join(ca.dir, name+".key"))
	}
	addr, admin, stop := startServer(t, args)
	for _, st := range waitQueried(t, admin, 2) {
		name := st["snis"].([]any)[0].(string)
		want := map[string]string{"good.test": "GOOD", "revoked.test": "REVOKED"}[name]
		if st["cert_status"] != want || st["stapled"] != true {
			t.Fatalf("%s: %v, want %s and stapled", name, st, want)
		}
		if _, ok := st["next_update"]; ok {
			t.Fatalf("%s: next_update shown for a response that has none: %v", name, st)
		}
		thisUpdate, err1 := http.ParseTime(st["this_update"].(string))
		expires, err2 := http.ParseTime(st["staple_expires"].(string))
		if err1 != nil || err2 != nil {
			t.Fatalf("%s: dates %v %v", name, err1, err2)
		}
		if got := expires.Sub(thisUpdate); got != time.Hour {
			t.Fatalf("%s: staple expires %v after thisUpdate, want the default lifetime (1h)", name, got)
		}
	}
	for _, version := range []string{"-tls1_2", "-tls1_3"} {
		for name, want := range map[string]string{"good.test": "Cert Status: good", "revoked.test": "Cert Status: revoked"} {
			out := ca.sClient(addr, name, version)
			if !strings.Contains(out, "OCSP Response Status: successful (0x0)") || !strings.Contains(out, want) {
				t.Fatalf("s_client %s %s:\n%s", name, version, out)
			}
		}
	}
	stop()
}
