package stapler

import (
	"bytes"
	"testing"

	"golang.org/x/crypto/ocsp"

	"github.com/staplerkit/ocsp/responder"
)

// TestSharedCertificatesNeverStapleAnotherCertificate: Wrap now SHARES
// the application's Certificates slice when every leaf is parsed, and a
// certificate's state keeps a pointer into it (its view's orig). The
// README and Wrap's doc tell the application to "change cfg (or a Clone of
// it) and wrap that again", and promise "cfg and its certificates are
// never modified" and "a wrapped config serves what cfg held when it was
// wrapped". An application that renews a certificate in place
// (cfg.Certificates[0] = renewed; s.Wrap(cfg)) changes the memory the old
// wrapped config and the old certificate's state read: at the old
// certificate's next refresh its view is rebuilt from the renewed
// certificate with the OLD certificate's OCSP response, and the old
// wrapped config (still serving: another listener, connections not yet
// moved) staples a response for another certificate. (The write also
// races with the Stapler's workers reading the same memory.)
func TestSharedCertificatesNeverStapleAnotherCertificate(t *testing.T) {
	e := newEnv(t, on)
	old := e.leaf
	renewed, err := e.srv.Issue(attack4LeafOptions())
	if err != nil {
		t.Fatal(err)
	}
	cfg := tlsConfigFor(old)
	wrappedOld := e.s.Wrap(cfg)
	addr := e.serve(wrappedOld)
	e.waitStapled(old)
	e.mustGetStaple(addr, old, ocsp.Good)

	// The application renews in place and wraps again, as documented.
	cfg.Certificates[0] = renewed.Certificate
	_ = e.s.Wrap(cfg)
	e.waitStapled(renewed)

	// The old certificate's next refresh.
	before := e.advanceToNextRefresh(old)
	e.waitQueries(old, before+1)

	staple, st, err := e.handshake(addr)
	if err != nil {
		t.Fatalf("handshake on the old wrapped config: %v", err)
	}
	served := st.PeerCertificates[0]
	if staple == nil {
		t.Fatal("no staple")
	}
	if _, err := ocsp.ParseResponseForCert(staple, served, e.ca.Cert); err != nil {
		which := "the old certificate"
		if bytes.Equal(served.Raw, renewed.Cert.Raw) {
			which = "the renewed certificate (not what the old config held)"
		}
		t.Fatalf("the old wrapped config served %s with a staple for another certificate: %v", which, err)
	}
}

func attack4LeafOptions() responder.LeafOptions { return responder.LeafOptions{} }
