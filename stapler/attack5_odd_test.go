package stapler

import (
	"crypto/tls"
	"crypto/x509"
	"testing"

	"golang.org/x/crypto/ocsp"

	"github.com/staplerkit/ocsp/config"
	"github.com/staplerkit/ocsp/responder"
)

// PASSING PROBE. TestAttack5OddListsNeverPanic: a list with an empty
// entry, entries whose leaf DER is empty, nil or unparsable, the same leaf
// twice with different chains, and a NameToCertificate pointing inside
// (at the second copy of the leaf) and outside the list: no panic, the
// named entry is served with its own chain and its staple, and so is the
// certificate outside; then the same after OCSP is turned off and on,
// after Remove, on a Clone wrapped again, and on the client side.
func TestAttack5OddListsNeverPanic(t *testing.T) {
	e := newEnv(t, on)
	outside, err := e.srv.Issue(responder.LeafOptions{DNSNames: []string{"outside.test"}})
	if err != nil {
		t.Fatal(err)
	}
	leafOnlyIssuer := e.leaf.Certificate
	leafOnlyIssuer.Certificate = [][]byte{e.leaf.Cert.Raw, e.ca.Cert.Raw}
	certs := []tls.Certificate{
		{},
		{Certificate: [][]byte{{}}},
		{Certificate: [][]byte{nil}, PrivateKey: e.leaf.Key},
		{Certificate: [][]byte{{0x30, 0x03, 0x02, 0x01, 0x05}}, PrivateKey: e.leaf.Key, OCSPStaple: []byte("own")},
		e.leaf.Certificate,
		leafOnlyIssuer,
	}
	app := &tls.Config{Certificates: certs, NameToCertificate: map[string]*tls.Certificate{
		"named.test":   &certs[5],
		"outside.test": &outside.Certificate,
		"empty.test":   &certs[0],
		"bad.test":     &certs[3],
	}}
	cfg := e.s.Wrap(app)
	e.waitStapled(e.leaf)
	names := []string{"", "localhost", "named.test", "outside.test", "empty.test", "bad.test", "LOCALHOST", "127.0.0.1", "x.named.test", "localhost."}
	serveAll := func(when string, wrapped *tls.Config) {
		t.Helper()
		for _, name := range names {
			wrapped.GetCertificate(&tls.ClientHelloInfo{ServerName: name})
		}
		c, err := wrapped.GetCertificate(&tls.ClientHelloInfo{ServerName: "named.test"})
		if err != nil || !sameSlice(c.Certificate, certs[5].Certificate) {
			t.Fatalf("%s: NameToCertificate inside the list: served another entry (%v)", when, err)
		}
		if _, err := ocsp.ParseResponseForCert(c.OCSPStaple, e.leaf.Cert, e.ca.Cert); err != nil && e.s.cfg.Load().OCSPFunctionality {
			t.Fatalf("%s: named entry: staple: %v", when, err)
		}
		c, err = wrapped.GetCertificate(&tls.ClientHelloInfo{ServerName: "outside.test"})
		if err != nil || c.Leaf != outside.Cert {
			t.Fatalf("%s: NameToCertificate outside the list: served another (%v)", when, err)
		}
		if wrapped.GetClientCertificate != nil {
			wrapped.GetClientCertificate(&tls.CertificateRequestInfo{Version: tls.VersionTLS13, SignatureSchemes: []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256}})
		}
	}
	serveAll("wrapped", cfg)
	// The outside certificate gets its staple too.
	eventually(t, "the outside staple", func() bool {
		c, _ := cfg.GetCertificate(&tls.ClientHelloInfo{ServerName: "outside.test"})
		return c != nil && c.OCSPStaple != nil
	})
	off, onAgain := false, true
	e.s.Update(config.OCSPUpdate{OCSPFunctionality: &off})
	serveAll("OCSP off", cfg)
	if c, _ := cfg.GetCertificate(&tls.ClientHelloInfo{ServerName: "bad.test"}); c == nil || string(c.OCSPStaple) != "own" {
		t.Fatal("OCSP off: an entry with the application's own staple was not served as the application had it")
	}
	e.s.Update(config.OCSPUpdate{OCSPFunctionality: &onAgain})
	serveAll("OCSP on again", cfg)
	if err := e.s.Remove(CertificateID(e.leaf.Cert.Raw)); err != nil {
		t.Fatal(err)
	}
	serveAll("after Remove", cfg)
	clone := cfg.Clone()
	clone.MinVersion = tls.VersionTLS12
	serveAll("a Clone wrapped again", e.s.Wrap(clone))
	// Real handshakes: with and without SNI, TLS 1.2 only.
	addr := e.serve(cfg)
	for _, mod := range []func(*tls.Config){
		func(c *tls.Config) { c.ServerName = "named.test"; c.InsecureSkipVerify = true },
		func(c *tls.Config) {
			c.ServerName = "127.0.0.1"
			c.MaxVersion = tls.VersionTLS12
			c.InsecureSkipVerify = true
		},
		func(c *tls.Config) { c.ServerName = "outside.test"; c.MaxVersion = tls.VersionTLS12 },
	} {
		e.handshake(addr, mod) // errors allowed (an empty first entry); panics are not
	}
	_ = x509.ParseCertificate
}

// PASSING PROBE. TestAttack5MutateThenCloneAndWrapAgain: the application
// overwrites its own list in place after Wrap; the wrapped config keeps
// serving what it held; a Clone of the wrapped config, changed but with
// no Certificates of its own, wrapped again serves what the first held
// too, and a Clone with the new list serves the new certificate; the first
// still serves its own.
func TestAttack5MutateThenCloneAndWrapAgain(t *testing.T) {
	e := newEnv(t, on)
	other, err := e.srv.Issue(responder.LeafOptions{})
	if err != nil {
		t.Fatal(err)
	}
	app := tlsConfigFor(e.leaf)
	first := e.s.Wrap(app)
	app.Certificates[0] = other.Certificate // in place
	e.waitStapled(e.leaf)
	hello := helloFor()
	serves := func(cfg *tls.Config, want *x509.Certificate, what string) {
		t.Helper()
		c, err := cfg.GetCertificate(hello)
		if err != nil || c.Leaf == nil || !c.Leaf.Equal(want) {
			t.Fatalf("%s: served another certificate (%v)", what, err)
		}
		if _, err := ocsp.ParseResponseForCert(c.OCSPStaple, want, e.ca.Cert); err != nil {
			t.Fatalf("%s: staple: %v", what, err)
		}
	}
	serves(first, e.leaf.Cert, "after the in-place change")
	clone := first.Clone()
	clone.MinVersion = tls.VersionTLS12
	serves(e.s.Wrap(clone), e.leaf.Cert, "an unchanged list, wrapped again")
	withNew := first.Clone()
	withNew.Certificates = app.Certificates
	serves(e.s.Wrap(withNew), other.Cert, "a Clone given the new list")
	serves(e.s.Wrap(app), other.Cert, "the application's config wrapped again")
	serves(first, e.leaf.Cert, "the first, after all that")
}
