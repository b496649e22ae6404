//lint:file-ignore SA1019 NameToCertificate is deprecated, but an application may still set it: the wrapper honours it, and these tests probe that.

package stapler

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/staplerkit/ocsp/config"
	"github.com/staplerkit/ocsp/internal/ocspcheck"
	"github.com/staplerkit/ocsp/internal/ocsptest"
	"github.com/staplerkit/ocsp/responder"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
	"golang.org/x/crypto/ocsp"
)

// A list with an empty entry, entries whose leaf DER is empty, nil or
// unparsable, the same leaf twice with different chains, and a
// NameToCertificate pointing inside (at the second copy of the leaf) and
// outside the list: no panic, the named entry is served with its own chain
// and its staple, and so is the certificate outside; then the same after
// OCSP is turned off and on, after Remove, on a Clone wrapped again, and on
// the client side.
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

// serveOddHellos calls cfg's GetCertificate with odd server names and
// hello shapes (empty, dots, wildcards, NUL, upper case, IP literals, very
// long, no versions, unknown versions, no schemes), and GetClientCertificate
// with odd requests, and returns the first panic, with what caused it.
func serveOddHellos(cfg *tls.Config) (caught string) {
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

// The odd hellos against a list with exact and wildcard names, Leaf set and
// not, the same leaf twice, an unparsable leaf, and a NameToCertificate
// with a wildcard key: nothing panics, server side or client side.
func TestOddHellosNeverPanic(t *testing.T) {
	e := newEnv(t, on)
	_, a := issueTestLeaf(t, e, true, "a.test", "*.w.test")
	_, b := issueTestLeaf(t, e, false, "b.test", "*.test")
	bad := tls.Certificate{Certificate: [][]byte{{0x30, 0x00}}, PrivateKey: e.leaf.Key}
	certs := []tls.Certificate{a, b, e.leaf.Certificate, bad, a}
	cfg := e.s.Wrap(&tls.Config{Certificates: certs, NameToCertificate: map[string]*tls.Certificate{"*.n.test": &certs[1], "": &certs[0]}})
	if p := serveOddHellos(cfg); p != "" {
		t.Fatalf("panic on %s", p)
	}
}

// An empty tls.Certificate in a wrapped config's list panics no handshake
// ("nothing panics on any input"), also when it comes after certificates
// the hello does not match (any server name the others are not valid for,
// sent by any remote client). Found when selection asked crypto/tls's
// SupportsCertificate about the empty entry, which indexes Certificate[0].
func TestEmptyEntryNeverPanics(t *testing.T) {
	e := newEnv(t, on)
	_, a := issueTestLeaf(t, e, false, "a.test")
	cfg := e.s.Wrap(&tls.Config{Certificates: []tls.Certificate{a, {}}})
	if p := serveOddHellos(cfg); p != "" {
		t.Fatalf("panic on %s", p)
	}
}

// hostileIDs are certificate IDs from outside that name no certificate.
func hostileIDs(valid string) []string {
	return []string{
		valid + "a",                        // 65 hex digits
		valid + valid,                      // 128
		strings.Repeat("f", 10_000),        // very long
		strings.ToUpper(valid),             // upper case: not the canonical form
		valid[:63],                         // too short
		valid[:63] + "g",                   // not hex
		valid[:62] + "\x00\x00",            // NULs
		"../" + valid[3:],                  // a path
		valid + "/",                        // a trailing slash
		"",                                 // none, with two certificates
		strings.Repeat("\xff", 64),         // not UTF-8
		valid[:32] + "\u00e9" + valid[34:], // a non-ASCII rune in 64 bytes
	}
}

func TestHostileIDsNeverPanic(t *testing.T) {
	e := newEnv(t, on)
	second, err := e.srv.Issue(responder.LeafOptions{DNSNames: []string{"second.test"}})
	if err != nil {
		t.Fatal(err)
	}
	e.wrapAndServe(e.leaf.Certificate, second.Certificate)
	e.waitStapled(e.leaf)
	valid := CertificateID(e.leaf.Cert.Raw)
	for _, id := range hostileIDs(valid) {
		calls := map[string]error{}
		_, calls["StatusOf"] = e.s.StatusOf(id)
		_, calls["Test"] = e.s.Test(t.Context(), id)
		_, calls["Stapling"] = e.s.Stapling(id)
		calls["SetStapling"] = e.s.SetStapling(id, config.Stapling{Enabled: true})
		_, calls["UpdateStapling"] = e.s.UpdateStapling(id, config.StaplingUpdate{Set: true, Remove: true})
		calls["SetPolicy"] = e.s.SetPolicy(id, Strict)
		calls["Remove"] = e.s.Remove(id)
		for name, err := range calls {
			if !errors.Is(err, ErrUnknownCertificate) {
				t.Errorf("%s(%q): got %v, want ErrUnknownCertificate", name, brief(id), err)
			}
		}
	}
	if !e.status(e.leaf).Stapled || len(e.s.Status()) != 2 {
		t.Fatal("hostile IDs changed the managed certificates")
	}
}

func brief(id string) string {
	if len(id) > 70 {
		return id[:70] + "..."
	}
	return id
}

// derNode is a DER element as a tree, so that tests can add, drop or change
// elements anywhere in a response and encode it again.
type derNode struct {
	tag      cbasn1.Tag
	content  []byte     // a primitive element's content
	children []*derNode // a constructed element's elements
}

func parseDER(t testing.TB, der []byte) *derNode {
	t.Helper()
	in := cryptobyte.String(der)
	var n derNode
	var content cryptobyte.String
	if !in.ReadAnyASN1(&content, &n.tag) || !in.Empty() {
		t.Fatalf("parseDER: not one DER element")
	}
	if n.tag&0x20 == 0 { // primitive
		n.content = content
		return &n
	}
	for !content.Empty() {
		var child cryptobyte.String
		var tag cbasn1.Tag
		if !content.ReadAnyASN1Element(&child, &tag) {
			t.Fatalf("parseDER: bad child")
		}
		n.children = append(n.children, parseDER(t, child))
	}
	return &n
}

func (n *derNode) add(b *cryptobyte.Builder) {
	b.AddASN1(n.tag, func(b *cryptobyte.Builder) {
		if n.tag&0x20 == 0 {
			b.AddBytes(n.content)
			return
		}
		for _, c := range n.children {
			c.add(b)
		}
	})
}

func (n *derNode) bytes(t testing.TB) []byte {
	t.Helper()
	var b cryptobyte.Builder
	n.add(&b)
	out, err := b.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// basicOf opens a response: the OCSPResponse tree and the BasicOCSPResponse
// tree inside its OCTET STRING.
func basicOf(t testing.TB, raw []byte) (outer, basic *derNode) {
	t.Helper()
	outer = parseDER(t, raw)
	octets := outer.children[1].children[0].children[1]
	return outer, parseDER(t, octets.content)
}

// rewrap puts basic back into outer and encodes the response.
func rewrap(t testing.TB, outer, basic *derNode) []byte {
	t.Helper()
	outer.children[1].children[0].children[1].content = basic.bytes(t)
	return outer.bytes(t)
}

// resign changes the signed ResponseData of raw with mod and signs it again
// with key (the CA's ECDSA key): the result has a valid signature over
// whatever mod made.
func resign(t testing.TB, raw []byte, key crypto.Signer, mod func(tbs *derNode)) []byte {
	t.Helper()
	outer, basic := basicOf(t, raw)
	mod(basic.children[0])
	tbs := basic.children[0].bytes(t)
	digest := crypto.SHA256.New()
	digest.Write(tbs)
	sig, err := key.Sign(rand.Reader, digest.Sum(nil), crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	var b cryptobyte.Builder
	b.AddASN1BitString(sig)
	sigDER, _ := b.Bytes()
	basic.children[2] = parseDER(t, sigDER)
	return rewrap(t, outer, basic)
}

// single returns the first SingleResponse of a ResponseData tree.
func single(tbs *derNode) *derNode {
	for _, c := range tbs.children {
		if c.tag == cbasn1.SEQUENCE && len(c.children) > 0 && c.children[0].tag == cbasn1.SEQUENCE {
			return c.children[0]
		}
	}
	return nil
}

func octetString(t testing.TB, n int) *derNode {
	var b cryptobyte.Builder
	b.AddASN1OctetString(bytes.Repeat([]byte{0x5a}, n))
	der, _ := b.Bytes()
	return parseDER(t, der)
}

func TestStrictDERRefusesBytesOutsideTheSignature(t *testing.T) {
	f := ocsptest.NewOCSPFixture(t)
	opts := ocspcheck.Options{Skew: 5 * time.Minute}
	good := f.Sign(t, f.CA.Cert, f.CA.Key, false, nil)
	delegated := f.Sign(t, f.Delegate.Cert, f.Delegate.Key, true, nil)
	revokedElement := func(t testing.TB) *derNode {
		var b cryptobyte.Builder
		b.AddASN1(cbasn1.Tag(1).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
			b.AddASN1GeneralizedTime(f.Now.Add(-time.Hour).UTC())
		})
		der, _ := b.Bytes()
		return parseDER(t, der)
	}
	for _, tc := range []struct {
		name string
		raw  func(t testing.TB) []byte
	}{
		{"junk octet string in certs", func(t testing.TB) []byte {
			outer, basic := basicOf(t, good)
			certs := &derNode{tag: cbasn1.SEQUENCE, children: []*derNode{octetString(t, 5_000)}}
			basic.children = append(basic.children, &derNode{tag: cbasn1.Tag(0).ContextSpecific().Constructed(), children: []*derNode{certs}})
			return rewrap(t, outer, basic)
		}},
		{"junk next to a valid delegate in certs", func(t testing.TB) []byte {
			outer, basic := basicOf(t, delegated)
			certs := basic.children[3].children[0]
			certs.children = append(certs.children, octetString(t, 1000))
			return rewrap(t, outer, basic)
		}},
		{"element after the signature", func(t testing.TB) []byte {
			outer, basic := basicOf(t, good)
			basic.children = append(basic.children, octetString(t, 100))
			return rewrap(t, outer, basic)
		}},
		{"element after the certs", func(t testing.TB) []byte {
			outer, basic := basicOf(t, delegated)
			basic.children = append(basic.children, octetString(t, 100))
			return rewrap(t, outer, basic)
		}},
		{"element after responseBytes", func(t testing.TB) []byte {
			outer := parseDER(t, good)
			outer.children[1].children[0].children = append(outer.children[1].children[0].children, octetString(t, 10))
			return outer.bytes(t)
		}},
		{"signed: good and revoked both", func(t testing.TB) []byte {
			return resign(t, good, f.CA.Key, func(tbs *derNode) {
				s := single(tbs)
				s.children = append(s.children[:2], append([]*derNode{revokedElement(t)}, s.children[2:]...)...)
			})
		}},
		{"signed: element added to a SingleResponse", func(t testing.TB) []byte {
			return resign(t, good, f.CA.Key, func(tbs *derNode) {
				s := single(tbs)
				s.children = append(s.children, octetString(t, 10))
			})
		}},
		{"signed: element added to ResponseData", func(t testing.TB) []byte {
			return resign(t, good, f.CA.Key, func(tbs *derNode) {
				tbs.children = append(tbs.children, octetString(t, 10))
			})
		}},
		{"signed: element added to the CertID", func(t testing.TB) []byte {
			return resign(t, good, f.CA.Key, func(tbs *derNode) {
				id := single(tbs).children[0]
				id.children = append(id.children, octetString(t, 10))
			})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := tc.raw(t)
			_, err := ocspcheck.Verify(raw, f.Leaf.Cert, f.CA.Cert, f.Now, opts)
			if !errors.Is(err, ErrMalformedResponse) {
				t.Fatalf("got %v, want ErrMalformedResponse", err)
			}
		})
	}
	// The test's own re-signing is sound: an unchanged ResponseData signed
	// again verifies.
	if _, err := ocspcheck.Verify(resign(t, good, f.CA.Key, func(*derNode) {}), f.Leaf.Cert, f.CA.Cert, f.Now, opts); err != nil {
		t.Fatalf("re-signed unchanged response refused: %v", err)
	}
}

// tamperingResponder serves e's responder's answers, changed by tamper
// while it is set.
func tamperingResponder(t testing.TB, r *responder.Responder) (*httptest.Server, *atomic.Pointer[func([]byte) []byte]) {
	var tamper atomic.Pointer[func([]byte) []byte]
	srv := httptest.NewServer(tamperingHandler(r, &tamper))
	t.Cleanup(srv.Close)
	return srv, &tamper
}

// tamperingHandler serves r's answers, changed by tamper while it is set.
func tamperingHandler(r *responder.Responder, tamper *atomic.Pointer[func([]byte) []byte]) http.HandlerFunc {
	return func(w http.ResponseWriter, req *http.Request) {
		rec := httptest.NewRecorder()
		r.ServeHTTP(rec, req)
		body := rec.Body.Bytes()
		if f := tamper.Load(); f != nil && rec.Code == http.StatusOK {
			body = (*f)(body)
		}
		for k, v := range rec.Header() {
			if k != "Content-Length" {
				w.Header()[k] = v
			}
		}
		w.WriteHeader(rec.Code)
		w.Write(body)
	}
}

func TestJunkWrappedResponseNeverReplacesTheStaple(t *testing.T) {
	e := newEnv(t, on)
	srv, tamper := tamperingResponder(t, e.r)
	e.s.opts.responderURL = srv.URL
	addr := e.wrapAndServe(e.leaf.Certificate)
	e.waitStapled(e.leaf)
	before, _, err := e.handshake(addr)
	if err != nil {
		t.Fatal(err)
	}
	junk := func(raw []byte) []byte {
		outer, basic := basicOf(t, raw)
		certs := &derNode{tag: cbasn1.SEQUENCE, children: []*derNode{octetString(t, 60_000)}}
		basic.children = append(basic.children, &derNode{tag: cbasn1.Tag(0).ContextSpecific().Constructed(), children: []*derNode{certs}})
		return rewrap(t, outer, basic)
	}
	tamper.Store(&junk)
	e.clock.Advance(time.Second) // a newer thisUpdate, so only the junk can refuse it
	st, err := e.s.Test(t.Context(), CertificateID(e.leaf.Cert.Raw))
	if err == nil {
		t.Fatalf("junk-wrapped response accepted: %+v", st)
	}
	if !errors.Is(err, ErrMalformedResponse) && !errors.Is(err, ErrResponseTooLarge) {
		t.Fatalf("refused for the wrong reason: %v", err)
	}
	after, _, err := e.handshake(addr)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Fatal("the staple changed after a junk-wrapped response")
	}
}

// paddedResponse signs a good response for f's leaf padded with a
// non-critical extension so that it is exactly size bytes.
func paddedResponse(t testing.TB, ca *responder.CA, leaf *responder.Leaf, now time.Time, size int) []byte {
	t.Helper()
	pad := size - 400
	// An ECDSA signature's length varies by a byte or two from one
	// signing to the next, so each try hits the size only by chance (about
	// one in three): ten tries missed 1 run in 50 or so; a hundred do not.
	for range 100 {
		der, err := ocsp.CreateResponse(ca.Cert, ca.Cert, ocsp.Response{
			Status: ocsp.Good, SerialNumber: leaf.Cert.SerialNumber,
			ThisUpdate: now.Add(-time.Minute), NextUpdate: now.Add(time.Hour),
			ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 1}, Value: bytes.Repeat([]byte{0}, pad)}},
		}, ca.Key)
		if err != nil {
			t.Fatal(err)
		}
		if len(der) == size {
			return der
		}
		pad += size - len(der) // ECDSA signatures vary by a byte or two: try again
	}
	t.Fatalf("could not pad a response to %d bytes", size)
	return nil
}

