package responder

import (
	"bytes"
	"context"
	"encoding/base64"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"
)

// needOpenSSL returns the openssl binary, skipping the test outside CI when
// it is absent and failing it in CI, where .ci/run installs it.
func needOpenSSL(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("openssl")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("openssl is required in CI: .ci/run installs it")
		}
		t.Skip("openssl not installed; interoperability not tested")
	}
	return path
}

func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestOpenSSLVerifiesResponses(t *testing.T) {
	openssl := needOpenSSL(t)
	f := newFixture(t)
	dir := t.TempDir()
	caPEM := writeFile(t, dir, "ca.pem", f.ca.CertPEM)
	revoked, _ := f.srv.Issue(LeafOptions{KeyType: RSA})
	f.srv.Responder.SetStatus(revoked.Cert.SerialNumber, Revoked(time.Now().Add(-time.Hour), ocsp.KeyCompromise))
	unknown, _ := f.ca.Issue(LeafOptions{})
	delegate, err := f.ca.NewDelegate(DelegateOptions{KeyType: RSA})
	if err != nil {
		t.Fatal(err)
	}
	for _, signer := range []*Signer{nil, delegate} {
		f.srv.Responder.UseDelegate(signer)
		for _, tc := range []struct {
			name string
			leaf *Leaf
			want string
		}{{"good", f.leaf, ": good"}, {"revoked", revoked, ": revoked"}, {"unknown", unknown, ": unknown"}} {
			leafPEM := writeFile(t, dir, tc.name+".pem", tc.leaf.CertPEM[:bytes.Index(tc.leaf.CertPEM, []byte("-----END CERTIFICATE-----"))+len("-----END CERTIFICATE-----\n")])

			// POST: openssl's own client.
			out, err := exec.Command(openssl, "ocsp", "-issuer", caPEM, "-cert", leafPEM, "-url", f.srv.URL, "-CAfile", caPEM).CombinedOutput()
			if err != nil {
				t.Fatalf("openssl ocsp (%s): %v\n%s", tc.name, err, out)
			}
			if !strings.Contains(string(out), "Response verify OK") || !strings.Contains(string(out), tc.want) {
				t.Fatalf("openssl ocsp (%s) POST:\n%s", tc.name, out)
			}

			// GET: openssl 3.0 has no GET client, so it writes the request,
			// we send it as RFC 5019 GET, and openssl verifies the answer.
			reqPath := filepath.Join(dir, tc.name+".req")
			if out, err := exec.Command(openssl, "ocsp", "-issuer", caPEM, "-cert", leafPEM, "-no_nonce", "-reqout", reqPath).CombinedOutput(); err != nil {
				t.Fatalf("openssl ocsp -reqout: %v\n%s", err, out)
			}
			der, _ := os.ReadFile(reqPath)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // only a hang
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, f.srv.URL+"/"+url.PathEscape(base64.StdEncoding.EncodeToString(der)), nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				cancel()
				t.Fatal(err)
			}
			var body bytes.Buffer
			body.ReadFrom(resp.Body)
			resp.Body.Close()
			cancel()
			respPath := writeFile(t, dir, tc.name+".resp", body.Bytes())
			out, err = exec.Command(openssl, "ocsp", "-respin", respPath, "-issuer", caPEM, "-cert", leafPEM, "-CAfile", caPEM).CombinedOutput()
			if err != nil {
				t.Fatalf("openssl ocsp -respin (%s): %v\n%s", tc.name, err, out)
			}
			if !strings.Contains(string(out), "Response verify OK") || !strings.Contains(string(out), tc.want) {
				t.Fatalf("openssl ocsp (%s) GET:\n%s", tc.name, out)
			}
		}
	}
	reqs := f.srv.Responder.Requests()
	var gets, posts int
	for _, r := range reqs {
		if r.Method == "GET" {
			gets++
		} else {
			posts++
		}
	}
	if gets != 6 || posts != 6 {
		t.Fatalf("%d GET, %d POST", gets, posts)
	}
}
