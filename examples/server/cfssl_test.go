package main

import (
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"
)

// cfssl ocspserve (Cloudflare's RFC 5019 responder, as Debian ships it in
// golang-cfssl 1.2.0) serves responses pre-signed with cfssl ocspsign. Its
// GET handler unescapes the request path twice, so a + of the base64
// request becomes a space and it answers 400: the Stapler must ask it
// again by POST.

func needCFSSL(t *testing.T) string { return needTool(t, "cfssl", "golang-cfssl") }

// getRequestHasPlus reports whether the base64 of the GET request the
// Stapler sends about the leaf in chainFile contains a +: the request
// cfssl's GET handler mangles.
func getRequestHasPlus(t *testing.T, chainFile string) bool {
	t.Helper()
	data, err := os.ReadFile(chainFile)
	if err != nil {
		t.Fatal(err)
	}
	var certs []*x509.Certificate
	for block, rest := pem.Decode(data); block != nil; block, rest = pem.Decode(rest) {
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		certs = append(certs, c)
	}
	req, err := ocsp.CreateRequest(certs[0], certs[1], &ocsp.RequestOptions{Hash: crypto.SHA1})
	if err != nil {
		t.Fatal(err)
	}
	return strings.Contains(base64.StdEncoding.EncodeToString(req), "+")
}

// reissueUntilPlus signs name's request again, with new serials, until the
// Stapler's GET request about it contains a + (three requests in four do):
// the test then always meets cfssl's refusal. Serials start at first
// (cfssl keys its responses by serial: two certificates need two ranges).
func (c *opensslCA) reissueUntilPlus(name string, first int) {
	c.t.Helper()
	for serial := first; ; serial++ {
		if getRequestHasPlus(c.t, filepath.Join(c.dir, name+"-chain.pem")) {
			return
		}
		c.run("x509", "-req", "-in", name+".csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-set_serial", fmt.Sprint(serial), "-days", "30",
			"-copy_extensions", "copy", "-extfile", "ca.cnf", "-extensions", "leaf_ext", "-out", name+".pem")
		leaf, _ := os.ReadFile(filepath.Join(c.dir, name+".pem"))
		ca, _ := os.ReadFile(filepath.Join(c.dir, "ca.pem"))
		c.write(name+"-chain.pem", string(leaf)+string(ca))
	}
}

// startCFSSL signs a response for each certificate with cfssl ocspsign (a
// status per name) and serves them with cfssl ocspserve on port.
func (c *opensslCA) startCFSSL(cfssl string, port int, statuses map[string][]string) {
	c.t.Helper()
	var responses strings.Builder
	for name, status := range statuses {
		args := append([]string{"ocspsign", "-ca", "ca.pem", "-responder", "ca.pem", "-responder-key", "ca.key", "-cert", name + ".pem"}, status...)
		cmd := exec.Command(cfssl, args...)
		cmd.Dir = c.dir
		out, err := cmd.Output()
		if err != nil {
			c.t.Fatalf("cfssl ocspsign %s: %v", name, err)
		}
		var signed struct {
			OCSPResponse string `json:"ocspResponse"`
		}
		if err := json.Unmarshal(out, &signed); err != nil || signed.OCSPResponse == "" {
			c.t.Fatalf("cfssl ocspsign %s: %v: %s", name, err, out)
		}
		responses.WriteString(signed.OCSPResponse + "\n")
	}
	c.write("responses", responses.String())
	cmd := exec.Command(cfssl, "ocspserve", "-address", "127.0.0.1", "-port", fmt.Sprint(port), "-responses", "responses")
	c.startLogged(cmd, "Now listening")
	// It says so just before it listens: wait until it does.
	deadline := time.Now().Add(time.Minute) // only a hang
	for {
		conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			conn.Close()
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("cfssl ocspserve does not listen: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestInteropStaplesInFrontOfCFSSLResponder(t *testing.T) {
	openssl := needOpenSSL(t)
	cfssl := needCFSSL(t)
	port := freePort(t)
	ca := newOpenSSLCA(t, openssl, port)
	ca.reissueUntilPlus("good", 0x2000)
	ca.reissueUntilPlus("revoked", 0x8000)
	ca.startCFSSL(cfssl, port, map[string][]string{
		"good":    {"-status", "good"},
		"revoked": {"-status", "revoked", "-reason", "1"},
	})
	metricsPort := freePort(t)
	args := []string{"-addr", "127.0.0.1:0", "-admin-addr", ":0", "-admin-key", "k", "-response-timeout", "5",
		"-metrics-addr", fmt.Sprintf("127.0.0.1:%d", metricsPort)}
	for _, name := range []string{"good", "revoked"} {
		args = append(args, "-cert", filepath.Join(ca.dir, name+"-chain.pem"), "-key", filepath.Join(ca.dir, name+".key"))
	}
	addr, admin, stop := startServer(t, args)
	for _, st := range waitQueried(t, admin, 2) {
		name := st["snis"].([]any)[0].(string)
		want := map[string]string{"good.test": "GOOD", "revoked.test": "REVOKED"}[name]
		if st["cert_status"] != want || st["stapled"] != true {
			t.Fatalf("%s in front of cfssl: %v, want %s and stapled", name, st, want)
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
	// The refusals were counted: the first request fell back to POST, and
	// the second too when both were in flight at once; none after that
	// (the responder is asked by POST alone once it refused a GET).
	code, body := adminGet(t, "GET", fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort), "")
	if code != 200 || !strings.Contains(string(body), "staplerkit_ocsp_get_fallbacks_total 1\n") && !strings.Contains(string(body), "staplerkit_ocsp_get_fallbacks_total 2\n") {
		t.Fatalf("metrics (%d) do not count one GET fallback per certificate at most:\n%s", code, body)
	}
	stop()
}
