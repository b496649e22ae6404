package stapler

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/staplerkit/ocsp/config"
	"github.com/staplerkit/ocsp/responder"
	"golang.org/x/crypto/ocsp"
)

// A Clone of a wrapped config (what http.Server.ServeTLS serves) resumes
// sessions as the config itself does. Found when the wrapped config's
// UnwrapSession decrypted tickets with the wrapped config itself
// (c.DecryptTicket on the config Wrap made), while crypto/tls encrypts them
// with the connection's config: a Clone, whose ticket keys are its own
// (generated on first use, or set by SetSessionTicketKeys), never resumed a
// session, silently — every connection was a full handshake.
func TestACloneOfAWrappedConfigResumes(t *testing.T) {
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(v), func(t *testing.T) {
			e := newEnv(t, on)
			wrapped := e.s.Wrap(tlsConfigFor(e.leaf))
			addr := e.serveGreeting(wrapped.Clone()) // as http.Server.ServeTLS does
			e.waitStapled(e.leaf)
			roots := x509.NewCertPool()
			roots.AddCert(e.ca.Cert)
			client := &tls.Config{RootCAs: roots, ServerName: "localhost", ClientSessionCache: tls.NewLRUClientSessionCache(8), MinVersion: v, MaxVersion: v}
			if resumed, err := dialSession(addr, client); err != nil || resumed {
				t.Fatalf("first connection: resumed %v, %v", resumed, err)
			}
			resumed, err := dialSession(addr, client)
			if err != nil {
				t.Fatal(err)
			}
			if !resumed {
				t.Fatal("a Clone of a wrapped config never resumes a session (the wrapped UnwrapSession decrypts with the original config's ticket keys)")
			}
		})
	}
}

// The control for TestACloneOfAWrappedConfigResumes: served as it is, the
// wrapped config resumes.
func TestWrappedConfigResumesControl(t *testing.T) {
	e := newEnv(t, on)
	addr := e.serveGreeting(e.s.Wrap(tlsConfigFor(e.leaf)))
	e.waitStapled(e.leaf)
	roots := x509.NewCertPool()
	roots.AddCert(e.ca.Cert)
	client := &tls.Config{RootCAs: roots, ServerName: "localhost", ClientSessionCache: tls.NewLRUClientSessionCache(8)}
	dialSession(addr, client)
	if resumed, err := dialSession(addr, client); err != nil || !resumed {
		t.Fatalf("resumed %v, %v", resumed, err)
	}
}

// The config a wrapped config's GetConfigForClient returns resumes
// sessions. Found when crypto/tls encrypted tickets with the outer config's
// keys (unless the returned config sets its own) while the wrapped inner
// config's UnwrapSession decrypted them with the inner config's keys: no
// session was ever resumed.
func TestAConfigFromGetConfigForClientResumes(t *testing.T) {
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(v), func(t *testing.T) {
			e := newEnv(t, on)
			inner := tlsConfigFor(e.leaf)
			outer := &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) { return inner, nil }}
			addr := e.serveGreeting(e.s.Wrap(outer))
			roots := x509.NewCertPool()
			roots.AddCert(e.ca.Cert)
			client := &tls.Config{RootCAs: roots, ServerName: "localhost", ClientSessionCache: tls.NewLRUClientSessionCache(8), MinVersion: v, MaxVersion: v}
			if resumed, err := dialSession(addr, client); err != nil || resumed {
				t.Fatalf("first connection: resumed %v, %v", resumed, err)
			}
			resumed, err := dialSession(addr, client)
			if err != nil {
				t.Fatal(err)
			}
			if !resumed {
				t.Fatal("with GetConfigForClient, a wrapped server never resumes a session")
			}
		})
	}
}

// Control: the same unwrapped resumes.
func TestGetConfigForClientResumesUnwrappedControl(t *testing.T) {
	e := newEnv(t, on)
	inner := tlsConfigFor(e.leaf)
	outer := &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) { return inner, nil }}
	addr := e.serveGreeting(outer)
	roots := x509.NewCertPool()
	roots.AddCert(e.ca.Cert)
	client := &tls.Config{RootCAs: roots, ServerName: "localhost", ClientSessionCache: tls.NewLRUClientSessionCache(8)}
	dialSession(addr, client)
	if resumed, err := dialSession(addr, client); err != nil || !resumed {
		t.Fatalf("resumed %v, %v", resumed, err)
	}
}

// The README's way, http.Server.ServeTLS with a wrapped config (which
// net/http clones), resumes sessions. Found when no such connection ever
// resumed a session.
func TestHTTPServerResumesWithAWrappedConfig(t *testing.T) {
	e := newEnv(t, on)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{TLSConfig: e.s.Wrap(tlsConfigFor(e.leaf)), Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })}
	go srv.ServeTLS(ln, "", "")
	t.Cleanup(func() { srv.Close() })
	e.waitStapled(e.leaf)
	roots := x509.NewCertPool()
	roots.AddCert(e.ca.Cert)
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true,
		TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "localhost", ClientSessionCache: tls.NewLRUClientSessionCache(8)}}}
	get := func() bool {
		resp, err := client.Get("https://" + ln.Addr().String() + "/")
		if err != nil {
			t.Fatal(err)
		}
		io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.TLS.DidResume
	}
	get()
	if !get() {
		t.Fatal("http.Server with a wrapped config never resumes a session")
	}
}

