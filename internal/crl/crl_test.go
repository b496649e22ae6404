//lint:file-ignore SA1019 pkix.TBSCertificateList signs the CRLs x509.CreateRevocationList will not make (no nextUpdate, negative serials, duplicate extensions).

package crl

import (
	"bytes"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"math/big"
	"math/rand/v2"
	"testing"
	"time"

	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

const testURL = "http://crl.test/ca.crl"

func opts() Options { return Options{URL: testURL, Now: t0, Skew: 5 * time.Minute} }

var revokedAt = t0.Add(-30 * time.Minute)

func TestParseRefusesWhatCannotBeReliedOn(t *testing.T) {
	ca := newCA(t, "CA")
	sameName := newCA(t, "CA") // another key under the CA's name
	other := newCA(t, "Other CA")
	entry := func(exts ...pkix.Extension) []x509.RevocationListEntry {
		return []x509.RevocationListEntry{{SerialNumber: big.NewInt(5), RevocationTime: revokedAt, ExtraExtensions: exts}}
	}
	unknown := asn1.ObjectIdentifier{1, 2, 3, 4}
	deltaValue, _ := asn1.Marshal(big.NewInt(1))
	certIssuer, _ := asn1.Marshal([]asn1.RawValue{{Class: 2, Tag: 6, Bytes: []byte("http://x")}})
	relativeIDP := []byte{0x30, 0x06, 0xa0, 0x04, 0xa1, 0x02, 0x31, 0x00} // nameRelativeToCRLIssuer
	for _, tc := range []struct {
		name string
		der  []byte
		opts func(*Options)
		want error // nil: accepted
	}{
		{"a current CRL of the issuer", ca.crl(t, x509.RevocationList{RevokedCertificateEntries: entry()}), nil, nil},
		{"signed by another key of the same name", sameName.crl(t, x509.RevocationList{}), nil, ErrWrongIssuer},
		{"of another issuer", other.crl(t, x509.RevocationList{}), nil, ErrWrongIssuer},
		{"expired", ca.crl(t, x509.RevocationList{ThisUpdate: t0.Add(-48 * time.Hour), NextUpdate: t0.Add(-time.Second)}), nil, ErrExpired},
		{"nextUpdate exactly now", ca.crl(t, x509.RevocationList{NextUpdate: t0}), nil, ErrExpired},
		{"thisUpdate ahead beyond the skew", ca.crl(t, x509.RevocationList{ThisUpdate: t0.Add(6 * time.Minute)}), nil, ErrNotYetValid},
		{"thisUpdate ahead within the skew", ca.crl(t, x509.RevocationList{ThisUpdate: t0.Add(4 * time.Minute)}), nil, nil},
		{"thisUpdate ahead with no skew", ca.crl(t, x509.RevocationList{ThisUpdate: t0.Add(time.Second)}), func(o *Options) { o.Skew = 0 }, ErrNotYetValid},
		{"no nextUpdate", ca.rawCRL(t, pkix.TBSCertificateList{ThisUpdate: t0.Add(-time.Hour)}), nil, ErrNoNextUpdate},
		{"a delta CRL", ca.crl(t, x509.RevocationList{ExtraExtensions: []pkix.Extension{{Id: oidDeltaCRLIndicator, Critical: true, Value: deltaValue}}}), nil, ErrDelta},
		{"an indirect CRL by its issuing distribution point", ca.crl(t, x509.RevocationList{ExtraExtensions: []pkix.Extension{{Id: oidIssuingDP, Critical: true, Value: idp(nil, 4)}}}), nil, ErrIndirect},
		{"an indirect CRL by an entry's certificateIssuer", ca.crl(t, x509.RevocationList{RevokedCertificateEntries: entry(pkix.Extension{Id: oidCertificateIssuer, Critical: true, Value: certIssuer})}), nil, ErrIndirect},
		{"an unknown critical CRL extension", ca.crl(t, x509.RevocationList{ExtraExtensions: []pkix.Extension{{Id: unknown, Critical: true, Value: []byte{5, 0}}}}), nil, ErrCriticalExtension},
		{"freshestCRL marked critical", ca.crl(t, x509.RevocationList{ExtraExtensions: []pkix.Extension{{Id: oidFreshestCRL, Critical: true, Value: []byte{0x30, 0}}}}), nil, ErrCriticalExtension},
		{"an unknown non-critical CRL extension", ca.crl(t, x509.RevocationList{ExtraExtensions: []pkix.Extension{{Id: unknown, Value: []byte{5, 0}}}}), nil, nil},
		{"an unknown critical entry extension", ca.crl(t, x509.RevocationList{RevokedCertificateEntries: entry(pkix.Extension{Id: unknown, Critical: true, Value: []byte{5, 0}})}), nil, ErrCriticalExtension},
		{"an unknown non-critical entry extension", ca.crl(t, x509.RevocationList{RevokedCertificateEntries: entry(pkix.Extension{Id: unknown, Value: []byte{5, 0}})}), nil, nil},
		{"an issuing distribution point naming the URL", ca.crl(t, x509.RevocationList{ExtraExtensions: []pkix.Extension{{Id: oidIssuingDP, Critical: true, Value: idp([]string{"ldap://x", testURL})}}}), nil, nil},
		{"an issuing distribution point naming another URL", ca.crl(t, x509.RevocationList{ExtraExtensions: []pkix.Extension{{Id: oidIssuingDP, Critical: true, Value: idp([]string{"http://crl.test/other.crl"})}}}), nil, ErrScope},
		{"an issuing distribution point with a relative name", ca.crl(t, x509.RevocationList{ExtraExtensions: []pkix.Extension{{Id: oidIssuingDP, Critical: true, Value: relativeIDP}}}), nil, ErrScope},
		{"some reasons only", ca.crl(t, x509.RevocationList{ExtraExtensions: []pkix.Extension{{Id: oidIssuingDP, Critical: true, Value: idp(nil, 3)}}}), nil, ErrScope},
		{"attribute certificates only", ca.crl(t, x509.RevocationList{ExtraExtensions: []pkix.Extension{{Id: oidIssuingDP, Critical: true, Value: idp(nil, 5)}}}), nil, ErrScope},
		{"user and CA certificates only", ca.crl(t, x509.RevocationList{ExtraExtensions: []pkix.Extension{{Id: oidIssuingDP, Critical: true, Value: idp(nil, 1, 2)}}}), nil, ErrMalformed},
		{"an extension twice", ca.rawCRL(t, pkix.TBSCertificateList{ThisUpdate: t0.Add(-time.Hour), NextUpdate: t0.Add(time.Hour),
			Extensions: []pkix.Extension{{Id: oidCRLNumber, Value: []byte{2, 1, 1}}, {Id: oidCRLNumber, Value: []byte{2, 1, 2}}}}), nil, ErrMalformed},
		{"bytes after the CRL", append(ca.crl(t, x509.RevocationList{}), 0), nil, ErrMalformed},
		{"not a CRL", []byte("<html>not found</html>"), nil, ErrMalformed},
		{"empty", nil, nil, ErrMalformed},
		{"PEM", pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: ca.crl(t, x509.RevocationList{})}), nil, nil},
		{"PEM of another type", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.crl(t, x509.RevocationList{})}), nil, ErrMalformed},
		{"signed with SHA-1", ca.rawCRLAlg(t, pkix.TBSCertificateList{ThisUpdate: t0.Add(-time.Hour), NextUpdate: t0.Add(time.Hour)}, true), nil, ErrSHA1},
		{"signed with SHA-1, allowed", ca.rawCRLAlg(t, pkix.TBSCertificateList{ThisUpdate: t0.Add(-time.Hour), NextUpdate: t0.Add(time.Hour)}, true), func(o *Options) { o.AllowSHA1 = true }, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := opts()
			if tc.opts != nil {
				tc.opts(&o)
			}
			c, err := Parse(tc.der, ca.cert, o)
			switch {
			case tc.want == nil && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != nil && !errors.Is(err, tc.want):
				t.Fatalf("got %v (CRL %v), want %v", err, c != nil, tc.want)
			case tc.want != nil && c != nil:
				t.Fatal("a CRL returned with the error")
			}
		})
	}
}