func TestLargestStapleCompletesTLS12And13(t *testing.T) {
	f := ocsptest.NewOCSPFixture(t)
	opts := ocspcheck.Options{Skew: 5 * time.Minute}
	tooBig := paddedResponse(t, f.CA, f.Leaf, f.Now, MaxResponseBytes+1)
	if _, err := ocspcheck.Verify(tooBig, f.Leaf.Cert, f.CA.Cert, f.Now, opts); !errors.Is(err, ErrResponseTooLarge) {
		t.Fatalf("a response of %d bytes: got %v, want ErrResponseTooLarge", len(tooBig), err)
	}

	e := newEnv(t, on)
	largest := paddedResponse(t, e.ca, e.leaf, e.clock.Now(), MaxResponseBytes)
	srv, tamper := tamperingResponder(t, e.r)
	e.s.opts.responderURL = srv.URL
	pad := func([]byte) []byte { return largest }
	tamper.Store(&pad)
	addr := e.wrapAndServe(e.leaf.Certificate)
	e.waitStapled(e.leaf)
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		staple, st, err := e.handshake(addr, func(c *tls.Config) { c.MinVersion, c.MaxVersion = v, v })
		if err != nil {
			t.Fatalf("%s handshake with a %d-byte staple: %v", tls.VersionName(v), len(largest), err)
		}
		if st.Version != v || !bytes.Equal(staple, largest) {
			t.Fatalf("%s: got version %x and a %d-byte staple, want the %d-byte one", tls.VersionName(v), st.Version, len(staple), len(largest))
		}
	}
}

