package stapler

import (
	"crypto/x509"
	"errors"
	"math/big"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"
)

// A hold that a newer CRL released gives way to a good answer dated by that
// CRL's thisUpdate (releaseHold); a revocation the responder signs with the
// same thisUpdate (a CA that issues its CRL and pre-signs its OCSP answers
// in one batch, as this test PKI does) must still be learnt: at the same
// time, a revocation replaces a good answer, never the other way round, and
// a valid revocation seen once is known until NotAfter. Otherwise the peer
// whose legitimate server stapled the revocation is let in on its next
// connection (no staple, or an older good one replayed with a stolen key)
// on the strength of the CRL's "not listed" of that same second.
func TestARevocationOfTheSameTimeAsTheCRLThatReleasedAHoldIsNotForgotten(t *testing.T) {
	p := newCRLPKI(t)
	p.serve(p.crl(1, []int64{5}, func(rl *x509.RevocationList) {
		rl.RevokedCertificateEntries[0].ReasonCode = ocsp.CertificateHold
	}))
	v := p.verifier(false)
	leaf := p.leaf(5, leafOpts{ocsp: true}) // the responder is down (-1)
	var revoked *RevokedError
	if err := v.VerifyConnection(p.state(leaf)); !errors.As(err, &revoked) {
		t.Fatalf("on hold: %v", err)
	}
	// The hold is released: CRL 2 (thisUpdate T2) no longer lists serial 5.
	p.clock.Advance(61 * time.Minute)
	p.serve(p.crl(2, nil))
	v.VerifyConnection(p.state(leaf)) // due for the refresh, in the background
	eventually(t, "the refresh", func() bool { return p.crlHits() == 2 && !v.crlRefreshing(p.url) })
	if err := v.VerifyConnection(p.state(leaf)); err != nil {
		t.Fatalf("released by CRL 2: %v", err)
	}

	// The CA then revokes the certificate for keyCompromise; its responder's
	// answer has the thisUpdate of CRL 2 (same batch, same second).
	now := p.clock.Now()
	der, err := ocsp.CreateResponse(p.ca, p.ca, ocsp.Response{Status: ocsp.Revoked, SerialNumber: big.NewInt(5),
		ThisUpdate: now.Add(-time.Minute), NextUpdate: now.Add(time.Hour), RevokedAt: now.Add(-time.Minute),
		RevocationReason: ocsp.KeyCompromise}, p.key)
	if err != nil {
		t.Fatal(err)
	}
	// The legitimate server staples the revocation: refused, final.
	stapled := p.state(leaf)
	stapled.OCSPResponse = der
	if err := v.VerifyConnection(stapled); !errors.As(err, &revoked) {
		t.Fatalf("a stapled revocation: %v", err)
	}
	// The next connection of that certificate, without the staple (the
	// attacker with the compromised key), must be refused too.
	if err := v.VerifyConnection(p.state(leaf)); !errors.As(err, &revoked) {
		t.Fatalf("the revocation stapled by the previous connection was forgotten: a good answer learnt from CRL 2 (same thisUpdate) lets the certificate in: %v", err)
	}
}
