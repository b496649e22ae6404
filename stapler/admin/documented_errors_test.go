package admin

import (
	"testing"
	"time"

	"github.com/staplerkit/ocsp/config"
	"github.com/staplerkit/ocsp/responder"
)

// PUT /v1/ocsp with the documented body (which repeats
// "ocsp_functionality": true) is accepted on a running server whose OCSP is
// already on, although one of its certificates has no AIA OCSP URL (an
// internal CA's, or any Let's Encrypt certificate since 2025): the spec's
// no_responder_url is "tried to enable OCSP while no responder URL is
// known", and OCSP is not being enabled. The same holds for a client that
// GETs the object, edits the intervals and PUTs it back. Found when both
// were refused 400 no_responder_url while GET /v1/ocsp showed a responder
// URL.
func TestPutDocumentedBodyRefusedWhileOCSPIsOn(t *testing.T) {
	e := newEnv(t, on)
	noAIA, err := e.ca.Issue(responder.LeafOptions{DNSNames: []string{"internal.test"}})
	if err != nil {
		t.Fatal(err)
	}
	e.wrap(e.leaf.Certificate, noAIA.Certificate)
	e.waitStapled(e.leaf)
	c := newAdmin(t, e)
	code, _, obj, raw := c.do("GET", "/v1/ocsp", "")
	if code != 200 || obj["ocsp_functionality"] != true || obj["responder_url"] != e.srv.URL {
		t.Fatalf("GET: %d %s", code, raw)
	}
	code, _, _, raw = c.do("PUT", "/v1/ocsp", `{
    "ocsp_functionality": true,
    "query_frequency": 3800,
    "response_timeout": 2,
    "recovery_frequency": 80,
    "recovery_max_tries": 20
}`)
	if code != 200 {
		t.Fatalf("the documented PUT body, with OCSP already on and a responder URL known: %d %s", code, raw)
	}
}

// POST /v1/ocsp/test on a server that manages no certificate yet (its
// certificates come from GetCertificate, autocert say, and no handshake has
// happened) answers the documented 500 no_responder_url: GET /v1/ocsp shows
// "responder_url": "" then. Found when it answered 404 not_found with
// `stapler: unknown certificate ""`, a code the documented endpoint never
// returns.
func TestTestWithNoCertificateIsNotNoResponderURL(t *testing.T) {
	e := newEnv(t, on)
	c := newAdmin(t, e)
	code, _, obj, raw := c.do("GET", "/v1/ocsp", "")
	if code != 200 || obj["responder_url"] != "" {
		t.Fatalf("GET: %d %s", code, raw)
	}
	code, _, obj, raw = c.do("POST", "/v1/ocsp/test", "")
	if code != 500 || obj["error_code"] != "no_responder_url" {
		t.Fatalf("POST /v1/ocsp/test with no responder URL known: %d %s, want 500 no_responder_url", code, raw)
	}
}

// POST /v1/ocsp/test "queries the responder now, caches the answer when
// OCSP is on, and returns it": an answer older than the one held (a stale
// cache or a replay: GOOD, thisUpdate two hours back, after a REVOKED one)
// is refused by the Stapler (ErrOlderResponse), and the test reports that
// refusal, not the answer as if it were cached. Found when the test
// answered 200 with cert_status GOOD while the server kept stapling REVOKED
// and GET /v1/ocsp/status said REVOKED.
func TestTestReportsAnOlderAnswerItDidNotCache(t *testing.T) {
	e := newEnv(t, on)
	e.wrap(e.leaf.Certificate)
	e.waitStapled(e.leaf)
	c := newAdmin(t, e)
	e.r.SetStatus(e.leaf.Cert.SerialNumber, responder.Revoked(time.Now().Add(-time.Minute), 1))
	if code, _, obj, raw := c.do("POST", "/v1/ocsp/test", ""); code != 200 || obj["cert_status"] != "REVOKED" {
		t.Fatalf("test after the revocation: %d %s", code, raw)
	}
	// A stale answer: GOOD, produced two hours before the revocation seen.
	e.r.SetStatus(e.leaf.Cert.SerialNumber, responder.Good())
	e.r.SetClock(func() time.Time { return time.Now().Add(-2 * time.Hour) })
	code, _, tested, raw := c.do("POST", "/v1/ocsp/test", "")
	_, _, status, statusRaw := c.do("GET", "/v1/ocsp/status", "")
	if code == 200 && tested["cert_status"] != status["cert_status"] {
		t.Fatalf("POST /v1/ocsp/test answered 200 cert_status %v (this_update %v), but that answer was not cached: GET /v1/ocsp/status says %v\ntest: %s\nstatus: %s",
			tested["cert_status"], tested["this_update"], status["cert_status"], raw, statusRaw)
	}
}

// GET /v1/ocsp/status stays on the documented object after the responder
// answered something that is not a valid OCSP response (OCSP on, nothing
// cached): the documented error invalid_ocsp_response, never a cert_status
// outside GOOD, REVOKED and UNKNOWN (a client switching on the three values,
// as the Redis Enterprise UI does, would fall through). Found when it
// answered 200 with "cert_status": "".
func TestStatusAfterAnInvalidResponseIsOffTheDocumentedObject(t *testing.T) {
	e := newEnv(t, config.OCSP{})
	e.wrap(e.leaf.Certificate)
	c := newAdmin(t, e)
	e.r.SetFault(responder.Fault{Kind: responder.FaultGarbageBody})
	if code, _, _, raw := c.do("PUT", "/v1/ocsp", `{"ocsp_functionality": true}`); code != 200 {
		t.Fatalf("PUT: %d %s", code, raw)
	}
	if code, _, obj, raw := c.do("POST", "/v1/ocsp/test", ""); code != 500 || obj["error_code"] != "invalid_ocsp_response" {
		t.Fatalf("test: %d %s", code, raw)
	}
	code, _, obj, raw := c.do("GET", "/v1/ocsp/status", "")
	if code == 200 {
		switch obj["cert_status"] {
		case "GOOD", "REVOKED", "UNKNOWN":
			return
		}
		t.Fatalf("GET /v1/ocsp/status after an invalid response: 200 with cert_status %q, want GOOD, REVOKED or UNKNOWN (or the documented invalid_ocsp_response error)\n%.300s", obj["cert_status"], raw)
	}
	if obj["error_code"] != "invalid_ocsp_response" {
		t.Fatalf("GET /v1/ocsp/status after an invalid response: %d %s", code, raw)
	}
}
