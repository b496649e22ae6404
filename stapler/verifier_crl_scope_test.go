package stapler

// A CRL of another scope served at a point does not displace the CRL held
// there. From an attacker session's findings on issue 29 (CRL checking).

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"testing"
	"time"
)

// A CRL that does not cover the kinds of certificates the CRL held covers
// does not displace it (ErrCRLScope). Found by an attack session: an
// attacker at the distribution point replays the CA's authority
// revocation list (issuingDistributionPoint with onlyContainsCACerts and
// no name, so no URL to mismatch; a higher CRL number than the user CRL
// when the CA numbers all its CRLs from one counter); the refresh took it
// in place of the user CRL held, the clients that CRL listed were
// accepted (soft fail), and the user CRL was then refused as a rollback.
func TestVerifierCRLOfAnotherScopeDoesNotDisplaceTheUserCRLHeld(t *testing.T) {
	p := newCRLPKI(t)
	p.serve(p.crl(5, []int64{5, 7}))
	v := p.verifier(false)
	leaf := p.leaf(5, leafOpts{})
	var revoked *RevokedError
	if err := v.VerifyConnection(p.state(leaf)); !errors.As(err, &revoked) {
		t.Fatalf("the user CRL: %v", err)
	}
	p.serve(p.crl(6, nil, func(rl *x509.RevocationList) { rl.ExtraExtensions = []pkix.Extension{idpCAOnly()} }))
	p.clock.Advance(61 * time.Minute) // due for the background refresh
	v.VerifyConnection(p.state(leaf))
	eventually(t, "the refresh", func() bool { return p.crlHits() == 2 && !v.crlRefreshing(p.url) })
	// Client 7, listed by the user CRL held and never seen before (so not
	// a revocation already learnt), is refused on that CRL.
	if err := v.VerifyConnection(p.state(p.leaf(7, leafOpts{}))); !errors.As(err, &revoked) {
		t.Fatalf("after the ARL was served at the user CRL's URL, the revoked client: %v (metrics %+v)", err, v.CRLMetrics())
	}
	if n := v.CRLMetrics().Fetches[CRLFetchInvalid]; n != 1 {
		t.Fatalf("the ARL counted as invalid %d times, want 1", n)
	}
}
