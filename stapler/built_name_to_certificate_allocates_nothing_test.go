//lint:file-ignore SA1019 NameToCertificate is deprecated, but an application may still build it: the wrapper honours it, and this test measures that.

package stapler

import (
	"crypto/tls"
	"testing"

	"github.com/staplerkit/ocsp/responder"
)

// TestAChoiceThroughABuiltNameToCertificateAllocatesNothing: legacy code
// calls BuildNameToCertificate before Wrap; a wildcard leaf is then found
// under "*.b.test" for a server name it covers, after the exact lookup
// misses. The handshake hit (a staple at hand) must allocate nothing, as
// it does without NameToCertificate, for that name and for one that no
// entry has.
func TestAChoiceThroughABuiltNameToCertificateAllocatesNothing(t *testing.T) {
	e := newEnv(t, on)
	wild := e.mustIssue(responder.ECDSA, "*.b.test")
	a := e.mustIssue(responder.ECDSA, "a.test")
	app := &tls.Config{Certificates: []tls.Certificate{a.Certificate, wild.Certificate}}
	app.BuildNameToCertificate()
	cfg := e.s.Wrap(app)
	for _, tc := range []struct {
		name string
		want *responder.Leaf
	}{{"x.b.test", wild}, {"none.test", a}} {
		hello := &tls.ClientHelloInfo{ServerName: tc.name, SupportedVersions: []uint16{tls.VersionTLS13},
			SignatureSchemes: []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256}, SupportedCurves: []tls.CurveID{tls.X25519}}
		eventually(t, "a staple for "+tc.name, func() bool { c, _ := cfg.GetCertificate(hello); return c != nil && c.OCSPStaple != nil })
		if c, _ := cfg.GetCertificate(hello); c.Leaf.SerialNumber.Cmp(tc.want.Cert.SerialNumber) != 0 {
			t.Fatalf("%s: chose %v", tc.name, c.Leaf.DNSNames)
		}
		if n := testing.AllocsPerRun(1000, func() { cfg.GetCertificate(hello) }); n != 0 {
			t.Errorf("%s: %v allocations per handshake hit, want 0", tc.name, n)
		}
	}
}
