package stapler

// A certificate on hold (certificateHold, RFC 5280 5.3.1) that its CA
// releases: the only revocation a CRL lists that may be taken back. From
// an attacker session's findings on issue 29 (CRL checking).

import (
	"crypto/x509"
	"errors"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"
)

// A certificate on hold (reasonCode certificateHold) that the CA releases
// is no longer listed by the CA's next CRL (ADCS's "unrevoke", openssl
// ca's hold removal). The current CRL held, newer than the one that
// listed the hold, that no longer lists the client lets it back in.
// Found by an attack session: the hold was learnt as a known revocation
// kept until NotAfter that only a strictly newer OCSP answer replaced, so
// with a CRL-only CA the client was locked out for the life of its
// certificate (also when an on-path attacker at the plain-HTTP point
// replayed an old, still current CRL that listed the hold to a Verifier
// that had just started).
func TestVerifierCRLHoldReleasedByANewerCRLLetsTheClientBackIn(t *testing.T) {
	p := newCRLPKI(t)
	p.serve(p.crl(1, []int64{5}, func(rl *x509.RevocationList) {
		rl.RevokedCertificateEntries[0].ReasonCode = ocsp.CertificateHold
	}))
	v := p.verifier(false)
	leaf := p.leaf(5, leafOpts{})
	var revoked *RevokedError
	if err := v.VerifyConnection(p.state(leaf)); !errors.As(err, &revoked) {
		t.Fatalf("on hold: %v", err)
	}
	// The hold is released: the next CRL no longer lists serial 5.
	p.clock.Advance(61 * time.Minute)
	p.serve(p.crl(2, nil))
	v.VerifyConnection(p.state(leaf)) // due for the refresh, in the background
	eventually(t, "the refresh", func() bool { return p.crlHits() == 2 && !v.crlRefreshing(p.url) })
	if n := v.CRLMetrics().Fetches[CRLFetchOK]; n != 2 {
		t.Fatalf("the newer CRL was not accepted: %+v", v.CRLMetrics())
	}
	if err := v.VerifyConnection(p.state(leaf)); err != nil {
		t.Fatalf("the CRL held (number 2, newer than the one that listed the hold) does not list the client, who is still refused: %v", err)
	}
}

// The hold of an intermediate CA: the root's CRL puts the issuing CA on
// hold (certificateHold) and the next root CRL, fetched once the one that
// listed the hold has expired, releases it. Found by an attack session:
// the intermediate's revocation was kept until its NotAfter (years), so
// every client of that CA stayed refused after the release, under every
// policy.
func TestVerifierCRLIntermediateHoldReleasedLetsItsClientsBackIn(t *testing.T) {
	p := newCRLPKI(t)
	cs := intermediateChain(t, p, newPointServer(t))
	p.serve(p.crl(1, []int64{77}, func(rl *x509.RevocationList) {
		rl.RevokedCertificateEntries[0].ReasonCode = ocsp.CertificateHold
	}))
	v := p.verifier(false)
	var revoked *RevokedError
	if err := v.VerifyConnection(cs); !errors.As(err, &revoked) {
		t.Fatalf("the intermediate on hold: %v", err)
	}
	p.clock.Advance(25 * time.Hour) // the root's CRL that listed the hold has expired
	p.serve(p.crl(2, nil))          // and the next one no longer lists it
	if err := v.VerifyConnection(cs); err != nil {
		t.Fatalf("the root's current CRL (number 2) no longer lists the intermediate, whose clients are still refused: %v", err)
	}
}

