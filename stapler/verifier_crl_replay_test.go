package stapler

// A revocation a CRL lists is not undone by an OCSP answer older than the CRL.
// From an attacker session's findings on issue 29 (CRL checking).

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

// Found by an attack session: a revocation that the Verifier established from a CRL is not
// remembered as a known revocation, so a revoked mTLS client (TLS 1.3
// clients may staple for their own certificate) that is refused once gets
// in on its next handshake by stapling the good OCSP response it was given
// before its revocation (still within its nextUpdate). An OCSP revocation
// the Verifier learnt is kept and refuses such an older good staple (see
// the Verifier's doc); a CRL's must too: the CRL held is newer than the
// staple (its thisUpdate, and the entry's revocation date, are after the
// staple's thisUpdate).
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

// Found by an attack session (the same as the staple's, through the responder): the
// Verifier holds a CRL that lists the client; an attacker at the OCSP
// responder's host replays a good answer the CA signed before the
// revocation (still within its nextUpdate). The responder is asked before
// the CRL held, its good answer is taken, and the revoked client gets in.
// A CRL held is an answer known without a request: it should be read
// before a live OCSP request (the order the issue quotes: a valid staple,
// a cached answer, the CRL, then a live request), and an older OCSP
// answer should never outvote a newer CRL's revocation.
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
// any CRL revocation. Found by an attack session: dated by the later of
// the two, an entry dated ten years ahead made a revocation no good answer
// could ever be newer than, for the life of the certificate. The
// RevokedError still reports the date as listed.
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
