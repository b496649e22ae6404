package main

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/staplerkit/ocsp/responder"
	"github.com/staplerkit/ocsp/stapler"
)

// adminDo sends an admin request with a JSON body.
func adminDo(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("X-API-KEY", "k")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// With -state, the admin API's changes survive a restart: the cluster
// object and a certificate's ocsp_stapling object are applied again at
// start. Without it they last until the process exits. A state file that
// does not parse stops the start, with a reason.
func TestAdminChangesSurviveARestartWithAStateFile(t *testing.T) {
	ca, err := responder.NewCA(responder.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ocspServer := responder.NewServer(responder.New(ca))
	t.Cleanup(ocspServer.Close)
	leaf, _ := ocspServer.Issue(responder.LeafOptions{DNSNames: []string{"localhost"}})
	dir := t.TempDir()
	certFile, keyFile, state := filepath.Join(dir, "chain.pem"), filepath.Join(dir, "key.pem"), filepath.Join(dir, "state.json")
	os.WriteFile(certFile, leaf.CertPEM, 0o600)
	os.WriteFile(keyFile, leaf.KeyPEM, 0o600)
	id := stapler.CertificateID(leaf.Cert.Raw)
	args := func(extra ...string) []string {
		return append([]string{"-addr", "127.0.0.1:0", "-admin-addr", ":0", "-admin-key", "k", "-cert", certFile, "-key", keyFile}, extra...)
	}

	_, admin, stop := startServer(t, args("-state", state))
	if code, body := adminDo(t, "PUT", admin+"/v1/ocsp", `{"query_frequency": 1800}`); code != 200 {
		t.Fatalf("PUT: %d %s", code, body)
	}
	if code, body := adminDo(t, "PATCH", admin+"/v1/certificates/"+id, `{"ocsp_stapling": {"cache_ttl": 600}}`); code != 200 {
		t.Fatalf("PATCH: %d %s", code, body)
	}
	stop()

	_, admin, stop = startServer(t, args("-state", state))
	if _, body := adminDo(t, "GET", admin+"/v1/ocsp", ""); !strings.Contains(body, `"query_frequency": 1800`) {
		t.Fatalf("the cluster object after a restart with -state: %s", body)
	}
	if _, body := adminDo(t, "GET", admin+"/v1/certificates/"+id, ""); !strings.Contains(body, `"cache_ttl": 600`) {
		t.Fatalf("the certificate's object after a restart with -state: %s", body)
	}
	stop()

	_, admin, stop = startServer(t, args())
	if _, body := adminDo(t, "GET", admin+"/v1/ocsp", ""); !strings.Contains(body, `"query_frequency": 3600`) {
		t.Fatalf("without -state, the defaults: %s", body)
	}
	stop()

	os.WriteFile(state, []byte("{not json"), 0o600)
	if err := run(context.Background(), args("-state", state), io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "-state") {
		t.Fatalf("a state file that does not parse: %v", err)
	}
}
