package ocspcheck

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"github.com/staplerkit/ocsp/internal/ocsptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/staplerkit/ocsp/internal/record"
	"github.com/staplerkit/ocsp/responder"
	"golang.org/x/crypto/ocsp"
)

func readPEMCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		t.Fatalf("%s: no PEM block", path)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// TestOpenSSLVectorsSHA1 runs OpenSSL's own delegated-responder vectors
// (real GlobalSign and CAcert responses, SHA-1 throughout): refused by
// default with ErrSHA1Signature, accepted with the legacy option.
func TestOpenSSLVectorsSHA1(t *testing.T) {
	dir := filepath.Join("testdata", "openssl-ocsp")
	at := time.Date(2012, 10, 23, 11, 0, 0, 0, time.UTC)
	for _, tc := range []struct{ name, leaf, issuer string }{
		{"D1", "D1_Cert_EE.pem", "D1_Issuer_ICA.pem"},
		{"D2", "D2_Cert_ICA.pem", "D2_Issuer_Root.pem"},
		{"D3", "D3_Cert_EE.pem", "D3_Issuer_Root.pem"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b64, err := os.ReadFile(filepath.Join(dir, tc.name+".ors"))
			if err != nil {
				t.Fatal(err)
			}
			raw, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(string(b64)), ""))
			if err != nil {
				t.Fatal(err)
			}
			leaf := readPEMCert(t, filepath.Join(dir, tc.leaf))
			issuer := readPEMCert(t, filepath.Join(dir, tc.issuer))
			_, err = Verify(raw, leaf, issuer, at, Options{Skew: 5 * time.Minute})
			if !errors.Is(err, ErrSHA1Signature) || !strings.Contains(err.Error(), "SHA-1") {
				t.Fatalf("by default: got %v, want ErrSHA1Signature", err)
			}
			e, signer, err := VerifySigner(raw, leaf, issuer, at, Options{Skew: 5 * time.Minute, AllowSHA1: true})
			if err != nil {
				t.Fatalf("with allowSHA1: %v", err)
			}
			if e.Status != record.Good || signer == nil {
				t.Fatalf("status %v, delegate %v: want good, signed by a delegate", e.Status, signer)
			}
			// The delegate's own SHA-1 signature is refused as SHA-1, not as
			// "not issued by the certificate's issuer".
			err = checkDelegate(signer, issuer, at, Options{Skew: 5 * time.Minute})
			if !errors.Is(err, ErrSHA1Signature) || strings.Contains(err.Error(), "not issued") {
				t.Fatalf("delegate by default: got %v, want ErrSHA1Signature", err)
			}
		})
	}
}

// TestSHA1ResponseSignatureRefused: a response signed by the issuer itself
// with SHA-1 is refused by default, accepted with allowSHA1.
func TestSHA1ResponseSignatureRefused(t *testing.T) {
	ca, err := responder.NewCA(responder.CAOptions{KeyType: responder.RSA})
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue(responder.LeafOptions{})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	raw, err := ocsp.CreateResponse(ca.Cert, ca.Cert, ocsp.Response{
		Status: ocsp.Good, SerialNumber: leaf.Cert.SerialNumber,
		ThisUpdate: now.Add(-time.Minute), NextUpdate: now.Add(time.Hour),
		SignatureAlgorithm: x509.SHA1WithRSA,
	}, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(raw, leaf.Cert, ca.Cert, now, Options{}); !errors.Is(err, ErrSHA1Signature) {
		t.Fatalf("by default: got %v, want ErrSHA1Signature", err)
	}
	if _, err := Verify(raw, leaf.Cert, ca.Cert, now, Options{AllowSHA1: true}); err != nil {
		t.Fatalf("with allowSHA1: %v", err)
	}
}

// TestDelegateCertificateRules: RFC 5280 4.2 and RFC 6960 4.2.2.2 on the
// delegated responder's own certificate.
func TestDelegateCertificateRules(t *testing.T) {
	f := ocsptest.NewOCSPFixture(t)
	opts := Options{Skew: 5 * time.Minute}
	for _, tc := range []struct {
		name string
		d    responder.DelegateOptions
		want error
	}{
		{"unknown critical extension", responder.DelegateOptions{ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 7}, Critical: true, Value: []byte{5, 0}}}}, ErrUnauthorizedSigner},
		{"unknown non-critical extension", responder.DelegateOptions{ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 7}, Value: []byte{5, 0}}}}, nil},
		{"keyUsage without digitalSignature", responder.DelegateOptions{KeyUsage: x509.KeyUsageKeyEncipherment}, ErrUnauthorizedSigner},
		{"keyUsage with digitalSignature", responder.DelegateOptions{KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment}, nil},
		{"notBefore within the skew", responder.DelegateOptions{NotBefore: f.Now.Add(4 * time.Minute), NotAfter: f.Now.Add(time.Hour)}, nil},
		{"notBefore beyond the skew", responder.DelegateOptions{NotBefore: f.Now.Add(6 * time.Minute), NotAfter: f.Now.Add(time.Hour)}, ErrUnauthorizedSigner},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := f.CA.NewDelegate(tc.d)
			if err != nil {
				t.Fatal(err)
			}
			raw := f.Sign(t, d.Cert, d.Key, true, nil)
			_, err = Verify(raw, f.Leaf.Cert, f.CA.Cert, f.Now, opts)
			if tc.want == nil && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}