// A response with junk in its signature's AlgorithmIdentifier parameters is
// refused (ErrMalformedResponse) and never replaces the staple. The
// AlgorithmIdentifier lies outside the signed ResponseData, so anyone on
// the plain-HTTP path (or with write access to the store) can stuff
// kilobytes of junk into a CA-signed response; for ECDSA and Ed25519 the
// parameters must be absent (RFC 5758 3.2, RFC 8410 3), for RSA PKCS#1 v1.5
// they must be NULL (RFC 4055 5). Found when such a response verified and
// was stapled verbatim.
func TestSigAlgParamsJunkNeverReplacesTheStaple(t *testing.T) {
	e := newEnv(t, on)
	srv, tamper := tamperingResponder(t, e.r)
	e.s.opts.responderURL = srv.URL
	addr := e.wrapAndServe(e.leaf.Certificate)
	e.waitStapled(e.leaf)
	before, _, err := e.handshake(addr)
	if err != nil {
		t.Fatal(err)
	}
	junk := func(raw []byte) []byte {
		outer, basic := basicOf(t, raw)
		algID := basic.children[1]
		algID.children = append(algID.children, octetString(t, 12_000))
		return rewrap(t, outer, basic)
	}
	tamper.Store(&junk)
	e.clock.Advance(time.Second) // a newer thisUpdate, so only the junk can refuse it
	_, err = e.s.Test(t.Context(), CertificateID(e.leaf.Cert.Raw))
	after, _, herr := e.handshake(addr)
	if herr != nil {
		t.Fatal(herr)
	}
	if err == nil || !errors.Is(err, ErrMalformedResponse) {
		t.Errorf("a response with 12 KB of junk in its signatureAlgorithm parameters: Test returned %v, want ErrMalformedResponse", err)
	}
	if !bytes.Equal(before, after) {
		t.Errorf("the staple changed to the junk-carrying response (%d bytes, was %d)", len(after), len(before))
	}
}

