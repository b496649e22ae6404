package stapler

import (
	"bytes"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"net"
	"testing"
	"time"

	"github.com/staplerkit/ocsp/responder"
)

// plainServe serves cfg with crypto/tls alone (no Stapler) until the test ends.
func attack2PlainServe(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { c.SetDeadline(time.Now().Add(hangLimit)); c.(*tls.Conn).Handshake(); c.Close() }()
		}
	}()
	return ln.Addr().String()
}

func attack2Served(t *testing.T, roots *x509.CertPool, addr, name string, mod func(*tls.Config)) ([]byte, error) {
	cfg := &tls.Config{RootCAs: roots, ServerName: name, InsecureSkipVerify: true}
	if mod != nil {
		mod(cfg)
	}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: hangLimit}, "tcp", addr, cfg)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].Raw, nil
}

// TestSupportCacheSharedAcrossClones: the name index's support cache
// is keyed by the hello and the key class only, but SupportsCertificate
// also reads the server's config (versions, cipher suites, curves). A Clone
// of a wrapped config (Wrap returns it as is: "an unchanged Clone") shares
// the wrapper and its cache; with other server settings, an answer cached
// under the first config is reused under the second: a certificate
// crypto/tls would not choose is served, and the handshake fails.
func TestSupportCacheSharedAcrossClones(t *testing.T) {
	e := newEnv(t, on)
	issue := func(kt responder.KeyType, names ...string) tls.Certificate {
		l, err := e.srv.Issue(responder.LeafOptions{KeyType: kt, DNSNames: names})
		if err != nil {
			t.Fatal(err)
		}
		return l.Certificate
	}
	certs := []tls.Certificate{
		issue(responder.ECDSA, "other.test"),
		issue(responder.ECDSA, "www.example.com"),
		issue(responder.RSA, "www.example.com"),
	}
	legacy := func(c *tls.Config) { // a server for old clients: TLS 1.2, ECDHE-RSA only
		c.MaxVersion = tls.VersionTLS12
		c.CipherSuites = []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}
	}
	wrapped := e.s.Wrap(&tls.Config{Certificates: certs})
	legacyWrapped := wrapped.Clone()
	legacy(legacyWrapped)
	if e.s.Wrap(legacyWrapped) != legacyWrapped {
		t.Log("note: Wrap re-wrapped the clone")
	}
	legacyWrapped = e.s.Wrap(legacyWrapped)
	legacyPlain := &tls.Config{Certificates: certs}
	legacy(legacyPlain)

	mainAddr := e.serve(wrapped)
	legacyAddr := e.serve(legacyWrapped)
	legacyPlainAddr := attack2PlainServe(t, legacyPlain)

	roots := x509.NewCertPool()
	roots.AddCert(e.ca.Cert)
	client := func(c *tls.Config) { c.MaxVersion = tls.VersionTLS12 }

	// One TLS 1.2 handshake on the main config caches "ECDSA supported".
	if _, err := attack2Served(t, roots, mainAddr, "www.example.com", client); err != nil {
		t.Fatalf("main config: %v", err)
	}
	want, werr := attack2Served(t, roots, legacyPlainAddr, "www.example.com", client)
	if werr != nil {
		t.Fatalf("crypto/tls with the legacy settings: %v", werr)
	}
	got, gerr := attack2Served(t, roots, legacyAddr, "www.example.com", client)
	if gerr != nil {
		t.Fatalf("the same client on the clone with legacy settings fails where crypto/tls succeeds: %v", gerr)
	}
	if !bytes.Equal(want, got) {
		t.Fatal("the clone chose another certificate than crypto/tls")
	}
}

// attack2SignerOnly hides the crypto.Decrypter of an RSA key, as a KMS or
// HSM key does: it can sign, not decrypt.
type attack2SignerOnly struct{ crypto.Signer }

// TestSupportCacheIgnoresThePrivateKey: SupportsCertificate decides
// static-RSA support by the private key (a crypto.Decrypter) and ECDSA
// support by the private key's public key, but the support cache's key
// class comes from the leaf's public key alone. Two RSA-2048 certificates
// for the same name, the first with a sign-only key: a client offering
// only static RSA gets "unsupported" for the first, and the cache answers
// the same for the second, which crypto/tls would have chosen.
func TestSupportCacheIgnoresThePrivateKey(t *testing.T) {
	e := newEnv(t, on)
	issue := func(kt responder.KeyType, names ...string) tls.Certificate {
		l, err := e.srv.Issue(responder.LeafOptions{KeyType: kt, DNSNames: names})
		if err != nil {
			t.Fatal(err)
		}
		return l.Certificate
	}
	signOnly := issue(responder.RSA, "www.example.com")
	signOnly.PrivateKey = attack2SignerOnly{signOnly.PrivateKey.(crypto.Signer)}
	certs := []tls.Certificate{
		issue(responder.ECDSA, "other.test"),
		signOnly,
		issue(responder.RSA, "www.example.com"),
	}
	server := func(c *tls.Config) {
		c.CipherSuites = []uint16{tls.TLS_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}
	}
	plain := &tls.Config{Certificates: certs}
	server(plain)
	wrappedCfg := &tls.Config{Certificates: certs}
	server(wrappedCfg)
	plainAddr := attack2PlainServe(t, plain)
	wrappedAddr := e.serve(e.s.Wrap(wrappedCfg))
	roots := x509.NewCertPool()
	roots.AddCert(e.ca.Cert)
	client := func(c *tls.Config) {
		c.MaxVersion = tls.VersionTLS12
		c.CipherSuites = []uint16{tls.TLS_RSA_WITH_AES_128_GCM_SHA256}
	}
	want, werr := attack2Served(t, roots, plainAddr, "www.example.com", client)
	got, gerr := attack2Served(t, roots, wrappedAddr, "www.example.com", client)
	if (werr == nil) != (gerr == nil) {
		t.Fatalf("crypto/tls: %v; wrapped: %v", werr, gerr)
	}
	if !bytes.Equal(want, got) {
		t.Fatal("the wrapped config chose another certificate than crypto/tls")
	}
}
