package stapler

import (
	"bytes"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"math/big"
	"testing"
	"time"

	"github.com/staplerkit/ocsp/internal/ocspcheck"
	"github.com/staplerkit/ocsp/internal/ocsptest"

	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// AttackSigAlgParamsJunk: the AlgorithmIdentifier of the response's
// signature lies outside the signed ResponseData. The parser accepts any one
// element there as "parameters", so anyone on the plain-HTTP path (or with
// write access to the store) can stuff ~14 KB of junk into a CA-signed
// response: it verifies, replaces the staple, and is stapled verbatim. For
// ECDSA and Ed25519 the parameters must be absent (RFC 5758 3.2, RFC 8410
// 3), for RSA PKCS#1 v1.5 they must be NULL (RFC 4055 5).
func TestSigAlgParamsJunkNeverReplacesTheStaple(t *testing.T) {
	e := newEnv(t, on)
	srv, tamper := tamperingResponder(t, e.r)
	e.s.opts.responderURL = srv.URL
	addr := e.wrapAndServe(e.leaf.Certificate)
	e.waitStapled(e.leaf)
	before, _, err := e.handshake(addr)
	if err != nil {
		t.Fatal(err)
	}
	junk := func(raw []byte) []byte {
		outer, basic := basicOf(t, raw)
		algID := basic.children[1]
		algID.children = append(algID.children, octetString(t, 12_000))
		return rewrap(t, outer, basic)
	}
	tamper.Store(&junk)
	e.clock.Advance(time.Second) // a newer thisUpdate, so only the junk can refuse it
	_, err = e.s.Test(t.Context(), CertificateID(e.leaf.Cert.Raw))
	after, _, herr := e.handshake(addr)
	if herr != nil {
		t.Fatal(herr)
	}
	if err == nil || !errors.Is(err, ErrMalformedResponse) {
		t.Errorf("a response with 12 KB of junk in its signatureAlgorithm parameters: Test returned %v, want ErrMalformedResponse", err)
	}
	if !bytes.Equal(before, after) {
		t.Errorf("the staple changed to the junk-carrying response (%d bytes, was %d)", len(after), len(before))
	}
}

// The same bytes through verifyResponse directly, for every key type a CA
// may have: parameters that are neither absent (ECDSA, Ed25519) nor NULL
// (RSA) are refused.
func TestSigAlgParamsJunkRefusedByTheParser(t *testing.T) {
	f := ocsptest.NewOCSPFixture(t)
	opts := ocspcheck.Options{Skew: 5 * time.Minute}
	good := f.Sign(t, f.CA.Cert, f.CA.Key, false, nil)
	outer, basic := basicOf(t, good)
	basic.children[1].children = append(basic.children[1].children, octetString(t, 100))
	raw := rewrap(t, outer, basic)
	if _, err := ocspcheck.Verify(raw, f.Leaf.Cert, f.CA.Cert, f.Now, opts); !errors.Is(err, ErrMalformedResponse) {
		t.Fatalf("junk signatureAlgorithm parameters: got %v, want ErrMalformedResponse", err)
	}
}

// AttackDuplicatedCertsInflateTheStaple: the certs field also lies outside
// the signature. Every embedded certificate must parse, but nothing stops
// anyone on the plain-HTTP path from appending the same valid certificate
// (here the CA's own, 20 times) to a CA-signed response: it verifies, is
// installed, and every handshake carries kilobytes of bytes the CA never
// signed nor sent (the class of issue 11's "bytes outside the signature").
// Expected: refused (a duplicate, or a certificate that is not the
// signer's, has no business there), or stapled without them.
func TestTheStapleCarriesOnlyTheCertificateAClientNeeds(t *testing.T) {
	e := newEnv(t, on)
	srv, tamper := tamperingResponder(t, e.r)
	e.s.opts.responderURL = srv.URL
	addr := e.wrapAndServe(e.leaf.Certificate)
	e.waitStapled(e.leaf)
	var tampered []byte
	inflate := func(raw []byte) []byte {
		outer, basic := basicOf(t, raw)
		certs := &derNode{tag: cbasn1.SEQUENCE}
		for range 20 {
			certs.children = append(certs.children, parseDER(t, e.ca.Cert.Raw))
		}
		basic.children = append(basic.children, &derNode{tag: cbasn1.Tag(0).ContextSpecific().Constructed(), children: []*derNode{certs}})
		tampered = rewrap(t, outer, basic)
		return tampered
	}
	tamper.Store(&inflate)
	e.clock.Advance(time.Second)
	e.s.Test(t.Context(), CertificateID(e.leaf.Cert.Raw))
	after, _, err := e.handshake(addr)
	if err != nil {
		t.Fatal(err)
	}
	if tampered != nil && bytes.Equal(after, tampered) {
		t.Fatalf("stapled a response inflated with 20 copies of the CA certificate outside the signature: %d bytes", len(after))
	}
}

// AttackRenewedDelegateListedAfterItsPredecessor: a delegated responder
// whose certificate was renewed with the same key (common: the key lives in
// an HSM) embeds both certificates, the expired one first. checkSigner stops
// at the first embedded certificate whose key made the signature and
// refuses the response because that certificate has expired, without
// trying the next one, which is valid and authorized. Expected: the
// response verifies (some embedded certificate that made the signature is a
// valid delegate).
func TestRenewedDelegateListedAfterItsPredecessor(t *testing.T) {
	f := ocsptest.NewOCSPFixture(t)
	d := f.Delegate
	expiredTmpl := *d.Cert
	expiredTmpl.SerialNumber = big.NewInt(7)
	expiredTmpl.NotBefore = f.Now.Add(-400 * 24 * time.Hour)
	expiredTmpl.NotAfter = f.Now.Add(-35 * 24 * time.Hour)
	der, err := x509.CreateCertificate(rand.Reader, &expiredTmpl, f.CA.Cert, d.Key.Public(), f.CA.Key)
	if err != nil {
		t.Fatal(err)
	}
	raw := f.Sign(t, d.Cert, d.Key, true, nil)
	if _, err := ocspcheck.Verify(raw, f.Leaf.Cert, f.CA.Cert, f.Now, ocspcheck.Options{Skew: 5 * time.Minute}); err != nil {
		t.Fatalf("the renewed delegate alone: %v", err)
	}
	outer, basic := basicOf(t, raw)
	certs := basic.children[3].children[0]
	certs.children = append([]*derNode{parseDER(t, der)}, certs.children...)
	both := rewrap(t, outer, basic)
	if _, err := ocspcheck.Verify(both, f.Leaf.Cert, f.CA.Cert, f.Now, ocspcheck.Options{Skew: 5 * time.Minute}); err != nil {
		t.Fatalf("the expired predecessor embedded before the renewed delegate: %v", err)
	}
}