// The same bytes through verifyResponse directly, for every key type a CA
// may have: parameters that are neither absent (ECDSA, Ed25519) nor NULL
// (RSA) are refused.
func TestSigAlgParamsJunkRefusedByTheParser(t *testing.T) {
	f := ocsptest.NewOCSPFixture(t)
	opts := ocspcheck.Options{Skew: 5 * time.Minute}
	good := f.Sign(t, f.CA.Cert, f.CA.Key, false, nil)
	outer, basic := basicOf(t, good)
	basic.children[1].children = append(basic.children[1].children, octetString(t, 100))
	raw := rewrap(t, outer, basic)
	if _, err := ocspcheck.Verify(raw, f.Leaf.Cert, f.CA.Cert, f.Now, opts); !errors.Is(err, ErrMalformedResponse) {
		t.Fatalf("junk signatureAlgorithm parameters: got %v, want ErrMalformedResponse", err)
	}
}

// The staple carries only the certificates a client needs: a CA-signed
// response to which anyone on the plain-HTTP path appended copies of a
// valid certificate (here the CA's own, 20 times) in the certs field, which
// also lies outside the signature, is refused (a duplicate, or a
// certificate that is not the signer's, has no business there) or stapled
// without them (the class of issue 11's "bytes outside the signature").
// Found when such a response was installed and every handshake carried
// kilobytes the CA never signed nor sent.
func TestTheStapleCarriesOnlyTheCertificateAClientNeeds(t *testing.T) {
	e := newEnv(t, on)
	srv, tamper := tamperingResponder(t, e.r)
	e.s.opts.responderURL = srv.URL
	addr := e.wrapAndServe(e.leaf.Certificate)
	e.waitStapled(e.leaf)
	var tampered []byte
	inflate := func(raw []byte) []byte {
		outer, basic := basicOf(t, raw)
		certs := &derNode{tag: cbasn1.SEQUENCE}
		for range 20 {
			certs.children = append(certs.children, parseDER(t, e.ca.Cert.Raw))
		}
		basic.children = append(basic.children, &derNode{tag: cbasn1.Tag(0).ContextSpecific().Constructed(), children: []*derNode{certs}})
		tampered = rewrap(t, outer, basic)
		return tampered
	}
	tamper.Store(&inflate)
	e.clock.Advance(time.Second)
	e.s.Test(t.Context(), CertificateID(e.leaf.Cert.Raw))
	after, _, err := e.handshake(addr)
	if err != nil {
		t.Fatal(err)
	}
	if tampered != nil && bytes.Equal(after, tampered) {
		t.Fatalf("stapled a response inflated with 20 copies of the CA certificate outside the signature: %d bytes", len(after))
	}
}

