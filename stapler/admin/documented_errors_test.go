package admin

import (
	"testing"
	"time"

	"github.com/staplerkit/ocsp/config"
	"github.com/staplerkit/ocsp/responder"
)

// DEFECT (PUT /v1/ocsp refuses the documented body on a running server):
// OCSP is already on and stapling a certificate that has a responder; the
// server also serves a certificate without an AIA OCSP URL (an internal
// CA's, or any Let's Encrypt certificate since 2025), which New accepted
// with OCSP on. The documented PUT example body (which repeats
// "ocsp_functionality": true) only changes the intervals, and a client that
// GETs the object, edits it and PUTs it back does the same; both are
// refused 400 no_responder_url and change nothing, although a responder
// URL is known (GET /v1/ocsp shows it) and OCSP is not being enabled (it is
// on). The spec's no_responder_url is "tried to enable OCSP while no
// responder URL is known".
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

// DEFECT (POST /v1/ocsp/test off the documented codes): a server whose
// certificates come from GetCertificate (autocert, say) has none managed
// until its first handshake; GET /v1/ocsp then shows "responder_url": "".
// The documented answer to testing with no responder URL is 500
// no_responder_url; the handler answers 404 not_found with the message
// `stapler: unknown certificate ""`, a code the documented endpoint never
// returns, for a request that named no certificate at all.
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

// DEFECT (POST /v1/ocsp/test reports an answer it did not cache): the
// documented endpoint "queries the responder now, caches the answer when
// OCSP is on, and returns it". When the responder answers with a response
// older than the one held (a stale cache or a replay: GOOD, thisUpdate two
// hours back, after a REVOKED one), the Stapler rightly refuses to install
// it (ErrOlderResponse), yet Test returns it with 200 and no error: the
// operator reads cert_status GOOD from the test while the server keeps
// stapling REVOKED and GET /v1/ocsp/status says REVOKED. The refusal to
// roll back is invisible on the wire.
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

// DEFECT (GET /v1/ocsp/status off the documented object): config.Status
// documents cert_status as "CertGood, CertRevoked or CertUnknown" and the
// spec's enum is GOOD, REVOKED, UNKNOWN; the spec lists
// invalid_ocsp_response as GET /v1/ocsp/status's error when the responder
// returned something that is not a valid OCSP response. After exactly that
// (OCSP turned on, the responder answers garbage, nothing cached), the
// handler answers 200 with "cert_status": "" — neither a documented status
// nor the documented error. A client switching on the three values (as the
// Redis Enterprise UI does) falls through.
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
