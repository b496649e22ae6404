package admin

import (
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"encoding/asn1"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/staplerkit/ocsp/responder"
	"github.com/staplerkit/ocsp/stapler"
)

// multiResponse rebuilds resp (one SingleResponse, signed by ca) so that
// it carries first the SingleResponses of others, then its own, and signs
// it again with ca's key: a genuine response that answers for several
// certificates, as batch responders send them.
func multiResponse(t *testing.T, ca *responder.CA, resp []byte, others ...[]byte) []byte {
	t.Helper()
	seq := func(b []byte) []byte {
		out, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: b})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	// OCSPResponse ::= SEQUENCE { status, [0] EXPLICIT ResponseBytes }
	var outer []asn1.RawValue
	mustUnmarshal(t, resp, &outer)
	var rb struct {
		Type     asn1.ObjectIdentifier
		Response []byte
	}
	mustUnmarshal(t, outer[1].Bytes, &rb)
	basic := func(der []byte) (elems []asn1.RawValue, tbs []asn1.RawValue, respIdx int) {
		var o []asn1.RawValue
		mustUnmarshal(t, der, &o)
		var b struct {
			Type     asn1.ObjectIdentifier
			Response []byte
		}
		mustUnmarshal(t, o[1].Bytes, &b)
		mustUnmarshal(t, b.Response, &elems)
		mustUnmarshal(t, elems[0].FullBytes, &tbs)
		for i, el := range tbs {
			if el.Class == asn1.ClassUniversal && el.Tag == asn1.TagSequence && i > 0 && tbs[i-1].Tag == asn1.TagGeneralizedTime {
				return elems, tbs, i
			}
		}
		t.Fatal("no responses in the tbsResponseData")
		return
	}
	elems, tbs, ri := basic(resp)
	var singles []byte
	for _, o := range others {
		_, otbs, oi := basic(o)
		singles = append(singles, otbs[oi].Bytes...)
	}
	singles = append(singles, tbs[ri].Bytes...)
	var tbsBody []byte
	for i, el := range tbs {
		if i == ri {
			tbsBody = append(tbsBody, seq(singles)...)
			continue
		}
		tbsBody = append(tbsBody, el.FullBytes...)
	}
	newTBS := seq(tbsBody)
	digest := sha256.Sum256(newTBS)
	sig, err := ca.Key.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	sigBits, _ := asn1.Marshal(asn1.BitString{Bytes: sig, BitLength: 8 * len(sig)})
	basicBody := append(append([]byte{}, newTBS...), elems[1].FullBytes...)
	basicBody = append(basicBody, sigBits...)
	for _, el := range elems[3:] {
		basicBody = append(basicBody, el.FullBytes...)
	}
	rb.Response = seq(basicBody)
	rbDER, err := asn1.Marshal(rb)
	if err != nil {
		t.Fatal(err)
	}
	explicit, _ := asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: rbDER})
	return seq(append(append([]byte{}, outer[0].FullBytes...), explicit...))
}

func mustUnmarshal(t *testing.T, der []byte, v any) {
	t.Helper()
	if rest, err := asn1.Unmarshal(der, v); err != nil || len(rest) != 0 {
		t.Fatalf("asn1: %v (%d bytes left)", err, len(rest))
	}
}

// A response may answer for several certificates (RFC 6960 allows a list
// of SingleResponses; the Stapler picks the one whose CertID is the
// leaf's). The decoded staple an operator reads must be that answer, the
// one handshakes carry, not whichever SingleResponse comes first: here the
// handshake staples REVOKED while the decoded view must not say GOOD.
func TestDecodedStapleShowsTheCertificatesOwnAnswer(t *testing.T) {
	e := newEnv(t, on)
	addr := e.serve(e.leaf.Certificate)
	e.waitStapled(e.leaf)
	c := newAdmin(t, e)
	path := "/v1/certificates/" + stapler.CertificateID(e.leaf.Cert.Raw) + "/ocsp_response"

	other, err := e.srv.Issue(responder.LeafOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e.r.SetClock(func() time.Time { return time.Now().Add(time.Minute) }) // newer than the staple held, within the skew
	e.r.SetStatus(e.leaf.Cert.SerialNumber, responder.Revoked(time.Now().Add(-time.Second), ocsp.KeyCompromise))
	mine, err := e.r.Respond(e.leaf.Cert)
	if err != nil {
		t.Fatal(err)
	}
	theirs, err := e.r.Respond(other.Cert) // good
	if err != nil {
		t.Fatal(err)
	}
	batch := multiResponse(t, e.ca, mine, theirs)
	if code, _, body := c.raw("PUT", path, "application/ocsp-response", batch); code != 200 {
		t.Fatalf("PUT of a two-certificate response: %d %s", code, body)
	}
	e.mustGetStaple(addr, e.leaf, ocsp.Revoked) // what clients see

	code, _, body := c.raw("GET", path+"?format=json", "", nil)
	if code != http.StatusOK {
		t.Fatalf("GET decoded: %d %s", code, body)
	}
	var v map[string]any
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatal(err)
	}
	if v["cert_status"] != "REVOKED" || v["revocation_time"] == nil {
		t.Fatalf("handshakes staple REVOKED for this certificate, but the decoded staple says:\n%s", body)
	}
}
