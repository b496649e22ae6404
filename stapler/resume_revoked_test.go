package stapler

import (
	"crypto/tls"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/staplerkit/ocsp/responder"
)

// AttackStrictRevokedServedOnResumption: Strict (and MustStaple) promise a
// handshake failure instead of a certificate known to be revoked. A client
// that resumes a session begun before the revocation skips GetCertificate
// entirely (crypto/tls sends no certificate on resumption), so the server
// goes on authenticating as the revoked certificate for as long as its
// session tickets live (up to 7 days), with the Stapler knowing it is
// revoked. Expected: once the Stapler knows the certificate is revoked,
// a wrapped Strict config refuses to resume sessions for it (for instance
// by wrapping UnwrapSession / WrapSession, or rotating the ticket keys), so
// the client falls back to a full handshake, which Strict refuses. (TLS
// 1.2 holds: crypto/tls's 1.2 server calls GetCertificate before it looks
// at the ticket; its 1.3 server resumes without calling it.)
func TestStrictNeverResumesWhileACertificateIsKnownRevoked(t *testing.T) {
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(v), func(t *testing.T) {
			e := newEnv(t, on, WithPolicy(Strict))
			addr := e.serveGreeting(e.s.Wrap(tlsConfigFor(e.leaf)))
			e.waitStapled(e.leaf)
			client := e.sessionClient(&Verifier{}, v)
			if resumed, err := dialSession(addr, client); err != nil || resumed {
				t.Fatalf("first connection: resumed %v, %v", resumed, err)
			}

			e.r.SetStatus(e.leaf.Cert.SerialNumber, responder.Revoked(e.clock.Now().Add(-time.Second), ocsp.KeyCompromise))
			e.clock.Advance(2 * time.Second)
			if _, err := e.s.Test(t.Context(), CertificateID(e.leaf.Cert.Raw)); err != nil {
				t.Fatal(err)
			}
			if st := e.status(e.leaf); st.State != StateRevoked {
				t.Fatalf("state %s, want revoked", st.State)
			}
			// A full handshake is refused, as Strict promises.
			if _, _, err := e.handshake(addr, func(c *tls.Config) { c.MinVersion, c.MaxVersion = v, v }); err == nil {
				t.Fatal("full handshake with a revoked certificate under Strict succeeded")
			}
			// A resumed one must be too.
			resumed, err := dialSession(addr, client)
			if err == nil {
				if resumed {
					t.Fatal("Strict: a session begun before the revocation was resumed: the server authenticated as a certificate it knows to be revoked")
				}
				t.Fatal("handshake succeeded without resumption")
			}
		})
	}
}
