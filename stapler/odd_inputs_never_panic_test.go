//lint:file-ignore SA1019 NameToCertificate is deprecated, but an application may still set it: the wrapper honours it, and these tests probe that.

package stapler

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"testing"

	"golang.org/x/crypto/ocsp"

	"github.com/staplerkit/ocsp/config"
	"github.com/staplerkit/ocsp/responder"
)

// PASSING PROBE. TestOddListsNeverPanic: a list with an empty
// entry, entries whose leaf DER is empty, nil or unparsable, the same leaf
// twice with different chains, and a NameToCertificate pointing inside
// (at the second copy of the leaf) and outside the list: no panic, the
// named entry is served with its own chain and its staple, and so is the
// certificate outside; then the same after OCSP is turned off and on,
// after Remove, on a Clone wrapped again, and on the client side.
func TestOddListsNeverPanic(t *testing.T) {
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

// attack5OddHellos calls cfg's GetCertificate with odd server names and
// hello shapes (empty, dots, wildcards, NUL, upper case, IP literals, very
// long, no versions, unknown versions, no schemes), and GetClientCertificate
// with odd requests, and returns the first panic, with what caused it.
func attack5OddHellos(cfg *tls.Config) (caught string) {
	long := make([]byte, 70000)
	for i := range long {
		long[i] = 'a'
		if i%60 == 59 {
			long[i] = '.'
		}
	}
	names := []string{"", ".", "..", "*", "*.", "*.test", "x.w.test", "a..test", ".a.test", "a.test.", "A.TEST", "a.test\x00", "127.0.0.1", "::1", "[::1]",
		"x.n.test", "n.test", "-a.test", "a-.test", "_.test", "1.2.3.4.test", "nomatch.example", string(long), "\xff\xfe", "é.test"}
	hellos := []func(string) *tls.ClientHelloInfo{
		func(n string) *tls.ClientHelloInfo { return &tls.ClientHelloInfo{ServerName: n} },
		func(n string) *tls.ClientHelloInfo {
			return &tls.ClientHelloInfo{ServerName: n, SupportedVersions: []uint16{tls.VersionTLS13, tls.VersionTLS12},
				SignatureSchemes: []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256}, SupportedCurves: []tls.CurveID{tls.X25519}}
		},
		func(n string) *tls.ClientHelloInfo {
			return &tls.ClientHelloInfo{ServerName: n, SupportedVersions: []uint16{0x0305, 0x7f1c, 0, 1, 2, 3, 4, 5}}
		},
		func(n string) *tls.ClientHelloInfo {
			return &tls.ClientHelloInfo{ServerName: n, SupportedVersions: []uint16{tls.VersionTLS12}, CipherSuites: []uint16{0}, SupportedPoints: []uint8{}}
		},
	}
	try := func(what string, f func()) {
		defer func() {
			if r := recover(); r != nil && caught == "" {
				caught = fmt.Sprintf("%s: %v", what, r)
			}
		}()
		f()
	}
	for _, n := range names {
		for j, h := range hellos {
			name := n
			if len(name) > 40 {
				name = name[:40] + "..."
			}
			try(fmt.Sprintf("hello %d for %q", j, name), func() { cfg.GetCertificate(h(n)) })
		}
	}
	for j, cri := range []*tls.CertificateRequestInfo{{}, {Version: tls.VersionTLS13}, {Version: tls.VersionTLS12, AcceptableCAs: [][]byte{{0x30}}}} {
		try(fmt.Sprintf("certificate request %d", j), func() { cfg.GetClientCertificate(cri) })
	}
	return caught
}

// PASSING PROBE. TestOddHellosNeverPanic: the odd hellos against a
// list with exact and wildcard names, Leaf set and not, the same leaf
// twice, an unparsable leaf, and a NameToCertificate with a wildcard key:
// nothing panics, server side or client side.
func TestOddHellosNeverPanic(t *testing.T) {
	e := newEnv(t, on)
	_, a := attack5Leaf(t, e, true, "a.test", "*.w.test")
	_, b := attack5Leaf(t, e, false, "b.test", "*.test")
	bad := tls.Certificate{Certificate: [][]byte{{0x30, 0x00}}, PrivateKey: e.leaf.Key}
	certs := []tls.Certificate{a, b, e.leaf.Certificate, bad, a}
	cfg := e.s.Wrap(&tls.Config{Certificates: certs, NameToCertificate: map[string]*tls.Certificate{"*.n.test": &certs[1], "": &certs[0]}})
	if p := attack5OddHellos(cfg); p != "" {
		t.Fatalf("panic on %s", p)
	}
}

// FINDING (fixed), OLDER (fails at a08ca52 too; crypto/tls panics the same way with the unwrapped config). TestEmptyEntryNeverPanics: "nothing panics on any input". A list
// with an empty tls.Certificate after certificates the hello does not
// match (any server name the others are not valid for, sent by any remote
// client) panics the handshake: selectSlowly asks crypto/tls's
// SupportsCertificate about the empty entry, which indexes
// Certificate[0]. Wrap knows the entry is empty (listEntry.m == nil) and
// could skip it as unsupported.
func TestEmptyEntryNeverPanics(t *testing.T) {
	e := newEnv(t, on)
	_, a := attack5Leaf(t, e, false, "a.test")
	cfg := e.s.Wrap(&tls.Config{Certificates: []tls.Certificate{a, {}}})
	if p := attack5OddHellos(cfg); p != "" {
		t.Fatalf("panic on %s", p)
	}
}