func TestLookupFindsTheRevokedSerialWithItsTimeAndReason(t *testing.T) {
	ca := newCA(t, "CA")
	der := ca.crl(t, x509.RevocationList{Number: big.NewInt(7), RevokedCertificateEntries: []x509.RevocationListEntry{
		{SerialNumber: big.NewInt(5), RevocationTime: revokedAt, ReasonCode: 1},
		{SerialNumber: big.NewInt(0x80), RevocationTime: revokedAt.Add(time.Minute)},
	}})
	c, err := Parse(der, ca.cert, opts())
	if err != nil {
		t.Fatal(err)
	}
	if c.Number.Int64() != 7 || c.Len() != 2 || !c.ThisUpdate.Equal(t0.Add(-time.Hour)) || !c.NextUpdate.Equal(t0.Add(24*time.Hour)) {
		t.Fatalf("number %v, %d entries, %v - %v", c.Number, c.Len(), c.ThisUpdate, c.NextUpdate)
	}
	revoked := ca.issue(t, big.NewInt(5), false, nil)
	if e, ok := c.LookupCert(revoked); !ok || !e.RevokedAt.Equal(revokedAt) || e.Reason != 1 {
		t.Fatalf("revoked certificate: %v %v", e, ok)
	}
	// 0x80 is encoded 00 80: found by its encoding, not confused with -128.
	if e, ok := c.LookupCert(ca.issue(t, big.NewInt(0x80), false, nil)); !ok || e.Reason != 0 {
		t.Fatalf("serial 0x80: %v %v", e, ok)
	}
	if _, ok := c.LookupCert(ca.issue(t, big.NewInt(6), false, nil)); ok {
		t.Fatal("a good certificate found in the CRL")
	}
}

