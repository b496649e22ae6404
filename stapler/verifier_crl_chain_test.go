package stapler

// The CA certificates of a client's chain are checked against their CRLs.
// From an attacker session's findings on issue 29 (CRL checking).

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"testing"
	"time"
)

// intermediateChain is the connection state of a client (serial 5) whose
// certificate an intermediate (serial 77, whose CRL distribution point is
// the root's CRL) issued; the intermediate's own CRL, at s, lists nothing.
func intermediateChain(t *testing.T, p *crlPKI, s *pointServer) tls.ConnectionState {
	inter, interKey := issueIntermediate(t, p, 77, []string{p.url})
	// The intermediate's own CRL, listing nothing.
	rl := &x509.RevocationList{Number: big.NewInt(1), ThisUpdate: p.clock.Now().Add(-time.Minute), NextUpdate: p.clock.Now().Add(24 * time.Hour)}
	interCRL, err := x509.CreateRevocationList(rand.Reader, rl, inter, interKey)
	if err != nil {
		t.Fatal(err)
	}
	s.serve("/int.crl", interCRL)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := p.clock.Now()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(5), Subject: pkix.Name{CommonName: "client of a revoked intermediate"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(30 * 24 * time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		CRLDistributionPoints: []string{s.url("/int.crl")}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, inter, key.Public(), interKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	cs := tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf, inter}, VerifiedChains: [][]*x509.Certificate{{leaf, inter, p.ca}}}
	return cs
}

// Each CA certificate below the root is checked against the CRL of its own
// distribution points, as nginx (ssl_crl: X509_V_FLAG_CRL_CHECK_ALL) and
// Envoy (unless only_verify_leaf_cert_crl) do: a client whose certificate
// was issued by an intermediate CA that the root has revoked (listed on
// the root's CRL, at the intermediate's CRL distribution point) is
// refused, under soft fail too (a revocation is refused whatever the
// policy). Found by an attack session: only the leaf was checked.
func TestVerifierCRLRevokedIntermediateIsRefused(t *testing.T) {
	p := newCRLPKI(t)
	cs := intermediateChain(t, p, newPointServer(t))
	p.serve(p.crl(1, []int64{77})) // the root's CRL: the intermediate is revoked
	var revoked *RevokedError
	for _, hard := range []bool{true, false} {
		if err := p.verifier(hard).VerifyConnection(cs); !errors.As(err, &revoked) || revoked.Serial.Int64() != 77 {
			t.Fatalf("a client under an intermediate the root's CRL revokes, HardFail %v: %v (root CRL downloads %d)", hard, err, p.crlHits())
		}
	}
}

// An intermediate the root's CRL does not list is allowed; one whose CRL
// cannot be had is refused under HardFail, allowed under soft fail, as a
// leaf's is.
func TestVerifierCRLIntermediateSoftAndHardFail(t *testing.T) {
	p := newCRLPKI(t)
	cs := intermediateChain(t, p, newPointServer(t))
	if err := p.verifier(true).VerifyConnection(cs); err == nil {
		t.Fatal("HardFail, the root's CRL not to be had: accepted")
	} else if se := (*StapleError)(nil); !errors.As(err, &se) || !errors.Is(err, ErrHTTPStatus) {
		t.Fatalf("HardFail, the root's CRL not to be had: %v", err)
	}
	if err := p.verifier(false).VerifyConnection(cs); err != nil {
		t.Fatalf("soft fail, the root's CRL not to be had: %v", err)
	}
	p.serve(p.crl(1, []int64{78}))
	if err := p.verifier(true).VerifyConnection(cs); err != nil {
		t.Fatalf("HardFail, the root's CRL does not list the intermediate: %v", err)
	}
}
