//lint:file-ignore SA1019 pkix.TBSCertificateList signs the CRLs x509.CreateRevocationList will not make (no nextUpdate, negative serials, duplicate extensions).

package crl

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"testing"
	"time"
)

// seedCRLs are real CRLs of ca in the shapes Parse meets: entries with and
// without reasons, an issuing distribution point, the refused kinds.
func seedCRLs(t testing.TB, ca *testCA) [][]byte {
	entries := []x509.RevocationListEntry{
		{SerialNumber: big.NewInt(5), RevocationTime: revokedAt, ReasonCode: 1},
		{SerialNumber: new(big.Int).Lsh(big.NewInt(1), 150), RevocationTime: revokedAt},
	}
	deltaValue, _ := asn1.Marshal(big.NewInt(1))
	return [][]byte{
		ca.crl(t, x509.RevocationList{}),
		ca.crl(t, x509.RevocationList{RevokedCertificateEntries: entries}),
		ca.crl(t, x509.RevocationList{RevokedCertificateEntries: entries, ExtraExtensions: []pkix.Extension{{Id: oidIssuingDP, Critical: true, Value: idp([]string{testURL}, 1)}}}),
		ca.crl(t, x509.RevocationList{ExtraExtensions: []pkix.Extension{{Id: oidDeltaCRLIndicator, Critical: true, Value: deltaValue}}}),
		ca.rawCRL(t, pkix.TBSCertificateList{ThisUpdate: t0.Add(-time.Hour), NextUpdate: t0.Add(time.Hour), RevokedCertificates: []pkix.RevokedCertificate{{SerialNumber: big.NewInt(-3), RevocationTime: revokedAt}}}),
	}
}

// Nothing in a CRL from the network may panic Parse or a lookup in what it
// accepted. As a unit test it runs the seeds.
func FuzzParse(f *testing.F) {
	ca := newCA(f, "CA")
	for _, der := range seedCRLs(f, ca) {
		f.Add(der, []byte{5})
	}
	f.Fuzz(func(t *testing.T, der, serial []byte) {
		c, err := Parse(der, ca.cert, opts())
		if err != nil {
			return
		}
		c.Lookup(serial)
		c.Covers(ca.cert)
	})
}

// The parts Parse reaches only past the signature, fuzzed on their own:
// an issuing distribution point and a certificate's distribution points.
func FuzzIssuingDistributionPoint(f *testing.F) {
	f.Add(idp([]string{testURL}, 1), testURL)
	f.Add(idp(nil, 3, 4, 5), testURL)
	f.Add([]byte{0x30, 0x06, 0xa0, 0x04, 0xa1, 0x02, 0x31, 0x00}, "")
	f.Add(dpExtension(dp{uris: []string{testURL}}, dp{uris: []string{"http://a"}, reasons: true, crlIssuer: true}), "")
	f.Fuzz(func(t *testing.T, value []byte, url string) {
		var c CRL
		if c.readIssuingDP(value, url) == nil && c.onlyUser && c.onlyCA {
			t.Fatal("accepted a CRL for user and CA certificates only")
		}
		DistributionPoints(&x509.Certificate{Extensions: []pkix.Extension{{Id: oidCRLDistPoints, Value: value}}})
	})
}

// FuzzParseSigned signs whatever TBSCertList the fuzzer makes with the
// CA's key, so that what Parse reads only past the signature (the
// entries, their extensions and times, the CRL's extensions) is reached
// by hostile bytes too.
func FuzzParseSigned(f *testing.F) {
	ca := newCA(f, "CA")
	for _, der := range seedCRLs(f, ca) {
		var list struct {
			TBS asn1.RawValue
			Alg asn1.RawValue
			Sig asn1.BitString
		}
		if _, err := asn1.Unmarshal(der, &list); err != nil {
			f.Fatal(err)
		}
		f.Add(list.TBS.FullBytes, []byte{5})
	}
	f.Fuzz(func(t *testing.T, tbs, serial []byte) {
		c, err := Parse(ca.sign(t, tbs), ca.cert, opts())
		if err != nil {
			return
		}
		c.Lookup(serial)
		c.Covers(ca.cert)
		for i := range c.Len() {
			start := uint32(0)
			if i > 0 {
				start = c.ends[i-1]
			}
			if _, ok := c.Lookup(c.keys[start:c.ends[i]]); !ok {
				t.Fatalf("entry %d not found by its own serial", i)
			}
		}
	})
}
