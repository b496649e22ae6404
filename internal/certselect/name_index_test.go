package certselect

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// TestTheNameTableHoldsEveryPlainNameOfTheList builds an Index over leaves
// with random names (exact, wildcard, upper case, a trailing dot, an IP
// address, a leading '-', none; some leaves not parsed) and compares its
// name table, and one buildExact makes of the same leaves, with the map
// the name index was before the table replaced it: the same names, the
// same candidates, the same values and key classes.
func TestTheNameTableHoldsEveryPlainNameOfTheList(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	const n = 3000
	pool := []string{"a.test", "A.Test", "*.test", "*.a.test", "b.test.", "1.2.3.4", "-x.test", "x-.test", ""}
	for i := range 200 {
		pool = append(pool, fmt.Sprintf("c%d.test", i), fmt.Sprintf("C%d.TEST", i), fmt.Sprintf("*.c%d.test", i))
	}
	certs := make(certList, n)
	leaves := make([]*x509.Certificate, n)
	vals := make([]*value, n)
	keys := []tls.Certificate{issue(t, p256), issue(t, ed25519Key), {}}
	for i := range certs {
		certs[i] = keys[r.IntN(len(keys))]
		certs[i].Leaf = nil
		if r.IntN(20) == 0 {
			continue // a leaf that did not parse
		}
		leaf := &x509.Certificate{}
		for range r.IntN(4) {
			leaf.DNSNames = append(leaf.DNSNames, pool[r.IntN(len(pool))])
		}
		if r.IntN(50) == 0 { // a name of its own
			leaf.DNSNames = append(leaf.DNSNames, fmt.Sprintf("own%d.test", i))
		}
		certs[i].Leaf, leaves[i] = leaf, leaf
		if r.IntN(2) == 0 {
			vals[i] = &value{i}
		}
	}
	x := New(certs, vals, nil)
	tab := buildExact(leaves, x.class, vals)
	ref := map[string]mapNameEntry{}
	for i, leaf := range leaves {
		if leaf == nil {
			continue
		}
		for _, name := range leaf.DNSNames {
			if name = strings.ToLower(name); plainHostname(name) {
				addToMapReference(ref, name, int32(i), vals[i], x.class[i])
			}
		}
	}
	absent := []string{"A.Test", "*.test", "b.test.", "1.2.3.4", "-x.test", ""}
	checkNameTable(t, tab, ref, absent)
	checkNameTable(t, x.exact, ref, absent) // the index's own table
}

// TestChooseHandsBackTheValueOfTheUsualChoice: a choice by a server name
// that the name's own certificate answers returns the value New was given
// for it; any other choice returns the zero value, for the caller to find
// by position.
func TestChooseHandsBackTheValueOfTheUsualChoice(t *testing.T) {
	certs := sixCerts(t)
	vals := make([]*value, len(certs))
	for i := range vals {
		vals[i] = &value{i}
	}
	x := New(certs, vals, nil)
	hello := func(name string) *tls.ClientHelloInfo {
		return &tls.ClientHelloInfo{ServerName: name, SupportedVersions: []uint16{tls.VersionTLS13},
			SignatureSchemes: []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256, tls.PSSWithSHA256}}
	}
	for _, tc := range []struct {
		name string
		pos  int
		val  *value
	}{
		{"other.test", 0, vals[0]},
		{"c.test", 5, vals[5]},
		{"a.test", 1, nil},   // two candidates: walked, not at hand
		{"y.b.test", 3, nil}, // a wildcard's
		{"", 0, nil},         // no server name: asked in turn
	} {
		pos, v, out := x.Choose(hello(tc.name))
		if pos != tc.pos || v != tc.val || out != nil {
			t.Errorf("%q: chose (%d, %v, %p), want (%d, %v, nil)", tc.name, pos, v, out, tc.pos, tc.val)
		}
	}
}

