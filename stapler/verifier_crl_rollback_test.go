package stapler

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"
)

// A revocation a CRL lists is not undone by an OCSP answer older than the CRL.

// A revocation the Verifier established from a CRL is kept as a known
// revocation, as an OCSP revocation it learnt is (see the Verifier's doc):
// a revoked mTLS client (TLS 1.3 clients may staple for their own
// certificate) refused once does not get in on its next handshake by
// stapling the good OCSP response it was given before its revocation (still
// within its nextUpdate), since the CRL held is newer than the staple (its
// thisUpdate, and the entry's revocation date, are after the staple's
// thisUpdate).
func TestVerifierCRLRevocationIsNotUndoneByAStapleOlderThanTheCRL(t *testing.T) {
	p := newCRLPKI(t)
	p.serve(p.crl(1, []int64{5})) // revoked an hour ago; thisUpdate a minute ago
	v := p.verifier(false)
	leaf := p.leaf(5, leafOpts{})
	now := p.clock.Now()
	oldGood, err := ocsp.CreateResponse(p.ca, p.ca, ocsp.Response{Status: ocsp.Good, SerialNumber: leaf.SerialNumber,
		ThisUpdate: now.Add(-2 * time.Hour), NextUpdate: now.Add(5 * 24 * time.Hour)}, p.key)
	if err != nil {
		t.Fatal(err)
	}
	var revoked *RevokedError
	if err := v.VerifyConnection(p.state(leaf)); !errors.As(err, &revoked) {
		t.Fatalf("no staple: the CRL's revocation not seen: %v", err)
	}
	cs := p.state(leaf)
	cs.OCSPResponse = oldGood
	if err := v.VerifyConnection(cs); !errors.As(err, &revoked) {
		t.Fatalf("the client refused as revoked by the CRL one handshake ago is accepted with a good staple made before its revocation: %v", err)
	}
	// The same holds when the CRL was fetched for another client.
	v2 := p.verifier(false)
	if err := v2.VerifyConnection(p.state(p.leaf(6, leafOpts{}))); err != nil {
		t.Fatal(err)
	}
	if err := v2.VerifyConnection(cs); !errors.As(err, &revoked) {
		t.Fatalf("a CRL held lists the client, which is accepted with a good staple older than that CRL: %v", err)
	}
}

