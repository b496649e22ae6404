package certselect

import (
	"crypto/tls"
	"testing"
)

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
