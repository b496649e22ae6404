package admin

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/staplerkit/ocsp/responder"
	"github.com/staplerkit/ocsp/stapler"
)

// raw sends body with contentType and returns the status, headers and body.
func (c adminClient) raw(method, path, contentType string, body []byte) (int, http.Header, []byte) {
	c.t.Helper()
	req, _ := http.NewRequest(method, c.url+path, bytes.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("X-API-KEY", c.key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	got, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, got
}

// rawAccept is a GET with an Accept header.
func (c adminClient) rawAccept(method, path, accept string) (int, http.Header, []byte) {
	c.t.Helper()
	req, _ := http.NewRequest(method, c.url+path, nil)
	req.Header.Set("Accept", accept)
	req.Header.Set("X-API-KEY", c.key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	got, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, got
}

// A certificate's staple can be read as DER, and a response pushed: it is
// verified, a newer one stapled at once, an older or bad one refused with a
// client error.
func TestAdminReadsAndPushesAStaple(t *testing.T) {
	e := newEnv(t, on)
	addr := e.serve(e.leaf.Certificate)
	e.waitStapled(e.leaf)
	c := newAdmin(t, e)
	path := "/v1/certificates/" + stapler.CertificateID(e.leaf.Cert.Raw) + "/ocsp_response"

	code, hdr, good := c.raw("GET", path, "", nil)
	if code != 200 || hdr.Get("Content-Type") != "application/ocsp-response" || hdr.Get("Expires") == "" {
		t.Fatalf("GET: %d %v", code, hdr)
	}
	resp, err := ocsp.ParseResponseForCert(good, e.leaf.Cert, e.ca.Cert)
	if err != nil || resp.Status != ocsp.Good {
		t.Fatalf("GET gave a staple that does not verify as good: %v", err)
	}
	// Decoded, for an operator (as HAProxy's show ssl ocsp-response).
	for _, get := range []func() (int, http.Header, []byte){
		func() (int, http.Header, []byte) { return c.rawAccept("GET", path, "application/json") },
		func() (int, http.Header, []byte) { return c.raw("GET", path+"?format=json", "", nil) },
	} {
		code, hdr, body := get()
		if code != 200 || hdr.Get("Content-Type") != "application/json" {
			t.Fatalf("GET decoded: %d %v %s", code, hdr, body)
		}
		var v map[string]any
		if err := json.Unmarshal(body, &v); err != nil {
			t.Fatal(err)
		}
		if v["cert_status"] != "GOOD" || v["signer"] != "issuer" || v["bytes"] != float64(len(good)) ||
			v["this_update"] != resp.ThisUpdate.UTC().Format(http.TimeFormat) || v["expires"] == nil {
			t.Fatalf("decoded staple %s", body)
		}
	}

	e.r.SetClock(func() time.Time { return time.Now().Add(time.Minute) }) // a newer thisUpdate, within the skew
	e.r.SetStatus(e.leaf.Cert.SerialNumber, responder.Revoked(time.Now().Add(-time.Second), ocsp.KeyCompromise))
	revoked, err := e.r.Respond(e.leaf.Cert)
	if err != nil {
		t.Fatal(err)
	}
	if code, _, body := c.raw("PUT", path, "application/ocsp-response", revoked); code != 200 || !strings.Contains(string(body), `"cert_status": "REVOKED"`) {
		t.Fatalf("PUT revoked: %d %s", code, body)
	}
	e.mustGetStaple(addr, e.leaf, ocsp.Revoked)

	for _, tc := range []struct {
		name, method, path, contentType string
		body                            []byte
		code                            int
		errorCode                       string
	}{
		{"older", "PUT", path, "application/ocsp-response", good, 409, "invalid_ocsp_response"},
		{"garbage", "PUT", path, "application/ocsp-response", []byte("not a response"), 400, "invalid_ocsp_response"},
		{"no content type", "PUT", path, "", []byte("not a response"), 400, "invalid_ocsp_response"},
		{"JSON", "PUT", path, "application/json", good, 415, "unsupported_media_type"},
		{"too large", "PUT", path, "application/ocsp-response", make([]byte, stapler.MaxResponseBytes+1), 413, "payload_too_large"},
		{"unknown certificate", "PUT", "/v1/certificates/" + strings.Repeat("ab", 32) + "/ocsp_response", "application/ocsp-response", revoked, 404, "not_found"},
		{"wrong method", "POST", path, "application/ocsp-response", revoked, 405, "method_not_allowed"},
		{"deeper path", "GET", path + "/x", "", nil, 404, "not_found"},
	} {
		code, _, body := c.raw(tc.method, tc.path, tc.contentType, tc.body)
		if code != tc.code || !strings.Contains(string(body), `"error_code": "`+tc.errorCode+`"`) {
			t.Fatalf("%s: %d %s, want %d %s", tc.name, code, body, tc.code, tc.errorCode)
		}
		e.mustGetStaple(addr, e.leaf, ocsp.Revoked)
	}
}
