package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/staplerkit/ocsp/responder"
)

// These tests run the daemon against the real servers it keeps files for:
// Debian's nginx (nginx-light) and HAProxy 2.6, with openssl s_client
// -status as the client. Each server runs as the current user with every
// path in the test's directory.

// TestNginxStaplesTheFileAndSeesARevocationWithoutARestart: nginx staples
// the daemon's file (through the -nginx-conf include), and after the
// responder revokes the certificate and the daemon is asked to refresh, the
// -reload command makes nginx staple the revocation, with the same master
// process.
func TestNginxStaplesTheFileAndSeesARevocationWithoutARestart(t *testing.T) {
	nginx := needTool(t, "nginx", "/usr/sbin/nginx")
	openssl := needTool(t, "openssl")
	if out, err := combinedOutput(nginx, "-V"); err != nil || !strings.Contains(out, "--with-http_ssl_module") {
		t.Fatalf("nginx has no ssl module: %v\n%s", err, out)
	}
	p := newPKI(t, "nginx.test")
	dir := p.dir
	port := freePort(t)
	conf := writeNginxConf(t, p, port)

	d := startDaemon(t, "-cert", p.chain, "-nginx-conf", "-reload-delay", "50ms",
		"-reload", fmt.Sprintf("%s -s reload -p %s -c %s", nginx, dir, conf))
	waitFor(t, "the response file", func() bool { return !fileGone(p.chain + ".ocsp") })
	waitFor(t, "the nginx include", func() bool {
		b, _ := os.ReadFile(p.chain + ".ocsp.conf")
		return strings.Contains(string(b), "ssl_stapling_file")
	})

	log := &syncBuffer{}
	startProcess(t, log, nginx, "-p", dir, "-c", conf, "-g", "daemon off;")
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	waitTLS(t, addr, log)
	pidBefore, _ := os.ReadFile(filepath.Join(dir, "nginx.pid"))
	waitStatus(t, openssl, addr, "nginx.test", p.caFile, "good", log)

	p.srv.Responder.SetStatus(p.leaf.Cert.SerialNumber, responder.Revoked(time.Now().Add(-time.Minute), ocsp.KeyCompromise))
	if code, body := d.test(t, p.id()); code != 200 || !strings.Contains(body, "REVOKED") {
		t.Fatalf("POST /v1/ocsp/test: %d %s", code, body)
	}
	waitStatus(t, openssl, addr, "nginx.test", p.caFile, "revoked", &syncBuffer{})
	pidAfter, _ := os.ReadFile(filepath.Join(dir, "nginx.pid"))
	if len(pidBefore) == 0 || string(pidBefore) != string(pidAfter) {
		t.Fatalf("nginx master pid %q, then %q: restarted, not reloaded", pidBefore, pidAfter)
	}
}

// TestHAProxyStaplesTheFileAndSeesARevocationWithoutARestart: HAProxy
// loads the daemon's <crt>.ocsp at start, and takes the revocation through
// its admin socket ("set ssl ocsp-response"), with no reload at all.
func TestHAProxyStaplesTheFileAndSeesARevocationWithoutARestart(t *testing.T) {
	haproxy := needTool(t, "haproxy", "/usr/sbin/haproxy")
	openssl := needTool(t, "openssl")
	p := newPKI(t, "haproxy.test")
	dir := p.dir
	// HAProxy's crt: the chain and the key in one file.
	crt := p.write(t, "site.pem", append(append([]byte(nil), p.leaf.CertPEM...), p.leaf.KeyPEM...))
	port := freePort(t)
	sock := filepath.Join(dir, "admin.sock")
	cfg := p.write(t, "haproxy.cfg", fmt.Appendf(nil, `global
  stats socket %[1]s level admin
defaults
  mode http
  timeout connect 5s
  timeout client 10s
  timeout server 10s
frontend fe
  bind 127.0.0.1:%[2]d ssl crt %[3]s
  http-request return status 200 content-type text/plain string ok
`, sock, port, crt))

	d := startDaemon(t, "-cert", crt, "-haproxy-socket", sock)
	waitFor(t, "the response file", func() bool { return !fileGone(crt + ".ocsp") })

	log := &syncBuffer{}
	exited := startProcess(t, log, haproxy, "-f", cfg, "-db")
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	waitTLS(t, addr, log)
	waitStatus(t, openssl, addr, "haproxy.test", p.caFile, "good", log)

	p.srv.Responder.SetStatus(p.leaf.Cert.SerialNumber, responder.Revoked(time.Now().Add(-time.Minute), ocsp.KeyCompromise))
	if code, body := d.test(t, p.id()); code != 200 || !strings.Contains(body, "REVOKED") {
		t.Fatalf("POST /v1/ocsp/test: %d %s", code, body)
	}
	waitStatus(t, openssl, addr, "haproxy.test", p.caFile, "revoked", log)
	select {
	case <-exited:
		t.Fatal("haproxy exited")
	default:
	}
	if !strings.Contains(d.logs.String(), "haproxy: OCSP response applied") {
		t.Fatalf("the revocation did not come through the socket:\n%s", d.logs)
	}

	// HAProxy's own refusal: a valid response for a certificate it does
	// not serve is an error, not a success.
	other, err := p.srv.Issue(responder.LeafOptions{})
	if err != nil {
		t.Fatal(err)
	}
	otherDER, err := p.srv.Responder.Respond(other.Cert)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), hang)
	defer cancel()
	if err := setOCSPResponse(ctx, sock, otherDER); !errors.Is(err, errHAProxy) || !strings.Contains(err.Error(), "Certificate ID does not match") {
		t.Fatalf("haproxy given another certificate's response: %v", err)
	}
	if err := setOCSPResponse(ctx, sock, []byte("not DER")); !errors.Is(err, errHAProxy) {
		t.Fatalf("haproxy given garbage: %v", err)
	}
	waitStatus(t, openssl, addr, "haproxy.test", p.caFile, "revoked", log)
}

// writeNginxConf writes an nginx.conf into p's folder that serves p's
// certificate on port, stapling through the include ocspfiles keeps, with
// every path (pid, logs, temporary files) in that folder; it returns its
// path.
func writeNginxConf(t *testing.T, p *pki, port int) string {
	t.Helper()
	dir := p.dir
	user := ""
	if os.Geteuid() == 0 {
		user = "user root;" // workers would otherwise run as nobody
	}
	for _, sub := range []string{"client_body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		os.Mkdir(filepath.Join(dir, sub), 0o700)
	}
	p.write(t, "nginx.conf", fmt.Appendf(nil, `%[1]s
worker_processes 1;
error_log %[2]s/error.log info;
pid %[2]s/nginx.pid;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path %[2]s/client_body;
  proxy_temp_path %[2]s/proxy;
  fastcgi_temp_path %[2]s/fastcgi;
  uwsgi_temp_path %[2]s/uwsgi;
  scgi_temp_path %[2]s/scgi;
  server {
    listen 127.0.0.1:%[3]d ssl;
    server_name nginx.test;
    ssl_certificate %[4]s;
    ssl_certificate_key %[5]s;
    include %[4]s.ocsp.conf;
    return 200 "ok\n";
  }
}
`, user, dir, port, p.chain, p.key))
	return filepath.Join(dir, "nginx.conf")
}
