package stapler

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/staplerkit/ocsp/config"
	"github.com/staplerkit/ocsp/responder"
)

// FuzzAdminHandler sends arbitrary requests to the admin API: it never
// panics, and a request it rejects changes nothing.
func FuzzAdminHandler(f *testing.F) {
	ca, err := responder.NewCA(responder.CAOptions{})
	if err != nil {
		f.Fatal(err)
	}
	leaf, err := ca.Issue(responder.LeafOptions{OCSPServer: []string{"http://127.0.0.1:1/"}})
	if err != nil {
		f.Fatal(err)
	}
	s, err := New(config.OCSP{}, WithLogger(quietLogger()))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.Close() })
	id, _ := s.Add(&leaf.Certificate)
	h, err := s.Handler(InsecureWithoutAuthentication())
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range []struct {
		method uint8
		path   string
		body   string
	}{
		{1, "/v1/ocsp", `{"query_frequency": 120}`},
		{1, "/v1/ocsp", `{"responder_url": "x"}`},
		{0, "/v1/ocsp/status?id=" + id, ``},
		{2, "/v1/ocsp/test", ``},
		{3, "/v1/certificates/" + id, `{"ocsp_stapling": {"cache_ttl": 61}}`},
		{1, "/v1/certificates/" + id, `{"ocsp_stapling": null}`},
		{4, "/v1/ocsp", `{}`},
		{0, "/v1/certificates/../../etc", ``},
	} {
		f.Add(seed.method, seed.path, []byte(seed.body))
	}
	methods := []string{"GET", "PUT", "POST", "PATCH", "DELETE", "HEAD", "OPTIONS"}
	f.Fuzz(func(t *testing.T, method uint8, path string, body []byte) {
		if method == 2 {
			return // POST /v1/ocsp/test would query the (absent) responder: covered elsewhere
		}
		req, err := http.NewRequest(methods[int(method)%len(methods)], "http://admin.test/", bytes.NewReader(body))
		if err != nil {
			return
		}
		req.URL.Path = path
		req.Header.Set("Content-Type", "application/json")
		beforeCfg := s.Get()
		beforeStapling, _ := s.Stapling(id)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code/100 == 2 {
			return
		}
		if s.Get() != beforeCfg {
			t.Fatalf("a rejected %s %q (%d) changed the configuration", req.Method, path, rec.Code)
		}
		if after, _ := s.Stapling(id); after != beforeStapling {
			t.Fatalf("a rejected %s %q (%d) changed the certificate's settings", req.Method, path, rec.Code)
		}
	})
}
