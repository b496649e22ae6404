package admin

import (
	"strings"
	"testing"

	"github.com/staplerkit/ocsp/responder"
	"github.com/staplerkit/ocsp/stapler"
)

// hostileIDs are certificate IDs from outside that name no certificate.
func hostileIDs(valid string) []string {
	return []string{
		valid + "a",                        // 65 hex digits
		valid + valid,                      // 128
		strings.Repeat("f", 10_000),        // very long
		strings.ToUpper(valid),             // upper case: not the canonical form
		valid[:63],                         // too short
		valid[:63] + "g",                   // not hex
		valid[:62] + "\x00\x00",            // NULs
		"../" + valid[3:],                  // a path
		valid + "/",                        // a trailing slash
		"",                                 // none, with two certificates
		strings.Repeat("\xff", 64),         // not UTF-8
		valid[:32] + "\u00e9" + valid[34:], // a non-ASCII rune in 64 bytes
	}
}

// TestHostileIDsAreNotFound: certificate IDs from outside that name no
// certificate are 404 on every endpoint that takes one, and change nothing.
func TestHostileIDsAreNotFound(t *testing.T) {
	e := newEnv(t, on)
	second, err := e.srv.Issue(responder.LeafOptions{DNSNames: []string{"second.test"}})
	if err != nil {
		t.Fatal(err)
	}
	e.serve(e.leaf.Certificate, second.Certificate)
	e.waitStapled(e.leaf)
	c := newAdmin(t, e)
	valid := stapler.CertificateID(e.leaf.Cert.Raw)
	for _, id := range hostileIDs(valid) {
		//lint:ignore SA1011 the bytes of hostile IDs, not text
		if id == "" || strings.ContainsAny(id, "/\x00\xff") || strings.Contains(id, "\u00e9") {
			continue // the list, or not a path segment an HTTP client sends as is
		}
		for _, method := range []string{"GET", "PUT", "PATCH", "DELETE"} {
			if code, _, _, body := c.do(method, "/v1/certificates/"+id, `{"ocsp_stapling": null}`); code != 404 {
				t.Errorf("%s /v1/certificates/%s: %d %s, want 404", method, brief(id), code, body)
			}
		}
		if code, _, _, body := c.do("GET", "/v1/ocsp/status?id="+id, ""); code != 404 {
			t.Errorf("GET /v1/ocsp/status?id=%s: %d %s, want 404", brief(id), code, body)
		}
	}
	if st, err := e.s.StatusOf(valid); err != nil || !st.Stapled || len(e.s.Status()) != 2 {
		t.Fatal("hostile IDs changed the managed certificates")
	}
}

func brief(id string) string {
	if len(id) > 70 {
		return id[:70] + "..."
	}
	return id
}

// TestStaplingNullAndEmptyBodies: null returns to the Stapler's defaults
// (enabled), an empty PUT changes nothing, and the walkthrough ends stapled.
func TestStaplingNullAndEmptyBodies(t *testing.T) {
	e := newEnv(t, on)
	addr := e.serve(e.leaf.Certificate)
	e.waitStapled(e.leaf)
	c := newAdmin(t, e)
	path := "/v1/certificates/" + stapler.CertificateID(e.leaf.Cert.Raw)
	get := func() map[string]any {
		_, _, obj, _ := c.do("GET", path, "")
		return obj["ocsp_stapling"].(map[string]any)
	}
	if code, _, _, body := c.do("PUT", path, `{}`); code != 200 || get()["enabled"] != true {
		t.Fatalf("PUT {}: %d %s; stapling now %v, want unchanged (enabled)", code, body, get())
	}
	if code, _, _, body := c.do("PATCH", path, `{}`); code != 200 || get()["enabled"] != true {
		t.Fatalf("PATCH {}: %d %s; stapling now %v", code, body, get())
	}
	if code, _, _, _ := c.do("PUT", path, `{"ocsp_stapling": {"cache_ttl": 600}}`); code != 200 || get()["enabled"] != false || get()["cache_ttl"] != 600.0 {
		t.Fatalf("PUT replaces the object with the documented defaults: %v", get())
	}
	e.mustGetNoStaple(addr)
	for _, method := range []string{"PATCH", "PUT"} {
		c.do("PATCH", path, `{"ocsp_stapling": {"enabled": false}}`)
		if code, _, _, body := c.do(method, path, `{"ocsp_stapling": null}`); code != 200 {
			t.Fatalf("%s null: %d %s", method, code, body)
		}
		if st := get(); st["enabled"] != true || st["cache_ttl"] != float64(stapler.DefaultDiscoveredCacheTTL) {
			t.Fatalf("%s null: %v, want the Stapler's defaults", method, st)
		}
	}
	e.waitStapled(e.leaf)
	e.mustGetStaple(addr, e.leaf, 0)
}

// TestAdminCanonicalPaths: a wrong method is 405 even for an unknown
// certificate, and a certificate has one path: no upper case, no trailing
// or encoded slash.
func TestAdminCanonicalPaths(t *testing.T) {
	e := newEnv(t, on)
	e.serve(e.leaf.Certificate)
	c := newAdmin(t, e)
	id := stapler.CertificateID(e.leaf.Cert.Raw)
	if code, hdr, _, _ := c.do("POST", "/v1/certificates/"+strings.Repeat("0", 64), ""); code != 405 || hdr.Get("Allow") == "" {
		t.Fatalf("POST on an unknown id: %d, want 405 with Allow", code)
	}
	for _, p := range []string{"/v1/certificates/" + strings.ToUpper(id), "/v1/certificates/" + id + "/", "/v1/certificates/" + id + "%2F", "/v1/certificates/" + id[:10] + "%61" + id[11:]} {
		if code, _, _, body := c.do("GET", p, ""); code != 404 {
			t.Errorf("GET %s: %d %s, want 404", p, code, body)
		}
	}
	if code, _, _, _ := c.do("GET", "/v1/certificates/"+id, ""); code != 200 {
		t.Fatalf("the canonical path: %d", code)
	}
	if code, _, _, _ := c.do("GET", "/v1/certificates/", ""); code != 200 {
		t.Fatalf("the list with a trailing slash: %d", code)
	}
}