// Strict (and MustStaple) refuse a handshake rather than authenticate as a
// certificate known to be revoked, on resumption too: once the Stapler
// knows the certificate is revoked, a wrapped Strict config resumes no
// session begun before the revocation, so the client falls back to a full
// handshake, which Strict refuses. A resuming client skips GetCertificate
// (crypto/tls's 1.3 server resumes without calling it; its 1.2 server calls
// it before it looks at the ticket), so the server would otherwise go on
// authenticating as the revoked certificate for as long as its session
// tickets live (up to 7 days).
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

// No session begun before a revocation resumes after the certificate is
// removed: a removed certificate remembered as revoked stays in the revoked
// count (a full handshake serving it again refuses it under Strict, but a
// TLS 1.3 resumption skips certificate selection).
func TestNoSessionResumesWhileARemovedCertificateIsKnownRevoked(t *testing.T) {
	for _, v := range tlsVersions {
		t.Run(v.name, func(t *testing.T) {
			f := newKnowledgeFixture(t, WithPolicy(Strict))
			e := f.e
			session := func() *tls.Config {
				return e.clientConfig(func(c *tls.Config) {
					c.ClientSessionCache = tls.NewLRUClientSessionCache(8)
					c.MinVersion, c.MaxVersion = v.version, v.version
				})
			}
			before, after := session(), session()
			for _, cfg := range []*tls.Config{before, after} {
				if c := f.srv.connect(cfg); c.client != nil || c.server != nil {
					t.Fatalf("first connection: %+v", c)
				}
			}
			f.revoke(t)
			if c := f.srv.connect(before); c.resumed || !errors.Is(c.server, ErrRevoked) {
				t.Fatalf("control: while known revoked: resumed %v, server %v; want refused", c.resumed, c.server)
			}
			if err := e.s.Remove(f.id); err != nil {
				t.Fatal(err)
			}
			c := f.srv.connect(after)
			if c.client == nil && c.resumed {
				t.Errorf("a session begun before the revocation resumed once the revoked certificate was removed (revoked count %d)", e.s.revokedCount.Load())
			}
			if c := f.srv.connect(e.clientConfig()); !errors.Is(c.server, ErrRevoked) {
				t.Errorf("a full handshake after Remove: server %v; want refused as revoked", c.server)
			}
		})
	}
}

// Two unrelated configs whose GetConfigForClient return the same
// application config do not resume each other's sessions through it: the
// config each returns seals with its own outer config's keys.
func TestASharedInnerConfigDoesNotJoinTheSessionsOfUnrelatedOuterConfigs(t *testing.T) {
	for _, v := range tlsVersions {
		t.Run(v.name, func(t *testing.T) {
			e := newEnv(t, on)
			inner := tlsConfigFor(e.leaf)
			outer := func() *tls.Config {
				return e.s.Wrap(&tls.Config{
					Certificates:       []tls.Certificate{e.leaf.Certificate},
					GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) { return inner, nil },
				})
			}
			a, b := serveReporting(t, outer()), serveReporting(t, outer())
			e.waitStapled(e.leaf)
			client := e.clientConfig(func(c *tls.Config) {
				c.ClientSessionCache = tls.NewLRUClientSessionCache(8)
				c.MinVersion, c.MaxVersion = v.version, v.version
			})
			if c := a.connect(client); c.client != nil || c.server != nil {
				t.Fatalf("A: %+v", c)
			}
			if c := a.connect(client); !c.resumed {
				t.Fatalf("control: A does not resume its own session: %+v", c)
			}
			if c := b.connect(client); c.resumed {
				t.Errorf("B resumed a session begun on A through the inner config both return")
			}
		})
	}
}

