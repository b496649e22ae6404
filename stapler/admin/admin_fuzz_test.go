package admin

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/staplerkit/ocsp/config"
	"github.com/staplerkit/ocsp/responder"
	"github.com/staplerkit/ocsp/stapler"
)

// FuzzAdminHandler sends arbitrary requests to the admin API as an
// application serves it (OCSP on, a live responder, an API key and an
// authorization middleware around it): it never panics, a request without
// the key is refused, and a request it rejects changes nothing: neither the
// configuration, nor the certificate's settings, nor which certificates
// are managed.
//
// The high bit of method leaves the API key out; the rest picks the method.
func FuzzAdminHandler(f *testing.F) {
	ca, err := responder.NewCA(responder.CAOptions{})
	if err != nil {
		f.Fatal(err)
	}
	srv := responder.NewServer(responder.New(ca))
	f.Cleanup(srv.Close)
	leaf, err := srv.Issue(responder.LeafOptions{})
	if err != nil {
		f.Fatal(err)
	}
	s, err := stapler.New(config.OCSP{OCSPFunctionality: true}, stapler.WithLogger(quietLogger()))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.Close() })
	id, err := s.Add(&leaf.Certificate)
	if err != nil {
		f.Fatal(err)
	}
	const key = "fuzz-key"
	var authorized int
	h, err := NewHandler(s, Options{APIKey: key, Authorize: func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			authorized++
			next.ServeHTTP(w, r)
		})
	}})
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
		{1, "/v1/ocsp", `{"ocsp_functionality": false}`},
		{0, "/v1/ocsp/status?id=" + id, ``},
		{2, "/v1/ocsp/test", ``},
		{3, "/v1/certificates/" + id, `{"ocsp_stapling": {"cache_ttl": 61}}`},
		{3, "/v1/certificates/" + id, `{"ocsp_stapling": {"cache_ttl": 59}}`},
		{1, "/v1/certificates/" + id, `{"ocsp_stapling": null}`},
		{4, "/v1/certificates/" + id, ``},
		{4 | 0x80, "/v1/certificates/" + id, ``},
		{1 | 0x80, "/v1/ocsp", `{"ocsp_functionality": false}`},
		{4, "/v1/ocsp", `{}`},
		{0, "/v1/certificates/../../etc", ``},
	} {
		f.Add(seed.method, seed.path, []byte(seed.body))
	}
	managedIDs := func() []string {
		var ids []string
		for _, st := range s.Status() {
			ids = append(ids, st.ID)
		}
		return ids
	}
	methods := []string{"GET", "PUT", "POST", "PATCH", "DELETE", "HEAD", "OPTIONS"}
	f.Fuzz(func(t *testing.T, method uint8, path string, body []byte) {
		req, err := http.NewRequest(methods[int(method&0x7f)%len(methods)], "http://admin.test/", bytes.NewReader(body))
		if err != nil {
			return
		}
		req.URL.Path = path
		req.Header.Set("Content-Type", "application/json")
		withKey := method&0x80 == 0
		if withKey {
			req.Header.Set("X-API-KEY", key)
		}
		beforeCfg := s.Get()
		beforeStapling, err := s.Stapling(id)
		if err != nil {
			t.Fatalf("the certificate is not managed before the request: %v", err)
		}
		beforeIDs := managedIDs()
		beforeAuthorized := authorized
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if !withKey && (rec.Code != http.StatusUnauthorized || authorized != beforeAuthorized) {
			t.Fatalf("%s %q without the API key answered %d", req.Method, path, rec.Code)
		}
		if withKey && authorized != beforeAuthorized+1 {
			t.Fatalf("%s %q bypassed the authorization middleware", req.Method, path)
		}
		if rec.Code/100 == 2 {
			// Accepted: put things back as they were, so that the next
			// input is checked against a managed certificate with OCSP on.
			if _, err := s.Stapling(id); err != nil {
				if _, err := s.Add(&leaf.Certificate); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.SetStapling(id, beforeStapling); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Update(config.OCSPUpdate{OCSPFunctionality: &beforeCfg.OCSPFunctionality, QueryFrequency: &beforeCfg.QueryFrequency, ResponseTimeout: &beforeCfg.ResponseTimeout, RecoveryFrequency: &beforeCfg.RecoveryFrequency, RecoveryMaxTries: &beforeCfg.RecoveryMaxTries}); err != nil {
				t.Fatal(err)
			}
			return
		}
		if s.Get() != beforeCfg {
			t.Fatalf("a rejected %s %q (%d) changed the configuration", req.Method, path, rec.Code)
		}
		if after, err := s.Stapling(id); err != nil || after != beforeStapling {
			t.Fatalf("a rejected %s %q (%d) changed the certificate's settings (%v)", req.Method, path, rec.Code, err)
		}
		if after := managedIDs(); !slices.Equal(after, beforeIDs) {
			t.Fatalf("a rejected %s %q (%d) changed the managed certificates: %v -> %v", req.Method, path, rec.Code, beforeIDs, after)
		}
	})
}
