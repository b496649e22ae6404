package stapler

import (
	"crypto/tls"
	"testing"

	"github.com/staplerkit/ocsp/responder"
)

// FINDING (fixed): promise "a cache hit allocates nothing". allows13's slot index
// is (minV ^ maxV*0x9e3779b97f4a7c15) >> 60: Go's * binds tighter than ^,
// and minV < 1<<16 never reaches the top four bits, so the slot depends on
// MaxVersion alone. Two configs with the same MaxVersion and different
// MinVersion (the usual pair: MinVersion left at 0, and MinVersion
// TLS 1.2) share one slot and evict each other; handshakes alternating
// between them ask crypto/tls (which allocates) on every TLS 1.3 hello.
// Control: the same pair of configs with equal bounds allocates nothing.
func TestAllowedCacheSlotIgnoresMinVersion(t *testing.T) {
	e := newEnv(t, on)
	issue := func(names ...string) *responder.Leaf { return e.mustIssue(responder.ECDSA, names...) }
	a, b := issue("a.test"), issue("b.test")
	list := []tls.Certificate{a.Certificate, b.Certificate}
	run := func(min1, min2 uint16) float64 {
		c1 := e.s.Wrap(&tls.Config{Certificates: list, MinVersion: min1})
		c2 := e.s.Wrap(&tls.Config{Certificates: list, MinVersion: min2})
		h1 := &tls.ClientHelloInfo{ServerName: "a.test", SupportedVersions: []uint16{tls.VersionTLS13, tls.VersionTLS12}, SignatureSchemes: []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256}}
		h2 := *h1
		setHelloConfig(t, h1, c1)
		setHelloConfig(t, &h2, c2)
		for _, p := range []struct {
			c *tls.Config
			h *tls.ClientHelloInfo
		}{{c1, h1}, {c2, &h2}} {
			// Warm up: the staple in place, every cache filled once.
			eventually(t, "a stapled hit", func() bool {
				c, err := p.c.GetCertificate(p.h)
				return err == nil && c != nil && c.OCSPStaple != nil
			})
		}
		return testing.AllocsPerRun(200, func() {
			c1.GetCertificate(h1)
			c2.GetCertificate(&h2)
		})
	}
	if n := run(tls.VersionTLS12, tls.VersionTLS12); n != 0 {
		t.Fatalf("control (equal bounds): %v allocations per pair of handshakes", n)
	}
	if n := run(0, tls.VersionTLS12); n != 0 {
		t.Fatalf("configs with MinVersion 0 and TLS 1.2 (MaxVersion 0): %v allocations per pair of handshakes, want 0", n)
	}
}
