package admin

import (
	"strings"
	"testing"

	"github.com/staplerkit/ocsp/config"
)

// What GET /v1/ocsp gives can be PUT back as it is (clients that send back
// what they read), with a field changed; a responder_url other than the
// one in use is still refused, and changes nothing.
func TestAdminOCSPObjectRoundTrips(t *testing.T) {
	e := newEnv(t, config.OCSP{})
	e.wrap(e.leaf.Certificate)
	c := newAdmin(t, e)
	code, _, _, body := c.do("GET", "/v1/ocsp", "")
	if code != 200 || !strings.Contains(body, `"responder_url": "`+e.srv.URL+`"`) {
		t.Fatalf("GET: %d %s", code, body)
	}
	if code, _, _, raw := c.do("PUT", "/v1/ocsp", body); code != 200 {
		t.Fatalf("PUT of what GET gave: %d %s", code, raw)
	}
	changed := strings.Replace(body, `"query_frequency": 3600`, `"query_frequency": 1800`, 1)
	if code, _, obj, raw := c.do("PUT", "/v1/ocsp", changed); code != 200 || obj["query_frequency"] != 1800.0 {
		t.Fatalf("PUT of what GET gave, one field changed: %d %s", code, raw)
	}
	before := e.s.Get()
	other := strings.Replace(changed, e.srv.URL, "http://elsewhere.test", 1)
	if code, _, obj, raw := c.do("PUT", "/v1/ocsp", other); code != 400 || obj["error_code"] != "invalid_schema" || !strings.Contains(raw, "read-only") {
		t.Fatalf("PUT of another responder_url: %d %s", code, raw)
	}
	if e.s.Get() != before {
		t.Fatal("a refused PUT changed the configuration")
	}
}
