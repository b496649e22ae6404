package stapler

// Several distribution points of one issuer: the newest CRL held decides.
// From an attacker session's findings on issue 29 (CRL checking).

import (
	"errors"
	"testing"
	"time"

	"crypto/x509"
)

// Found by an attack session: rollback across the distribution points of one issuer. The CRL
// number orders the CRLs of one issuer and scope, not of one URL; but the
// Verifier orders them per URL and answers from the first point that holds
// a CRL. A certificate naming two mirrors of its CA's CRL stays accepted
// through an attacker's mirror that keeps serving an older (still current)
// CRL, while the Verifier holds the newer CRL, from the other mirror,
// which lists it.
func TestVerifierCRLOlderCRLOfOneMirrorDoesNotOutvoteANewerOneHeldFromAnother(t *testing.T) {
	p := newCRLPKI(t)
	s := newPointServer(t)
	a, b := s.url("/a.crl"), s.url("/b.crl")
	old := p.crl(5, nil, func(rl *x509.RevocationList) { rl.NextUpdate = p.clock.Now().Add(7 * 24 * time.Hour) })
	s.serve("/a.crl", old)
	s.serve("/b.crl", old)
	v := p.verifier(false)
	leaf := p.leaf(5, leafOpts{points: []string{a, b}})
	if err := v.VerifyConnection(p.state(leaf)); err != nil {
		t.Fatal(err)
	}
	// The CA revokes serial 5 in CRL 6; mirror b has it, mirror a (the
	// attacker's) keeps serving 5. Another client, whose certificate names
	// b only, brings CRL 6 into the Verifier.
	p.clock.Advance(10 * time.Minute)
	s.serve("/b.crl", p.crl(6, []int64{5}))
	var revoked *RevokedError
	if err := v.VerifyConnection(p.state(p.leaf(5, leafOpts{points: []string{b}}))); !errors.As(err, &revoked) {
		t.Fatalf("CRL 6 at b: %v", err)
	}
	if m := v.CRLMetrics(); m.Held != 2 {
		t.Fatalf("metrics %+v", m)
	}
	if err := v.VerifyConnection(p.state(leaf)); !errors.As(err, &revoked) {
		t.Fatalf("the Verifier holds CRL 6 of the issuer, which lists the client, and accepts it on CRL 5 from another of its points: %v", err)
	}
}
