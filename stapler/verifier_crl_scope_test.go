package stapler

// CRLs of different scopes (all, user or CA certificates) at one point: a CRL
// that does not cover the kind of certificate checked is neither held nor
// remembered, and the scopes are held apart.
// From an attacker session's findings on issue 29 (CRL checking).

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

// An authority revocation list (onlyContainsCACerts, no name in its
// issuing distribution point) served at the user CRL's URL to a leaf's
// check is refused (ErrCRLScope) and neither held nor remembered as the
// point's newest CRL: the CA's user CRL, served after it, decides. Found
// by an attack session: the ARL served first (a Verifier just started, or
// the point's CRL expired or dropped by MaxCRLMemory, and an on-path
// attacker at the plain-HTTP point, or a misconfigured mirror, serving the
// CA's current ARL once) was held and recorded as the newest version, so
// when the CA numbered its ARL above its user CRL every user CRL was
// refused as a rollback for as long as the Verifier lived: soft fail then
// accepted every revoked client, and HardFail refused every client.
func TestVerifierCRLAuthorityListServedFirstDoesNotLockOutTheUserCRL(t *testing.T) {
	p := newCRLPKI(t)
	p.serve(p.crl(500, nil, func(rl *x509.RevocationList) { rl.ExtraExtensions = []pkix.Extension{idpCAOnly()} }))
	v := p.verifier(false)
	leaf := p.leaf(5, leafOpts{})
	if err := v.VerifyConnection(p.state(leaf)); err != nil { // soft fail: the ARL does not cover a leaf
		t.Fatalf("the ARL at the user CRL's URL, soft fail: %v", err)
	}
	// Two days later the ARL has long expired; the point serves the CA's
	// user CRL (its own counter: number 10), which lists client 5.
	p.clock.Advance(48 * time.Hour)
	p.serve(p.crl(10, []int64{5}))
	var revoked *RevokedError
	if err := v.VerifyConnection(p.state(leaf)); !errors.As(err, &revoked) {
		t.Fatalf("the user CRL (the ARL served once, two days ago, long expired) lists the client, who is accepted: %v (metrics %+v)", err, v.CRLMetrics())
	}
}

// The same, without CRL numbers in play: the CA's user CRL carries an
// issuing distribution point with onlyContainsUserCerts (as ADCS and
// EJBCA can be set to) and a higher number than the ARL. Found by an
// attack session: the ARL held first made keep refuse it (ErrCRLScope:
// "fewer kinds than the CRL held"), so the leaf had no CRL until the
// ARL's nextUpdate (an offline root's ARL: months), although the ARL
// never covered it.
func TestVerifierCRLAuthorityListHeldDoesNotRefuseTheUserOnlyCRLOfThePoint(t *testing.T) {
	p := newCRLPKI(t)
	p.serve(p.crl(5, nil, func(rl *x509.RevocationList) { rl.ExtraExtensions = []pkix.Extension{idpCAOnly()} }))
	v := p.verifier(false)
	leaf := p.leaf(5, leafOpts{})
	if err := v.VerifyConnection(p.state(leaf)); err != nil {
		t.Fatalf("the ARL at the user CRL's URL, soft fail: %v", err)
	}
	p.serve(p.crl(6, []int64{5}, func(rl *x509.RevocationList) { rl.ExtraExtensions = []pkix.Extension{crlIDP(p.url, true, false)} }))
	p.clock.Advance(61 * time.Minute) // the ARL is due for its refresh
	v.VerifyConnection(p.state(leaf))
	eventually(t, "the refresh", func() bool { return p.crlHits() == 2 && !v.crlRefreshing(p.url) })
	var revoked *RevokedError
	if err := v.VerifyConnection(p.state(leaf)); !errors.As(err, &revoked) {
		t.Fatalf("the CA's user CRL (onlyContainsUserCerts, number 6) lists the client, who is accepted: %v (metrics %+v)", err, v.CRLMetrics())
	}
}

// A CA that serves its user CRL and its authority revocation list at one
// URL (the one its client and CA certificates both name; or an attacker
// who alternates them): each is held in its own scope, for the kind of
// certificate it covers, and neither displaces, outnumbers or refuses the
// other. Under HardFail, the intermediate is checked on the ARL and the
// clients on the user CRL, and neither CRL is fetched again.
func TestVerifierCRLUserCRLAndAuthorityListOfOnePointAreHeldApart(t *testing.T) {
	p := newCRLPKI(t)
	cs := intermediateChain(t, p, newPointServer(t))
	p.serve(p.crl(500, nil, func(rl *x509.RevocationList) { rl.ExtraExtensions = []pkix.Extension{idpCAOnly()} }))
	v := p.verifier(true)
	if err := v.VerifyConnection(cs); err != nil {
		t.Fatalf("the intermediate, on the ARL: %v", err)
	}
	p.serve(p.crl(10, []int64{5}, func(rl *x509.RevocationList) { rl.ExtraExtensions = []pkix.Extension{crlIDP(p.url, true, false)} }))
	var revoked *RevokedError
	if err := v.VerifyConnection(p.state(p.leaf(5, leafOpts{}))); !errors.As(err, &revoked) {
		t.Fatalf("the revoked client, on the user CRL (number 10, below the ARL's 500): %v (metrics %+v)", err, v.CRLMetrics())
	}
	if err := v.VerifyConnection(p.state(p.leaf(6, leafOpts{}))); err != nil {
		t.Fatalf("a good client, HardFail: %v", err)
	}
	if err := v.VerifyConnection(cs); err != nil {
		t.Fatalf("the intermediate, after the user CRL was fetched at the ARL's URL: %v", err)
	}
	if m := v.CRLMetrics(); m.Held != 3 || p.crlHits() != 2 || m.Fetches[CRLFetchOK] != 3 {
		t.Fatalf("want the ARL, the user CRL and the intermediate's CRL held, the root's URL fetched twice: %d hits, %+v", p.crlHits(), m)
	}
}
