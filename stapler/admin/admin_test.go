package admin

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/staplerkit/ocsp/config"
	"github.com/staplerkit/ocsp/responder"
	"github.com/staplerkit/ocsp/stapler"
)

type adminClient struct {
	t   *testing.T
	url string
	key string
}

func (c adminClient) do(method, path, body string) (int, http.Header, map[string]any, string) {
	c.t.Helper()
	req, _ := http.NewRequest(method, c.url+path, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.key != "" {
		req.Header.Set("X-API-KEY", c.key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var obj map[string]any
	json.Unmarshal(raw, &obj)
	return resp.StatusCode, resp.Header, obj, string(raw)
}

func newAdmin(t *testing.T, e *env) adminClient {
	h, err := NewHandler(e.s, Options{APIKey: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return adminClient{t: t, url: srv.URL, key: "s3cret"}
}

func TestAdminOCSPConfig(t *testing.T) {
	e := newEnv(t, config.OCSP{})
	e.wrap(e.leaf.Certificate)
	c := newAdmin(t, e)

	code, hdr, obj, _ := c.do("GET", "/v1/ocsp", "")
	if code != 200 || hdr.Get("Content-Type") != "application/json" || obj["ocsp_functionality"] != false || obj["responder_url"] != e.srv.URL || obj["query_frequency"] != 3600.0 {
		t.Fatalf("GET: %d %v", code, obj)
	}
	code, _, obj, _ = c.do("PUT", "/v1/ocsp", `{"ocsp_functionality": true, "query_frequency": 3800, "response_timeout": 2, "recovery_frequency": 80, "recovery_max_tries": 20}`)
	if code != 200 || obj["ocsp_functionality"] != true || obj["query_frequency"] != 3800.0 || obj["recovery_max_tries"] != 20.0 {
		t.Fatalf("PUT: %d %v", code, obj)
	}
	before := e.s.Get()
	for _, tc := range []struct{ body, code string }{
		{`{"responder_url": "http://elsewhere"}`, "invalid_schema"},
		{`{"query_frequency": 10}`, "invalid_schema"},
		{`{"query_frequency": 100, "nonsense": 1}`, "invalid_schema"},
		{`{"query_frequency": 100`, "invalid_schema"},
	} {
		code, _, obj, raw := c.do("PUT", "/v1/ocsp", tc.body)
		if code != 400 || obj["error_code"] != tc.code || obj["message"] == "" {
			t.Fatalf("PUT %s: %d %s", tc.body, code, raw)
		}
		if e.s.Get() != before {
			t.Fatalf("rejected PUT %s changed the config", tc.body)
		}
	}
	code, hdr, _, _ = c.do("DELETE", "/v1/ocsp", "")
	if code != 405 || hdr.Get("Allow") != "GET, HEAD, PUT" {
		t.Fatalf("DELETE: %d %q", code, hdr.Get("Allow"))
	}
	code, _, _, _ = c.do("PUT", "/v1/ocsp", strings.Repeat(" ", MaxBodyBytes+1)+"{}")
	if code != 413 {
		t.Fatalf("huge body: %d", code)
	}
	req, _ := http.NewRequest("PUT", c.url+"/v1/ocsp", strings.NewReader("ocsp_functionality=false"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-API-KEY", c.key)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 415 {
		t.Fatalf("form body: %v %v", resp.StatusCode, err)
	}
}

func TestAdminNoResponderURL(t *testing.T) {
	e := newEnv(t, config.OCSP{})
	noAIA, _ := e.ca.Issue(responder.LeafOptions{})
	e.wrap(noAIA.Certificate)
	c := newAdmin(t, e)
	code, _, obj, _ := c.do("PUT", "/v1/ocsp", `{"ocsp_functionality": true}`)
	if code != 400 || obj["error_code"] != "no_responder_url" {
		t.Fatalf("%d %v", code, obj)
	}
	code, _, obj, _ = c.do("POST", "/v1/ocsp/test", "")
	if code != 500 || obj["error_code"] != "no_responder_url" {
		t.Fatalf("test: %d %v", code, obj)
	}
}

func TestAdminStatusAndTest(t *testing.T) {
	e := newEnv(t, on)
	e.wrap(e.leaf.Certificate)
	e.waitStapled(e.leaf)
	c := newAdmin(t, e)
	code, _, obj, _ := c.do("GET", "/v1/ocsp/status", "")
	if code != 200 || obj["cert_status"] != "GOOD" || obj["responder_url"] != e.srv.URL || obj["this_update"] == nil || obj["revocation_time"] != nil {
		t.Fatalf("status: %d %v", code, obj)
	}
	e.r.SetFault(responder.Fault{Kind: responder.FaultGarbageBody})
	code, _, obj, _ = c.do("POST", "/v1/ocsp/test", "")
	if code != 500 || obj["error_code"] != "invalid_ocsp_response" {
		t.Fatalf("test with a broken responder: %d %v", code, obj)
	}
	e.r.SetFault(responder.Fault{})
	e.r.SetStatus(e.leaf.Cert.SerialNumber, responder.Revoked(time.Now(), 1))
	code, _, obj, _ = c.do("POST", "/v1/ocsp/test", "")
	if code != 200 || obj["cert_status"] != "REVOKED" || obj["revocation_time"] == nil {
		t.Fatalf("test: %d %v", code, obj)
	}
	code, _, obj, _ = c.do("GET", "/v1/ocsp/status?id="+stapler.CertificateID(e.leaf.Cert.Raw), "")
	if code != 200 || obj["cert_status"] != "REVOKED" {
		t.Fatalf("status after test: %d %v", code, obj)
	}
	code, _, obj, _ = c.do("GET", "/v1/ocsp/status?id=nope", "")
	if code != 404 || obj["error_code"] != "not_found" {
		t.Fatalf("unknown id: %d %v", code, obj)
	}
	if code, hdr, _, _ := c.do("GET", "/v1/ocsp/test", ""); code != 405 || hdr.Get("Allow") != "POST" {
		t.Fatalf("GET test: %d", code)
	}
	// Several certificates and no id: one shape (the status object)
	// always, so the incomplete request is a 400 saying what to send.
	other, _ := e.srv.Issue(responder.LeafOptions{})
	e.wrap(other.Certificate)
	for _, method := range []string{"GET /v1/ocsp/status", "POST /v1/ocsp/test"} {
		m, path, _ := strings.Cut(method, " ")
		code, _, obj, raw := c.do(m, path, "")
		if code != 400 || obj["error_code"] != "invalid_schema" || !strings.Contains(raw, "?id=") || !strings.Contains(raw, "/v1/certificates") {
			t.Fatalf("%s with several certificates and no id: %d %s", method, code, raw)
		}
	}
	if code, _, obj, raw := c.do("GET", "/v1/ocsp/status?id="+stapler.CertificateID(other.Cert.Raw), ""); code != 200 || obj["id"] == nil {
		t.Fatalf("status by id: %d %s", code, raw)
	}
}

func TestAdminCertificates(t *testing.T) {
	e := newEnv(t, on)
	e.wrap(e.leaf.Certificate)
	e.waitStapled(e.leaf)
	c := newAdmin(t, e)
	id := stapler.CertificateID(e.leaf.Cert.Raw)
	_, _, _, raw := c.do("GET", "/v1/certificates", "")
	var list []certificateResource
	if err := json.Unmarshal([]byte(raw), &list); err != nil || len(list) != 1 || list[0].ID != id || list[0].SNIs[0] != "localhost" || !list[0].OCSPStapling.Enabled || !list[0].Status.Stapled {
		t.Fatalf("list: %s", raw)
	}
	steps := []struct {
		method, body string
		code         int
		want         config.Stapling
	}{
		{"PUT", `{"ocsp_stapling": {"enabled": true}}`, 200, config.Stapling{Enabled: true, CacheTTL: 3600}},
		{"PATCH", `{"ocsp_stapling": {"cache_ttl": 120}}`, 200, config.Stapling{Enabled: true, CacheTTL: 120}},
		{"PATCH", `{"ocsp_stapling": {"cache_ttl": 30}}`, 400, config.Stapling{Enabled: true, CacheTTL: 120}},
		{"PATCH", `{"ocsp_stapling": {"enabled": "yes"}}`, 400, config.Stapling{Enabled: true, CacheTTL: 120}},
		{"PATCH", `{"cert": "-----BEGIN"}`, 400, config.Stapling{Enabled: true, CacheTTL: 120}},
		{"PATCH", `{"ocsp_stapling": {"enabled": false}}`, 200, config.Stapling{Enabled: false, CacheTTL: 120}},
		{"PATCH", `{"ocsp_stapling": null}`, 200, config.Stapling{Enabled: true, CacheTTL: stapler.DefaultDiscoveredCacheTTL}}, // the Stapler's defaults
		{"PUT", `{"ocsp_stapling": {"skip_verify": true, "enabled": true}}`, 200, config.Stapling{Enabled: true, SkipVerify: true, CacheTTL: 3600}},
	}
	for _, step := range steps {
		code, _, obj, raw := c.do(step.method, "/v1/certificates/"+id, step.body)
		if code != step.code {
			t.Fatalf("%s %s: %d %s", step.method, step.body, code, raw)
		}
		if code == 400 && obj["error_code"] != "invalid_schema" {
			t.Fatalf("%s %s: %s", step.method, step.body, raw)
		}
		if got, _ := e.s.Stapling(id); got != step.want {
			t.Fatalf("%s %s: settings %+v, want %+v", step.method, step.body, got, step.want)
		}
	}
	if code, _, _, _ := c.do("GET", "/v1/certificates/"+strings.Repeat("0", 64), ""); code != 404 {
		t.Fatalf("unknown id: %d", code)
	}
	if code, hdr, _, _ := c.do("POST", "/v1/certificates/"+id, ""); code != 405 || hdr.Get("Allow") != "GET, HEAD, PUT, PATCH, DELETE" {
		t.Fatalf("POST: %d", code)
	}
	if code, _, _, _ := c.do("GET", "/v1/nothing", ""); code != 404 {
		t.Fatalf("unknown path: %d", code)
	}
	if code, _, _, raw := c.do("DELETE", "/v1/certificates/"+id, ""); code != 204 {
		t.Fatalf("DELETE: %d %s", code, raw)
	}
	if code, _, _, _ := c.do("GET", "/v1/certificates/"+id, ""); code != 404 {
		t.Fatalf("GET after DELETE: %d", code)
	}
}

func TestAdminAuthentication(t *testing.T) {
	e := newEnv(t, on)
	if _, err := NewHandler(e.s, Options{}); err != ErrNoAuth {
		t.Fatalf("handler without auth: %v", err)
	}
	c := newAdmin(t, e)
	for _, key := range []string{"", "wrong", "s3cre", "s3cret2"} {
		bad := c
		bad.key = key
		code, _, obj, raw := bad.do("GET", "/v1/ocsp", "")
		if code != 401 || obj["error_code"] != "unauthorized" || strings.Contains(raw, "s3cret") {
			t.Fatalf("key %q: %d %s", key, code, raw)
		}
	}
	// The application's own middleware.
	h, err := NewHandler(e.s, Options{Authorize: func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") != "Bearer ok" {
				http.Error(w, "no", http.StatusForbidden)
				return
			}
			next.ServeHTTP(w, r)
		})
	}})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/v1/ocsp", nil))
	if rec.Code != 403 {
		t.Fatalf("middleware not applied: %d", rec.Code)
	}
	if _, err := NewHandler(e.s, Options{InsecureWithoutAuthentication: true}); err != nil {
		t.Fatal(err)
	}
}

// TestStatusOfCodes: every error code is answered with the status the
// documented API gives it (and the usual one for the admin API's own).
func TestStatusOfCodes(t *testing.T) {
	for code, want := range map[string]int{
		config.CodeInvalidSchema:           400,
		config.CodeNoResponderURL:          400, // 500 from POST /v1/ocsp/test: TestAdminNoResponderURL
		config.CodeUnsupportedByCapability: 406,
		config.CodeInvalidOCSPResponse:     500,
		config.CodeTaskQueuedTooLong:       500,
		config.CodeUnauthorized:            401,
		config.CodeNotFound:                404,
		config.CodeMethodNotAllowed:        405,
		config.CodeUnsupportedMediaType:    415,
		config.CodePayloadTooLarge:         413,
		config.CodeInternalError:           500,
	} {
		if got := statusOf(code); got != want {
			t.Errorf("%s: %d, want %d", code, got, want)
		}
	}
}
