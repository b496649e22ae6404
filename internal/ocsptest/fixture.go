package ocsptest

import (
	"crypto"
	"crypto/x509"
	"testing"
	"time"

	"github.com/staplerkit/ocsp/responder"
	"golang.org/x/crypto/ocsp"
)

// OCSPFixture is a test CA, a leaf it issued, a delegated responder of
// it, and a time, for the tests of OCSP verification.
type OCSPFixture struct {
	CA       *responder.CA
	Leaf     *responder.Leaf
	Delegate *responder.Signer
	Now      time.Time
}

// NewOCSPFixture makes an OCSPFixture at the current second.
func NewOCSPFixture(t testing.TB) *OCSPFixture {
	t.Helper()
	ca, err := responder.NewCA(responder.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue(responder.LeafOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d, err := ca.NewDelegate(responder.DelegateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return &OCSPFixture{CA: ca, Leaf: leaf, Delegate: d, Now: time.Now().Truncate(time.Second)}
}

// Sign makes a response about the leaf, changed by mod, signed by key with
// signerCert named as the responder and embedded when embed is set.
func (f *OCSPFixture) Sign(t testing.TB, signerCert *x509.Certificate, key crypto.Signer, embed bool, mod func(*ocsp.Response)) []byte {
	t.Helper()
	tmpl := ocsp.Response{
		Status:       ocsp.Good,
		SerialNumber: f.Leaf.Cert.SerialNumber,
		ThisUpdate:   f.Now.Add(-time.Minute),
		NextUpdate:   f.Now.Add(time.Hour),
	}
	if embed {
		tmpl.Certificate = signerCert
	}
	if mod != nil {
		mod(&tmpl)
	}
	der, err := ocsp.CreateResponse(f.CA.Cert, signerCert, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}