// A response verifies when some embedded certificate that made the
// signature is a valid delegate: a delegated responder whose certificate
// was renewed with the same key (common: the key lives in an HSM) embeds
// both certificates, the expired one first. Found when the signer check
// stopped at the first embedded certificate with the signing key and
// refused the response because that one had expired.
func TestRenewedDelegateListedAfterItsPredecessor(t *testing.T) {
	f := ocsptest.NewOCSPFixture(t)
	d := f.Delegate
	expiredTmpl := *d.Cert
	expiredTmpl.SerialNumber = big.NewInt(7)
	expiredTmpl.NotBefore = f.Now.Add(-400 * 24 * time.Hour)
	expiredTmpl.NotAfter = f.Now.Add(-35 * 24 * time.Hour)
	der, err := x509.CreateCertificate(rand.Reader, &expiredTmpl, f.CA.Cert, d.Key.Public(), f.CA.Key)
	if err != nil {
		t.Fatal(err)
	}
	raw := f.Sign(t, d.Cert, d.Key, true, nil)
	if _, err := ocspcheck.Verify(raw, f.Leaf.Cert, f.CA.Cert, f.Now, ocspcheck.Options{Skew: 5 * time.Minute}); err != nil {
		t.Fatalf("the renewed delegate alone: %v", err)
	}
	outer, basic := basicOf(t, raw)
	certs := basic.children[3].children[0]
	certs.children = append([]*derNode{parseDER(t, der)}, certs.children...)
	both := rewrap(t, outer, basic)
	if _, err := ocspcheck.Verify(both, f.Leaf.Cert, f.CA.Cert, f.Now, ocspcheck.Options{Skew: 5 * time.Minute}); err != nil {
		t.Fatalf("the expired predecessor embedded before the renewed delegate: %v", err)
	}
}