func TestLookupAgreesWithAMapOnRandomSerials(t *testing.T) {
	ca := newCA(t, "CA")
	r := rand.New(rand.NewPCG(1, 2))
	randSerial := func() *big.Int {
		b := make([]byte, 1+r.IntN(20))
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		n := new(big.Int).SetBytes(b)
		if r.IntN(8) == 0 {
			n.Neg(n) // negative serials exist in the wild; encoded as two's complement
		}
		return n
	}
	listed := map[string]time.Time{}
	var entries []pkix.RevokedCertificate
	for i := range 3000 {
		n := randSerial()
		at := revokedAt.Add(-time.Duration(i) * time.Second)
		if _, dup := listed[string(intBytes(n))]; !dup {
			listed[string(intBytes(n))] = at
		}
		entries = append(entries, pkix.RevokedCertificate{SerialNumber: n, RevocationTime: at})
		if i%100 == 0 { // the same serial twice: the first listing stands
			entries = append(entries, pkix.RevokedCertificate{SerialNumber: n, RevocationTime: at.Add(time.Hour)})
		}
	}
	c, err := Parse(ca.rawCRL(t, pkix.TBSCertificateList{ThisUpdate: t0.Add(-time.Hour), NextUpdate: t0.Add(time.Hour), RevokedCertificates: entries}), ca.cert, opts())
	if err != nil {
		t.Fatal(err)
	}
	if c.Len() != len(listed) {
		t.Fatalf("%d entries indexed, want %d", c.Len(), len(listed))
	}
	for k, at := range listed {
		if e, ok := c.Lookup([]byte(k)); !ok || !e.RevokedAt.Equal(at) {
			t.Fatalf("serial %x: %v %v, want revoked at %v", k, e, ok, at)
		}
	}
	for range 3000 {
		k := intBytes(randSerial())
		_, want := listed[string(k)]
		if _, ok := c.Lookup(k); ok != want {
			t.Fatalf("serial %x: found %v, want %v", k, ok, want)
		}
	}
}

func TestIntBytesIsTheDEREncoding(t *testing.T) {
	for _, n := range []int64{0, 1, 127, 128, 255, 256, -1, -127, -128, -129, -256, -257, 1 << 40, -(1 << 40)} {
		der, _ := asn1.Marshal(big.NewInt(n))
		if got := intBytes(big.NewInt(n)); !bytes.Equal(got, der[2:]) {
			t.Fatalf("%d: %x, want %x", n, got, der[2:])
		}
	}
}

func TestLookupOfACertificateAllocatesNothing(t *testing.T) {
	ca := newCA(t, "CA")
	var entries []x509.RevocationListEntry
	for i := range 1000 {
		entries = append(entries, x509.RevocationListEntry{SerialNumber: big.NewInt(int64(i) * 7919), RevocationTime: revokedAt})
	}
	c, err := Parse(ca.crl(t, x509.RevocationList{RevokedCertificateEntries: entries}), ca.cert, opts())
	if err != nil {
		t.Fatal(err)
	}
	hit, miss := ca.issue(t, big.NewInt(7919*500), false, nil), ca.issue(t, big.NewInt(3), false, nil)
	if n := testing.AllocsPerRun(100, func() {
		if _, ok := c.LookupCert(hit); !ok {
			panic("not found")
		}
		if _, ok := c.LookupCert(miss); ok {
			panic("found")
		}
	}); n != 0 {
		t.Fatalf("%v allocations per lookup", n)
	}
}

