package stapler

import (
	"crypto/tls"
	"crypto/x509"
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
// the client falls back to a full handshake, which Strict refuses.
func TestAttackStrictRevokedServedOnResumption(t *testing.T) {
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(v), func(t *testing.T) {
			e := newEnv(t, on, WithPolicy(Strict))
			addr := e.wrapAndServe(e.leaf.Certificate)
			e.waitStapled(e.leaf)
			e.mustGetStaple(addr, e.leaf, ocsp.Good)

			cache := tls.NewLRUClientSessionCache(4)
			resumingClient := func(c *tls.Config) {
				c.MinVersion, c.MaxVersion = v, v
				c.ClientSessionCache = cache
			}
			// Begin a session; in TLS 1.3 the ticket comes after the
			// handshake, so read until it has been processed.
			dial := func() (*tls.Conn, error) {
				cfg := &tls.Config{ServerName: "localhost"}
				cfg.RootCAs = rootsOf(e)
				resumingClient(cfg)
				return tls.Dial("tcp", addr, cfg)
			}
			conn, err := dial()
			if err != nil {
				t.Fatal(err)
			}
			conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			conn.Read(make([]byte, 1))
			conn.Close()

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
			conn, err = dial()
			if err == nil {
				resumed := conn.ConnectionState().DidResume
				conn.Close()
				if resumed {
					t.Fatal("Strict: a session begun before the revocation was resumed: the server authenticated as a certificate it knows to be revoked")
				}
				t.Fatal("handshake succeeded without resumption")
			}
		})
	}
}

func rootsOf(e *env) *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(e.ca.Cert)
	return p
}
