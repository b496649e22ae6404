package admin

import (
	"net/http"
	"strings"
	"testing"
)

// Held up: a body of exactly MaxBodyBytes is read (and judged on its
// JSON), one byte more is 413 payload_too_large; the API key is taken
// from the X-API-KEY header only (not the query, not Authorization), and an
// empty or whitespace header never matches.
func TestBodyLimitAndKeyPlacement(t *testing.T) {
	e := newEnv(t, on)
	e.wrap(e.leaf.Certificate)
	c := newAdmin(t, e)
	body := `{"query_frequency": 3800}`
	exact := body + strings.Repeat(" ", MaxBodyBytes-len(body))
	if code, _, obj, raw := c.do("PUT", "/v1/ocsp", exact); code != 200 || obj["query_frequency"] != 3800.0 {
		t.Fatalf("a body of exactly MaxBodyBytes: %d %s", code, raw)
	}
	if code, _, obj, raw := c.do("PUT", "/v1/ocsp", exact+" "); code != 413 || obj["error_code"] != "payload_too_large" {
		t.Fatalf("a body of MaxBodyBytes+1: %d %s", code, raw)
	}
	for _, tc := range []struct {
		path string
		hdr  map[string]string
	}{
		{"/v1/ocsp?X-API-KEY=s3cret", nil},
		{"/v1/ocsp?api_key=s3cret", nil},
		{"/v1/ocsp", map[string]string{"Authorization": "s3cret"}},
		{"/v1/ocsp", map[string]string{"X-API-KEY": " "}},
		{"/v1/ocsp", map[string]string{"X-Api-Key ": "s3cret"}},
	} {
		req, _ := http.NewRequest("GET", c.url+tc.path, nil)
		for k, v := range tc.hdr {
			req.Header[k] = []string{v}
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			continue // a malformed header refused by the client is no bypass
		}
		resp.Body.Close()
		if resp.StatusCode != 401 {
			t.Fatalf("%s %v: %d, want 401", tc.path, tc.hdr, resp.StatusCode)
		}
	}
}