// TestSelectionByNameAllocatesNothing: choosing among many certificates by
// server name takes no allocation once the kind of hello has been seen,
// whether the name's own certificate is supported, or its candidates are
// walked (a name with an RSA certificate listed first, then an ECDSA one,
// for a client that supports only the second), TLS 1.3 or 1.2.
func TestSelectionByNameAllocatesNothing(t *testing.T) {
	var certs certList
	for i := range 20 {
		certs = append(certs, issue(t, p256, fmt.Sprintf("c%d.test", i)))
	}
	certs = append(certs, issue(t, rsa2048, "both.test"), issue(t, p256, "both.test"))
	x := New[*value](certs, nil, nil)
	for _, tc := range []struct {
		name    string
		version uint16
		want    int
	}{{"c17.test", tls.VersionTLS13, 17}, {"both.test", tls.VersionTLS13, 21}, {"c17.test", tls.VersionTLS12, 17}, {"both.test", tls.VersionTLS12, 21}} {
		hello := &tls.ClientHelloInfo{ServerName: tc.name, SupportedVersions: []uint16{tc.version},
			SignatureSchemes: []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256}, SupportedCurves: []tls.CurveID{tls.X25519, tls.CurveP256},
			SupportedPoints: []uint8{0}, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_AES_128_GCM_SHA256}}
		setHelloConfig(t, hello, &tls.Config{})
		if got, _, _ := x.Choose(hello); got != tc.want {
			t.Fatalf("%s (version %#x): chose %d, want %d", tc.name, tc.version, got, tc.want)
		}
		if n := testing.AllocsPerRun(1000, func() { x.Choose(hello) }); n != 0 {
			t.Errorf("%s (version %#x): %v allocations per choice, want 0", tc.name, tc.version, n)
		}
	}
}

// TestANameIsValidOnlyWhereX509FoldsItsCase: x509's VerifyHostname folds
// ASCII case only, so a leaf name with a character whose Unicode lower
// case is ASCII (U+212A KELVIN SIGN, whose lower case is 'k') is valid
// for no plain server name: "\u212a.test" is not "k.test", nor is
// "*.\u212a.test" a wildcard of "a.k.test". Such a name cannot come from a
// parsed certificate (x509 refuses a dNSName that is not IA5), but it can
// from a Leaf an application set itself, which crypto/tls reads as it is:
// the certificate must never be chosen for the name crypto/tls does not
// find valid.
func TestANameIsValidOnlyWhereX509FoldsItsCase(t *testing.T) {
	withNames := func(names ...string) tls.Certificate {
		c := issue(t, p256, "zz.test")
		leaf := *c.Leaf
		leaf.DNSNames = names
		c.Leaf = &leaf
		return c
	}
	certs := certList{
		issue(t, p256, "other.test"),
		withNames("\u212a.test"),
		withNames("*.\u212a.test"),
	}
	x := New[*value](certs, nil, nil)
	for _, name := range []string{"k.test", "a.k.test"} {
		for _, v := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
			h := &tls.ClientHelloInfo{
				ServerName:        name,
				SupportedVersions: []uint16{v},
				CipherSuites:      []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256},
				SignatureSchemes:  []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256},
				SupportedCurves:   []tls.CurveID{tls.CurveP256},
				SupportedPoints:   []uint8{0},
			}
			want := cryptoTLSChoice(h, certs)
			if got, _, _ := x.Choose(h); got != want {
				var err error
				if got > 0 {
					err = certs[got].Leaf.VerifyHostname(name)
				}
				t.Errorf("%q (version %#x): chose certificate %d (%q; x509: %v), crypto/tls chooses %d",
					name, v, got, certs[got].Leaf.DNSNames, err, want)
			}
		}
	}
}

// TestAChoiceByAWildcardNameToCertificateEntryAllocatesNothing: a config
// whose NameToCertificate was built from its leaves (BuildNameToCertificate,
// as legacy code calls it) holds a wildcard leaf's name as "*.b.test": a
// server name it covers ("x.b.test") misses the exact entry and is found
// under the wildcard's. That is a choice by server name like any other,
// and must allocate nothing either; so must a name found in neither.
func TestAChoiceByAWildcardNameToCertificateEntryAllocatesNothing(t *testing.T) {
	certs := sixCerts(t)
	byName := map[string]Target{"a.test": {Pos: 2}, "*.b.test": {Pos: 3}, "other.test": {Pos: 0}, "c.test": {Pos: 5}}
	x := New[*value](certs, nil, byName)
	for _, tc := range []struct {
		name string
		want int
	}{{"x.b.test", 3}, {"a.test", 2}, {"none.test", 0}} {
		hello := &tls.ClientHelloInfo{ServerName: tc.name, SupportedVersions: []uint16{tls.VersionTLS13},
			SignatureSchemes: []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256}, SupportedCurves: []tls.CurveID{tls.X25519}}
		setHelloConfig(t, hello, &tls.Config{})
		if got, _, _ := x.Choose(hello); got != tc.want {
			t.Fatalf("%s: chose %d, want %d", tc.name, got, tc.want)
		}
		if n := testing.AllocsPerRun(1000, func() { x.Choose(hello) }); n != 0 {
			t.Errorf("%s: %v allocations per choice, want 0", tc.name, n)
		}
	}
}
