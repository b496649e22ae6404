package stapler

import (
	"crypto/tls"
	"testing"

	"golang.org/x/crypto/ocsp"
)

// AttackCloneWithBuiltNameToCertificate: a wrapped config has no
// Certificates, so BuildNameToCertificate on a Clone of it (legacy code
// calls it on every config it assembles) sets NameToCertificate to an
// empty, non-nil map. Wrap then treats the clone as one whose certificate
// selection was changed, drops the certificates captured at Wrap, and the
// result serves no certificate at all: every handshake fails. Expected: the
// clone serves what the original did (an empty NameToCertificate selects
// nothing, so crypto/tls would fall back to the Certificates list).
func TestACloneWithABuiltNameMapServesWhatTheOriginalDid(t *testing.T) {
	e := newEnv(t, on)
	wrapped := e.s.Wrap(tlsConfigFor(e.leaf))
	clone := wrapped.Clone()
	clone.MinVersion = tls.VersionTLS12
	//lint:ignore SA1019 what legacy code does
	clone.BuildNameToCertificate()
	addr := e.serve(e.s.Wrap(clone))
	e.waitStapled(e.leaf)
	for _, mod := range []func(*tls.Config){
		func(*tls.Config) {},
		func(c *tls.Config) { c.ServerName = ""; c.InsecureSkipVerify = true },
	} {
		if _, _, err := e.handshake(addr, mod); err != nil {
			t.Fatalf("a re-wrapped Clone on which BuildNameToCertificate was called: handshake failed: %v", err)
		}
	}
	e.mustGetStaple(addr, e.leaf, ocsp.Good)
}