// A certificate known revoked stays in the revoked count when a bound on
// the certificates managed retires it (a client asking for another name is
// enough): a TLS 1.3 session begun before the revocation does not resume.
func TestRetiringARevokedCertificateDoesNotReenableResumption(t *testing.T) {
	e := newEnv(t, on, WithPolicy(Strict), WithMaxCertificates(1))
	other := e.mustIssue(responder.ECDSA, "other.test")
	app := &tls.Config{GetCertificate: func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
		if h.ServerName == "other.test" {
			return &other.Certificate, nil
		}
		return &e.leaf.Certificate, nil
	}}
	srv := serveReporting(t, e.s.Wrap(app))
	session := func() *tls.Config {
		return e.clientConfig(func(c *tls.Config) {
			c.ClientSessionCache = tls.NewLRUClientSessionCache(8)
			c.MinVersion = tls.VersionTLS13
		})
	}
	before, after := session(), session()
	for _, cfg := range []*tls.Config{before, after} {
		if c := srv.connect(cfg); c.client != nil || c.server != nil {
			t.Fatalf("first connection: %+v", c)
		}
	}
	e.clock.Advance(10 * time.Minute)
	e.r.SetStatus(e.leaf.Cert.SerialNumber, responder.Revoked(e.clock.Now().Add(-time.Minute), ocsp.KeyCompromise))
	if st, err := e.s.Test(t.Context(), CertificateID(e.leaf.Cert.Raw)); err != nil || st.CertStatus != config.CertRevoked {
		t.Fatalf("the revocation: %v, %+v", err, st.Status)
	}
	if c := srv.connect(before); c.resumed || !errors.Is(c.server, ErrRevoked) {
		t.Fatalf("control: while known revoked: resumed %v, server %v; want refused", c.resumed, c.server)
	}
	// Anyone can ask for another name.
	srv.connect(e.clientConfig(func(c *tls.Config) { c.ServerName = "other.test" }))
	if c := srv.connect(after); c.client == nil && c.resumed {
		t.Errorf("a session begun before the revocation resumed once a handshake for another name retired the revoked certificate (revoked count %d)", e.s.revokedCount.Load())
	}
	if c := srv.connect(e.clientConfig()); !errors.Is(c.server, ErrRevoked) {
		t.Errorf("a full handshake after the retirement: server %v; want refused as revoked", c.server)
	}
}

// errRefusedClient is B's verdict on the client certificate it refuses.
var errRefusedClient = errors.New("this client certificate is refused here")

// One Stapler wraps two unrelated configs: A asks for a client certificate
// and accepts any, B requires one and refuses a particular client. A
// session that client began on A does not resume on B (crypto/tls calls no
// VerifyPeerCertificate on a resumed session, so resuming would let the
// client in unchecked): B's handshake is a full one, and fails. Copies of
// A (its Clone, and the config its GetConfigForClient returns) resume A's
// sessions.
func TestSessionsDoNotResumeAcrossUnrelatedWrappedConfigs(t *testing.T) {
	for _, v := range tlsVersions {
		t.Run(v.name, func(t *testing.T) {
			e := newEnv(t, on)
			refused := e.mustIssue(responder.ECDSA, "client.test")

			innerA := &tls.Config{Certificates: []tls.Certificate{e.leaf.Certificate}, ClientAuth: tls.RequestClientCert}
			appA := &tls.Config{
				Certificates: []tls.Certificate{e.leaf.Certificate},
				ClientAuth:   tls.RequestClientCert,
				GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
					if h.ServerName == "inner.test" {
						return innerA, nil
					}
					return nil, nil // the config itself
				},
			}
			appB := &tls.Config{
				Certificates: []tls.Certificate{e.leaf.Certificate},
				ClientAuth:   tls.RequireAnyClientCert,
				VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
					if len(raw) > 0 && bytes.Equal(raw[0], refused.Cert.Raw) {
						return errRefusedClient
					}
					return nil
				},
			}
			wrappedA := e.s.Wrap(appA)
			fromA, err := wrappedA.GetConfigForClient(&tls.ClientHelloInfo{ServerName: "inner.test"})
			if err != nil || fromA == nil {
				t.Fatalf("A's GetConfigForClient: %v, %v", fromA, err)
			}
			a := serveReporting(t, wrappedA)
			b := serveReporting(t, e.s.Wrap(appB))
			clone := serveReporting(t, wrappedA.Clone())
			inner := serveReporting(t, fromA)
			e.waitStapled(e.leaf)

			client := e.clientConfig(func(c *tls.Config) {
				c.Certificates = []tls.Certificate{refused.Certificate}
				c.ClientSessionCache = tls.NewLRUClientSessionCache(8)
				c.MinVersion, c.MaxVersion = v.version, v.version
			})
			onA := func() {
				t.Helper()
				if c := a.connect(client); c.client != nil || c.server != nil {
					t.Fatalf("A refused the client: client %v, server %v", c.client, c.server)
				}
			}
			onA()
			if c := clone.connect(client); c.client != nil || c.server != nil || !c.resumed {
				t.Errorf("a Clone of A does not resume A's session: resumed %v, client %v, server %v", c.resumed, c.client, c.server)
			}
			onA()
			if c := inner.connect(client); c.client != nil || c.server != nil || !c.resumed {
				t.Errorf("the config A's GetConfigForClient returns does not resume A's session: resumed %v, client %v, server %v", c.resumed, c.client, c.server)
			}
			onA()
			c := b.connect(client)
			if c.resumed {
				t.Errorf("B resumed a session begun on A, letting in a client it refuses")
			}
			if c.client == nil || !errors.Is(c.server, errRefusedClient) {
				t.Errorf("B's handshake with the refused client: client %v, server %v; want it refused by B's VerifyPeerCertificate", c.client, c.server)
			}
		})
	}
}
