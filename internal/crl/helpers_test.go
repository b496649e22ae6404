//lint:file-ignore SA1019 pkix.TBSCertificateList signs the CRLs x509.CreateRevocationList will not make (no nextUpdate, negative serials, duplicate extensions).

package crl

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	_ "crypto/sha1"
	_ "crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"testing"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// testCA is an issuer with its key.
type testCA struct {
	cert *x509.Certificate
	key  crypto.Signer
}

var t0 = time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)

func newCA(t testing.TB, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             t0.Add(-time.Hour),
		NotAfter:              t0.Add(365 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key}
}

// issue makes a certificate with serial and the given distribution
// points extension value (none when nil).
func (ca *testCA) issue(t testing.TB, serial *big.Int, isCA bool, dpExt []byte) *x509.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "leaf " + serial.String()},
		NotBefore:             t0.Add(-time.Hour),
		NotAfter:              t0.Add(30 * 24 * time.Hour),
		BasicConstraintsValid: isCA,
		IsCA:                  isCA,
	}
	if dpExt != nil {
		tmpl.ExtraExtensions = []pkix.Extension{{Id: oidCRLDistPoints, Value: dpExt}}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// crl makes a CRL with x509.CreateRevocationList.
func (ca *testCA) crl(t testing.TB, tmpl x509.RevocationList) []byte {
	t.Helper()
	if tmpl.Number == nil {
		tmpl.Number = big.NewInt(1)
	}
	if tmpl.ThisUpdate.IsZero() {
		tmpl.ThisUpdate = t0.Add(-time.Hour)
	}
	if tmpl.NextUpdate.IsZero() {
		tmpl.NextUpdate = t0.Add(24 * time.Hour)
	}
	der, err := x509.CreateRevocationList(rand.Reader, &tmpl, ca.cert, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

var oidECDSAWithSHA256 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}

// rawCRL signs tbs as it is, for what x509.CreateRevocationList will not
// make (no nextUpdate, negative serials, duplicate extensions).
func (ca *testCA) rawCRL(t testing.TB, tbs pkix.TBSCertificateList) []byte {
	t.Helper()
	return ca.rawCRLAlg(t, tbs, false)
}

var oidECDSAWithSHA1 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 1}

// rawCRLAlg is rawCRL signed with ECDSA and SHA-256, or SHA-1.
func (ca *testCA) rawCRLAlg(t testing.TB, tbs pkix.TBSCertificateList, sha1 bool) []byte {
	t.Helper()
	tbs.Version = 1
	tbs.Signature = pkix.AlgorithmIdentifier{Algorithm: oidECDSAWithSHA256}
	hash := crypto.SHA256
	if sha1 {
		tbs.Signature.Algorithm, hash = oidECDSAWithSHA1, crypto.SHA1
	}
	var issuer pkix.RDNSequence
	if _, err := asn1.Unmarshal(ca.cert.RawSubject, &issuer); err != nil {
		t.Fatal(err)
	}
	tbs.Issuer = issuer
	raw, err := asn1.Marshal(tbs)
	if err != nil {
		t.Fatal(err)
	}
	hh := hash.New()
	hh.Write(raw)
	sig, err := ca.key.Sign(rand.Reader, hh.Sum(nil), hash)
	if err != nil {
		t.Fatal(err)
	}
	der, err := asn1.Marshal(pkix.CertificateList{
		TBSCertList:        pkix.TBSCertificateList{Raw: raw},
		SignatureAlgorithm: tbs.Signature,
		SignatureValue:     asn1.BitString{Bytes: sig, BitLength: 8 * len(sig)},
	})
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// idp encodes an issuingDistributionPoint: full-name URIs, then the
// [1]..[5] flags that are true.
func idp(uris []string, flags ...int) []byte {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		if len(uris) > 0 {
			b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
					for _, u := range uris {
						b.AddASN1(cbasn1.Tag(6).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes([]byte(u)) })
					}
				})
			})
		}
		for _, f := range flags {
			b.AddASN1(cbasn1.Tag(uint8(f)).ContextSpecific(), func(b *cryptobyte.Builder) {
				if f == 3 {
					b.AddBytes([]byte{7, 0x80}) // onlySomeReasons: unused bit
				} else {
					b.AddUint8(0xff)
				}
			})
		}
	})
	return b.BytesOrPanic()
}

// dp is one DistributionPoint of a cRLDistributionPoints value.
type dp struct {
	uris      []string
	reasons   bool
	crlIssuer bool
}

func dpExtension(points ...dp) []byte {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		for _, p := range points {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				if len(p.uris) > 0 {
					b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
						b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
							for _, u := range p.uris {
								b.AddASN1(cbasn1.Tag(6).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes([]byte(u)) })
							}
						})
					})
				}
				if p.reasons {
					b.AddASN1(cbasn1.Tag(1).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes([]byte{7, 0x80}) })
				}
				if p.crlIssuer {
					b.AddASN1(cbasn1.Tag(2).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
						b.AddASN1(cbasn1.Tag(6).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes([]byte("http://other.test/")) })
					})
				}
			})
		}
	})
	return b.BytesOrPanic()
}

// sign wraps tbs, a TBSCertList as it is (well-formed or not), in a
// CertificateList signed by ca with ECDSA and SHA-256.
func (ca *testCA) sign(t testing.TB, tbs []byte) []byte {
	t.Helper()
	h := crypto.SHA256.New()
	h.Write(tbs)
	sig, err := ca.key.Sign(rand.Reader, h.Sum(nil), crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(tbs)
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { b.AddASN1ObjectIdentifier(oidECDSAWithSHA256) })
		b.AddASN1BitString(sig)
	})
	return b.BytesOrPanic()
}
