//lint:file-ignore SA1019 pkix.TBSCertificateList signs a CRL number x509.CreateRevocationList will not make (over 20 octets).

package crl

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"math/big"
	"testing"
	"time"
)

// A cRLNumber out of RFC 5280 5.2.3's range (INTEGER (0..MAX), at most 20
// octets) is refused as malformed: it is what orders a point's CRLs for
// the Verifier's rollback protection, kept for the life of the Verifier,
// so one CRL with a bogus huge number (a CA bug, a test CRL published by
// mistake) would make every later, correct CRL of that point a
// "rollback". Found by an attack session: such numbers were accepted. The
// largest number allowed (20 octets) is still accepted.
func TestParseRefusesACRLNumberOutOfRange(t *testing.T) {
	ca := newCA(t, "CA")
	huge := new(big.Int).Lsh(big.NewInt(1), 8*21) // 22 octets
	hugeValue, err := asn1.Marshal(huge)
	if err != nil {
		t.Fatal(err)
	}
	just21Value, err := asn1.Marshal(new(big.Int).Lsh(big.NewInt(1), 159)) // 00 80 00 ... : 21 octets
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		der  []byte
	}{
		{"negative", ca.crl(t, x509.RevocationList{Number: big.NewInt(-1)})},
		{"more than 20 octets", ca.rawCRL(t, pkix.TBSCertificateList{ThisUpdate: t0.Add(-time.Hour), NextUpdate: t0.Add(time.Hour),
			Extensions: []pkix.Extension{{Id: oidCRLNumber, Value: hugeValue}}})},
		{"of 21 octets", ca.rawCRL(t, pkix.TBSCertificateList{ThisUpdate: t0.Add(-time.Hour), NextUpdate: t0.Add(time.Hour),
			Extensions: []pkix.Extension{{Id: oidCRLNumber, Value: just21Value}}})},
	} {
		c, err := Parse(tc.der, ca.cert, opts())
		if !errors.Is(err, ErrMalformed) {
			num := "?"
			if c != nil {
				num = c.Number.String()
			}
			t.Errorf("a cRLNumber %s: accepted as number %s (err %v)", tc.name, num, err)
		}
	}
	// The largest number of 20 octets (2^159 - 1) is a number.
	largest := new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 159), big.NewInt(1))
	largestValue, err := asn1.Marshal(largest)
	if err != nil {
		t.Fatal(err)
	}
	if len(largestValue) != 22 { // tag, length, 20 octets
		t.Fatalf("2^159-1 encodes in %d bytes", len(largestValue))
	}
	c, err := Parse(ca.rawCRL(t, pkix.TBSCertificateList{ThisUpdate: t0.Add(-time.Hour), NextUpdate: t0.Add(time.Hour),
		Extensions: []pkix.Extension{{Id: oidCRLNumber, Value: largestValue}}}), ca.cert, opts())
	if err != nil || c.Number.Cmp(largest) != 0 {
		t.Fatalf("a cRLNumber of 20 octets: %v", err)
	}
}