// A CRL held is an answer known without a request: it is read before a live
// OCSP request (the order issue 29 quotes: a valid staple, a cached answer,
// the CRL, then a live request), and an older OCSP answer never outvotes a
// newer CRL's revocation. So when the Verifier holds a CRL that lists the
// client and an attacker at the OCSP responder's host replays a good answer
// the CA signed before the revocation (still within its nextUpdate), the
// revoked client stays refused. Found when the responder was asked before
// the CRL held and its good answer let the client in.
func TestVerifierCRLRevocationHeldIsNotUndoneByAReplayedOlderOCSPAnswer(t *testing.T) {
	p := newCRLPKI(t)
	p.serve(p.crl(1, []int64{5}))
	var mu sync.Mutex
	var replay []byte // nil: 503
	rsp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		body := replay
		mu.Unlock()
		if body == nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/ocsp-response")
		w.Write(body)
	}))
	t.Cleanup(rsp.Close)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := p.clock.Now()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(5), Subject: pkix.Name{CommonName: "client 5"}, NotBefore: now.Add(-time.Hour),
		NotAfter: now.Add(30 * 24 * time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		CRLDistributionPoints: []string{p.url}, OCSPServer: []string{rsp.URL + "/ocsp"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, key.Public(), p.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	v := p.verifier(false)
	var revoked *RevokedError
	if err := v.VerifyConnection(p.state(leaf)); !errors.As(err, &revoked) {
		t.Fatalf("responder down: the CRL's revocation not seen: %v", err)
	}
	oldGood, err := ocsp.CreateResponse(p.ca, p.ca, ocsp.Response{Status: ocsp.Good, SerialNumber: leaf.SerialNumber,
		ThisUpdate: now.Add(-2 * time.Hour), NextUpdate: now.Add(5 * 24 * time.Hour)}, p.key)
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	replay = oldGood
	mu.Unlock()
	p.clock.Advance(10 * time.Second) // the responder's failure backoff has passed; the CRL is still current
	if err := v.VerifyConnection(p.state(leaf)); !errors.As(err, &revoked) {
		t.Fatalf("the CRL held lists the client; the responder replays a good answer older than that CRL: %v", err)
	}
}

// One rule for OCSP and CRL revocations: a good answer strictly newer than
// the CRL (its thisUpdate after the CRL's) replaces the revocation the CRL
// listed (a certificateHold released), and one of the CRL's own
// thisUpdate does not.
func TestVerifierCRLRevocationGivesWayOnlyToAStrictlyNewerGoodAnswer(t *testing.T) {
	p := newCRLPKI(t)
	p.serve(p.crl(1, []int64{5})) // thisUpdate a minute ago
	crlThisUpdate := p.clock.Now().Add(-time.Minute)
	v := p.verifier(false)
	leaf := p.leaf(5, leafOpts{})
	var revoked *RevokedError
	if err := v.VerifyConnection(p.state(leaf)); !errors.As(err, &revoked) {
		t.Fatalf("the CRL's revocation not seen: %v", err)
	}
	staple := func(thisUpdate time.Time) []byte {
		der, err := ocsp.CreateResponse(p.ca, p.ca, ocsp.Response{Status: ocsp.Good, SerialNumber: leaf.SerialNumber,
			ThisUpdate: thisUpdate, NextUpdate: p.clock.Now().Add(24 * time.Hour)}, p.key)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	cs := p.state(leaf)
	cs.OCSPResponse = staple(crlThisUpdate)
	if err := v.VerifyConnection(cs); !errors.As(err, &revoked) {
		t.Fatalf("a good staple of the CRL's own thisUpdate: %v", err)
	}
	cs.OCSPResponse = staple(crlThisUpdate.Add(time.Second))
	if err := v.VerifyConnection(cs); err != nil {
		t.Fatalf("a good staple strictly newer than the CRL: %v", err)
	}
}

// A CRL entry's revocationDate after the CRL's own thisUpdate is not
// something the CRL knew then (RFC 5280 5.1.2.6: the date on which the
// revocation occurred; a later one is a CA's bug or a revocation planned
// ahead). The revocation learnt is dated by the CRL's thisUpdate, not by
// that date: a good answer strictly newer than the CRL replaces it, as for
// any CRL revocation. The RevokedError still reports the date as listed.
// Found when the revocation was dated by the later of the two, and an entry
// dated ten years ahead made one no good answer could ever replace.
func TestVerifierCRLRevocationIsNotDatedAfterTheCRLThatListsIt(t *testing.T) {
	p := newCRLPKI(t)
	crlThisUpdate := p.clock.Now().Add(-time.Minute)
	listed := p.clock.Now().Add(10 * 365 * 24 * time.Hour).Truncate(time.Second)
	p.serve(p.crl(1, []int64{5}, func(rl *x509.RevocationList) {
		rl.RevokedCertificateEntries[0].RevocationTime = listed
	}))
	v := p.verifier(false)
	leaf := p.leaf(5, leafOpts{})
	var revoked *RevokedError
	if err := v.VerifyConnection(p.state(leaf)); !errors.As(err, &revoked) {
		t.Fatalf("listed: %v", err)
	}
	if !revoked.RevokedAt.Equal(listed) {
		t.Fatalf("RevokedAt %v, want the date listed, %v", revoked.RevokedAt, listed)
	}
	p.clock.Advance(time.Hour)
	good, err := ocsp.CreateResponse(p.ca, p.ca, ocsp.Response{Status: ocsp.Good, SerialNumber: leaf.SerialNumber,
		ThisUpdate: crlThisUpdate.Add(time.Hour), NextUpdate: p.clock.Now().Add(24 * time.Hour)}, p.key)
	if err != nil {
		t.Fatal(err)
	}
	cs := p.state(leaf)
	cs.OCSPResponse = good
	if err := v.VerifyConnection(cs); err != nil {
		t.Fatalf("a good staple an hour newer than the CRL (whose entry is dated ten years ahead): %v", err)
	}
}

// Several distribution points of one issuer: the newest CRL held decides.

// The CRL number orders the CRLs of one issuer and scope, not of one URL:
// the newest CRL held decides across the issuer's distribution points. A
// certificate naming two mirrors of its CA's CRL is refused once the
// Verifier holds the newer CRL, from one mirror, which lists it, although
// an attacker's mirror keeps serving an older (still current) CRL. Found
// when the CRLs were ordered per URL and the first point holding a CRL
// answered.
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

// A certificate on hold (certificateHold, RFC 5280 5.3.1) that its CA
// releases: the only revocation a CRL lists that may be taken back.

// A certificate on hold (reasonCode certificateHold) that the CA releases
// is no longer listed by the CA's next CRL (ADCS's "unrevoke", openssl ca's
// hold removal). The current CRL held, newer than the one that listed the
// hold, that no longer lists the client lets it back in. Found when the
// hold was kept as a known revocation until NotAfter, so that with a
// CRL-only CA the client was locked out for the life of its certificate.
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
// listed the hold has expired, releases it, and the intermediate's clients
// are let back in. Found when the intermediate's revocation was kept until
// its NotAfter (years), every client of that CA refused under every policy.
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
// strictly newer than that CRL, not only to a staple (which TLS 1.2 clients
// cannot send at all): with FetchTimeout, the responder is asked about a
// hold (see TestVerifierCRLHoldIsAskedAboutAtTheResponderWithTheBackoff).
// Found when a known CRL revocation was refused before the responder was
// asked, until NotAfter.
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