// A hold a CRL listed gives way to a good answer from the responder
// strictly newer than that CRL, not only to a staple (which TLS 1.2
// clients cannot send at all): with FetchTimeout, the responder is asked
// about a hold (see TestVerifierCRLHoldIsAskedAboutAtTheResponderWithTheBackoff).
// Found by an attack session: once a CRL revocation was known, run refused
// before asking, and the responder's newer good answer was never seen,
// until NotAfter.
func TestVerifierCRLRevocationGivesWayToAStrictlyNewerGoodAnswerFromTheResponder(t *testing.T) {
	p := newCRLPKI(t)
	p.serve(p.crl(1, []int64{5}, func(rl *x509.RevocationList) {
		rl.RevokedCertificateEntries[0].ReasonCode = ocsp.CertificateHold
	}))
	v := p.verifier(false)
	leaf := p.leaf(5, leafOpts{ocsp: true})
	var revoked *RevokedError
	if err := v.VerifyConnection(p.state(leaf)); !errors.As(err, &revoked) { // responder down: the CRL
		t.Fatalf("on hold: %v", err)
	}
	// A day later: the hold released, the responder up and saying good
	// (thisUpdate a minute ago, a day after the CRL's), the CRL gone.
	p.clock.Advance(25 * time.Hour)
	p.mu.Lock()
	p.ocspState, p.body = ocsp.Good, nil
	p.mu.Unlock()
	_, before := p.setHits()
	err := v.VerifyConnection(p.state(leaf))
	_, after := p.setHits()
	if err != nil {
		t.Fatalf("the responder says good a day after the CRL that listed the hold (asked %d times): %v", after-before, err)
	}
}

// Only a hold is taken back (RFC 5280 5.3.1): a revocation a CRL listed
// for any other reason stays when a newer CRL no longer lists it (a CA's
// mistake, or an attacker's CRL that the CA signed by error, decides
// nothing), and the responder is not asked about it again.
func TestVerifierCRLOnlyAHoldIsReleased(t *testing.T) {
	p := newCRLPKI(t)
	p.serve(p.crl(1, []int64{5})) // keyCompromise
	v := p.verifier(false)
	leaf := p.leaf(5, leafOpts{ocsp: true})
	var revoked *RevokedError
	if err := v.VerifyConnection(p.state(leaf)); !errors.As(err, &revoked) {
		t.Fatalf("revoked: %v", err)
	}
	p.clock.Advance(61 * time.Minute)
	p.serve(p.crl(2, nil))
	p.mu.Lock()
	p.ocspState = ocsp.Good
	p.mu.Unlock()
	v.VerifyConnection(p.state(leaf)) // due for the refresh, in the background
	eventually(t, "the refresh", func() bool { return p.crlHits() == 2 && !v.crlRefreshing(p.url) })
	_, before := p.setHits()
	if err := v.VerifyConnection(p.state(leaf)); !errors.As(err, &revoked) {
		t.Fatalf("a keyCompromise revocation no longer listed by a newer CRL: %v", err)
	}
	if _, after := p.setHits(); after != before {
		t.Fatalf("the responder was asked %d times about a keyCompromise revocation", after-before)
	}
}

// A hold a CRL lists is asked about at the responder with the backoff of
// failures: an answer not strictly newer than the CRL leaves the hold and
// is not asked for again before the backoff; once the backoff has passed,
// a newer good answer releases the hold.
func TestVerifierCRLHoldIsAskedAboutAtTheResponderWithTheBackoff(t *testing.T) {
	p := newCRLPKI(t)
	p.serve(p.crl(1, []int64{5}, func(rl *x509.RevocationList) {
		rl.RevokedCertificateEntries[0].ReasonCode = ocsp.CertificateHold
	}))
	p.mu.Lock()
	p.ocspState = ocsp.Good // its answers' thisUpdate: a minute ago, the CRL's
	p.mu.Unlock()
	v := p.verifier(false)
	if err := v.VerifyConnection(p.state(p.leaf(6, leafOpts{}))); err != nil { // the CRL held
		t.Fatal(err)
	}
	leaf := p.leaf(5, leafOpts{ocsp: true})
	var revoked *RevokedError
	for i := range 3 {
		if err := v.VerifyConnection(p.state(leaf)); !errors.As(err, &revoked) {
			t.Fatalf("handshake %d: a good answer of the CRL's own thisUpdate released the hold: %v", i, err)
		}
	}
	if _, hits := p.setHits(); hits != 1 {
		t.Fatalf("the responder was asked %d times within the backoff, want 1", hits)
	}
	p.clock.Advance(6 * time.Second)
	if err := v.VerifyConnection(p.state(leaf)); err != nil {
		t.Fatalf("after the backoff, a good answer newer than the CRL: %v", err)
	}
	if _, hits := p.setHits(); hits != 2 {
		t.Fatalf("the responder was asked %d times, want 2", hits)
	}
}
