package admin

import (
	"testing"

	"github.com/staplerkit/ocsp/stapler"
)

// GET /v1/certificates/{id}/ocsp_response negotiates on Accept (RFC 9110
// 12.5.1): q=0 means "not acceptable", and the highest q wins whatever the
// order of the list. A client that refuses JSON (a deploy job writing the
// DER to a file for nginx's ssl_stapling_file) must get DER, and one that
// prefers JSON must get JSON.
func TestStapleAcceptHeaderHonoursQValues(t *testing.T) {
	e := newEnv(t, on)
	e.serve(e.leaf.Certificate)
	e.waitStapled(e.leaf)
	c := newAdmin(t, e)
	path := "/v1/certificates/" + stapler.CertificateID(e.leaf.Cert.Raw) + "/ocsp_response"
	for _, tc := range []struct{ accept, want string }{
		{"application/json;q=0, application/ocsp-response", "application/ocsp-response"},
		{"application/json;q=0", "application/ocsp-response"},
		{"application/ocsp-response;q=0.1, application/json", "application/json"},
		{"application/ocsp-response;q=0.5, application/json;q=0.9", "application/json"},
	} {
		code, hdr, body := c.rawAccept("GET", path, tc.accept)
		if code != 200 || hdr.Get("Content-Type") != tc.want {
			t.Errorf("Accept: %s: %d %s, want %s (%d bytes)", tc.accept, code, hdr.Get("Content-Type"), tc.want, len(body))
		}
	}
}