func TestCoversRespectsUserAndCAOnly(t *testing.T) {
	ca := newCA(t, "CA")
	leaf, subCA := ca.issue(t, big.NewInt(2), false, nil), ca.issue(t, big.NewInt(3), true, nil)
	parse := func(flags ...int) *CRL {
		c, err := Parse(ca.crl(t, x509.RevocationList{ExtraExtensions: []pkix.Extension{{Id: oidIssuingDP, Critical: true, Value: idp([]string{testURL}, flags...)}}}), ca.cert, opts())
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	all, users, cas := parse(), parse(1), parse(2)
	for _, tc := range []struct {
		c      *CRL
		cert   *x509.Certificate
		covers bool
	}{{all, leaf, true}, {all, subCA, true}, {users, leaf, true}, {users, subCA, false}, {cas, leaf, false}, {cas, subCA, true}} {
		if err := tc.c.Covers(tc.cert); (err == nil) != tc.covers || err != nil && !errors.Is(err, ErrScope) {
			t.Errorf("user %v, CA %v, certificate CA %v: %v", tc.c.onlyUser, tc.c.onlyCA, tc.cert.IsCA, err)
		}
		if got := tc.c.Scope().CoversKind(tc.cert.IsCA); got != tc.covers {
			t.Errorf("user %v, CA %v: Scope %d CoversKind(%v) = %v", tc.c.onlyUser, tc.c.onlyCA, tc.c.Scope(), tc.cert.IsCA, got)
		}
	}
	if all.Scope() != ScopeAll || users.Scope() != ScopeUsers || cas.Scope() != ScopeCAs {
		t.Errorf("scopes %d %d %d", all.Scope(), users.Scope(), cas.Scope())
	}
}

func TestDistributionPointsSkipsIndirectAndPartialPoints(t *testing.T) {
	ca := newCA(t, "CA")
	for _, tc := range []struct {
		name   string
		points []dp
		want   []string
	}{
		{"one http URL", []dp{{uris: []string{testURL}}}, []string{testURL}},
		{"ldap and https", []dp{{uris: []string{"ldap://dir/cn=CA", "https://crl.test/b.crl"}}}, []string{"https://crl.test/b.crl"}},
		{"two points, the same URL twice", []dp{{uris: []string{testURL}}, {uris: []string{testURL, "http://b.test/c"}}}, []string{testURL, "http://b.test/c"}},
		{"a point with a cRLIssuer (indirect)", []dp{{uris: []string{testURL}, crlIssuer: true}}, nil},
		{"a point for some reasons only", []dp{{uris: []string{testURL}, reasons: true}}, nil},
		{"a partial point and a full one", []dp{{uris: []string{"http://a.test/"}, reasons: true}, {uris: []string{testURL}}}, []string{testURL}},
		{"none", nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ext []byte
			if tc.points != nil {
				ext = dpExtension(tc.points...)
			}
			got, err := DistributionPoints(ca.issue(t, big.NewInt(2), false, ext))
			if len(tc.want) == 0 {
				if !errors.Is(err, ErrNoDistributionPoint) {
					t.Fatalf("got %q, %v", got, err)
				}
				return
			}
			if err != nil || len(got) != len(tc.want) {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("got %q, want %q", got, tc.want)
				}
			}
		})
	}
}

func TestReadTimeRefusesWhatIsNotADERTime(t *testing.T) {
	for _, tc := range []struct {
		in   string
		tag  cbasn1.Tag
		want int64 // -1: refused
	}{
		{"261207120000Z", cbasn1.UTCTime, t0.Unix()},
		{"491231235959Z", cbasn1.UTCTime, time.Date(2049, 12, 31, 23, 59, 59, 0, time.UTC).Unix()},
		{"500101000000Z", cbasn1.UTCTime, time.Date(1950, 1, 1, 0, 0, 0, 0, time.UTC).Unix()},
		{"20261207120000Z", cbasn1.GeneralizedTime, t0.Unix()},
		{"ab1207120000Z", cbasn1.UTCTime, -1}, // not a year, not 1999
		{"-11207120000Z", cbasn1.UTCTime, -1},
		{"2026120712000Z", cbasn1.GeneralizedTime, -1},
		{"261307120000Z", cbasn1.UTCTime, -1},
		{"261231240000Z", cbasn1.UTCTime, -1},
		{"261207120060Z", cbasn1.UTCTime, -1},
		{"261207120000+", cbasn1.UTCTime, -1},
		{"261207120000Z", cbasn1.GeneralizedTime, -1},
		{"", cbasn1.UTCTime, -1},
	} {
		got, ok := readTime([]byte(tc.in), tc.tag)
		if !ok {
			got = -1
		}
		if got != tc.want {
			t.Errorf("%q: %d, want %d", tc.in, got, tc.want)
		}
	}
}

func TestRangeDistributionPointsAllocatesNothing(t *testing.T) {
	ca := newCA(t, "CA")
	cert := ca.issue(t, big.NewInt(2), false, dpExtension(dp{uris: []string{"ldap://dir/x", testURL}}, dp{uris: []string{"HTTPS://b.test/c.crl"}}))
	var got []string
	if err := RangeDistributionPoints(cert, func(u []byte) bool { got = append(got, string(u)); return true }); err != nil || len(got) != 2 || got[0] != testURL || got[1] != "HTTPS://b.test/c.crl" {
		t.Fatalf("%q, %v", got, err)
	}
	n := 0
	if allocs := testing.AllocsPerRun(100, func() {
		RangeDistributionPoints(cert, func(u []byte) bool { n += len(u); return true })
	}); allocs != 0 {
		t.Fatalf("%v allocations per walk", allocs)
	}
}
