package stapler

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/staplerkit/ocsp/responder"
	"golang.org/x/crypto/ocsp"
)

// A config wrapped again with another chain for the same leaf serves its
// chain, and the config wrapped first keeps serving the chain it held; both
// get the next staple.
func TestAReWrappedConfigTakesOverAndTheOldKeepsItsChain(t *testing.T) {
	e := newEnv(t, on)
	first := e.s.Wrap(tlsConfigFor(e.leaf))
	e.mustGetStaple(e.serve(first), e.leaf, ocsp.Good)
	leafOnly := e.leaf.Certificate
	leafOnly.Certificate = leafOnly.Certificate[:1:1]
	second := e.s.Wrap(&tls.Config{Certificates: []tls.Certificate{leafOnly}})
	hello := helloFor()
	check := func(when string) {
		t.Helper()
		for name, want := range map[*tls.Config]int{first: len(e.leaf.Certificate.Certificate), second: 1} {
			c, err := name.GetCertificate(hello)
			if err != nil || len(c.Certificate) != want || c.OCSPStaple == nil {
				t.Fatalf("%s: served a chain of %d, want %d, stapled (%v)", when, len(c.Certificate), want, err)
			}
		}
	}
	check("after the second Wrap")
	before := e.advanceToNextRefresh(e.leaf)
	e.waitQueries(e.leaf, before+1)
	check("after a refresh")
	if n := testing.AllocsPerRun(1000, func() { first.GetCertificate(hello); second.GetCertificate(hello) }); n != 0 {
		t.Fatalf("%v allocations per pair of handshakes, want 0", n)
	}
}

// A leaf the application writes into its chain in place is served with its
// own staple, also after the old certificate's next refresh (a new view of
// the old certificate must keep where the old leaf was, not take the
// chain's new one).
func TestAnInPlaceLeafSwapStaysCaughtAfterARefresh(t *testing.T) {
	e := newEnv(t, on)
	app := tlsConfigFor(e.leaf)
	app.Certificates[0].Certificate = [][]byte{e.leaf.Cert.Raw, e.ca.Cert.Raw} // the application's own chain slice
	addr := e.serve(e.s.Wrap(app))
	e.mustGetStaple(addr, e.leaf, ocsp.Good)
	tmpl := *e.leaf.Cert // renewed with the same key
	tmpl.SerialNumber = new(big.Int).Add(e.leaf.Cert.SerialNumber, big.NewInt(1))
	der, err := x509.CreateCertificate(rand.Reader, &tmpl, e.ca.Cert, e.leaf.Key.Public(), e.ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	e.r.SetStatus(tmpl.SerialNumber, responder.Good())
	app.Certificates[0].Certificate[0] = der // in place
	before := e.advanceToNextRefresh(e.leaf)
	e.waitQueries(e.leaf, before+1)
	staple, st, err := e.handshake(addr, func(c *tls.Config) { c.InsecureSkipVerify = true })
	if err != nil {
		t.Fatal(err)
	}
	if staple == nil {
		return // served without a staple: not another certificate's
	}
	resp, err := ocsp.ParseResponse(staple, e.ca.Cert)
	if err != nil {
		t.Fatal(err)
	}
	if served := st.PeerCertificates[0]; resp.SerialNumber.Cmp(served.SerialNumber) != 0 {
		t.Fatalf("after a refresh, leaf serial %v served with the staple for serial %v", served.SerialNumber, resp.SerialNumber)
	}
}

// A leaf first wrapped with a broken chain (the issuer missing, no AIA
// caIssuers to fetch it from), then wrapped again with its chain fixed, is
// stapled: the wrapped config now holds the issuer ("every handshake gets
// the staple for the certificate it is served"). Found when the issuer was
// taken from the chain at first sight only, so the certificate stayed
// without a staple until the process restarted or it was Removed.
func TestAFixedChainIsStapled(t *testing.T) {
	e := newEnv(t, on)
	broken := leafOnly(e.leaf)
	e.s.Wrap(&tls.Config{Certificates: []tls.Certificate{broken}})
	if st := e.waitQueries(e.leaf, 1); st.Stapled {
		t.Fatal("stapled without an issuer")
	}
	fixed := e.s.Wrap(tlsConfigFor(e.leaf))
	before := e.advanceToNextRefresh(e.leaf)
	e.waitQueries(e.leaf, before+1)
	if c, err := fixed.GetCertificate(helloFor()); err != nil || c.OCSPStaple == nil {
		t.Fatalf("the config wrapped with the fixed chain is not stapled (%v): %s", err, e.status(e.leaf).LastError)
	}
}

// The application overwrites its own list in place after Wrap; the wrapped
// config keeps serving what it held; a Clone of the wrapped config, changed
// but with no Certificates of its own, wrapped again serves what the first
// held too, and a Clone with the new list serves the new certificate; the
// first still serves its own.
func TestMutateThenCloneAndWrapAgain(t *testing.T) {
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

// writeKeyPair writes leaf's chain and key as PEM files, as a user has them.
func writeKeyPair(t *testing.T, leaf *responder.Leaf) (certFile, keyFile string) {
	t.Helper()
	dir := t.TempDir()
	var chain []byte
	for _, der := range leaf.Certificate.Certificate {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	key, err := x509.MarshalPKCS8PrivateKey(leaf.Certificate.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "chain.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, chain, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// serveHTTP runs srv on loopback with ServeTLS(certFile, keyFile), as
// ListenAndServeTLS does, until the test ends.
func serveHTTP(t *testing.T, srv *http.Server, certFile, keyFile string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.ServeTLS(ln, certFile, keyFile) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Error(err)
		}
	})
	return ln.Addr().String()
}

// The integration most Go teams write first, ListenAndServeTLS(cert, key)
// on a wrapped config, serves the files' certificate unstapled: net/http
// loads them into its own copy. The first handshake that asks the wrapped
// config logs a WARN naming the fix, once; LoadKeyPair before Wrap, with
// ListenAndServeTLS("", ""), staples every handshake, with or without SNI.
func TestListenAndServeTLSWithFilesWarnsAndLoadKeyPairStaples(t *testing.T) {
	var logs syncBuffer
	e := newEnv(t, on, WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	certFile, keyFile := writeKeyPair(t, e.leaf)

	// The habit: files given to ServeTLS.
	habit := serveHTTP(t, &http.Server{TLSConfig: e.s.Wrap(&tls.Config{})}, certFile, keyFile)
	for range 3 {
		if staple, _, err := e.handshake(habit); err != nil || staple != nil {
			t.Fatalf("the files' certificate: stapled %v (%v)", staple != nil, err)
		}
	}
	if n := strings.Count(logs.String(), "has no certificates of its own"); n != 1 {
		t.Fatalf("the WARN naming the fix was logged %d times, want once:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "stapler.LoadKeyPair") {
		t.Fatalf("the warning does not name the fix:\n%s", logs.String())
	}

	// The fix: the files loaded before Wrap.
	cfg, err := LoadKeyPair(nil, certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	fixed := serveHTTP(t, &http.Server{TLSConfig: e.s.Wrap(cfg)}, "", "")
	e.mustGetStaple(fixed, e.leaf, ocsp.Good)
	staple, _, err := e.handshake(fixed, func(c *tls.Config) { c.ServerName = ""; c.InsecureSkipVerify = true })
	if err != nil || staple == nil {
		t.Fatalf("no SNI: stapled %v (%v)", staple != nil, err)
	}
	if _, err := LoadKeyPair(cfg, certFile, filepath.Join(t.TempDir(), "missing.pem")); err == nil {
		t.Fatal("LoadKeyPair of a missing key file returned no error")
	}
	if len(cfg.Certificates) != 1 {
		t.Fatal("LoadKeyPair changed the config it was given")
	}
}

// Promise "never another certificate's staple". Real handshakes: a listed
// certificate and one returned by the application's GetCertificate are
// stapled, then the application writes a renewed leaf (same key, another
// serial) into each one's chain array in place; every handshake after that
// must carry no staple or the renewed leaf's own, never the old leaf's.
func TestLeafMovedNeverServesOldStaple(t *testing.T) {
	e := newEnv(t, on)
	issue := func(names ...string) *responder.Leaf { return e.mustIssue(responder.ECDSA, names...) }
	renew := func(l *responder.Leaf) []byte {
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(time.Now().UnixNano()),
			Subject:      pkix.Name{CommonName: "renewed"},
			DNSNames:     l.Cert.DNSNames,
			NotBefore:    l.Cert.NotBefore,
			NotAfter:     l.Cert.NotAfter,
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			OCSPServer:   l.Cert.OCSPServer,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, e.ca.Cert, l.Key.Public(), e.ca.Key)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	listed, other, byApp := issue("listed.test"), issue("other.test"), issue("app.test")
	certs := []tls.Certificate{listed.Certificate, other.Certificate}
	appCert := byApp.Certificate
	cfg := &tls.Config{Certificates: certs, GetCertificate: func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
		if h.ServerName == "app.test" {
			return &appCert, nil
		}
		return nil, nil
	}}
	addr := e.serve(e.s.Wrap(cfg))
	e.waitStapled(listed)
	shake := func(name string) (staple []byte, leaf *x509.Certificate) {
		t.Helper()
		st, cs, err := e.handshake(addr, func(c *tls.Config) { c.ServerName = name; c.InsecureSkipVerify = true })
		if err != nil {
			t.Fatalf("handshake %s: %v", name, err)
		}
		return st, cs.PeerCertificates[0]
	}
	// The app's certificate is registered on first service.
	shake("app.test")
	e.waitStapled(byApp)
	for _, n := range []string{"listed.test", "app.test"} {
		if st, _ := shake(n); len(st) == 0 {
			t.Fatalf("%s: no staple before the renewal", n)
		}
	}
	certs[0].Certificate[0] = renew(listed)
	appCert.Certificate[0] = renew(byApp)
	for range 20 {
		for _, n := range []string{"listed.test", "app.test"} {
			st, leaf := shake(n)
			if len(st) == 0 {
				continue
			}
			resp, err := ocspParse(st)
			if err != nil {
				t.Fatalf("%s: staple does not parse: %v", n, err)
			}
			if resp.SerialNumber.Cmp(leaf.SerialNumber) != 0 {
				t.Fatalf("%s: served leaf serial %v with a staple for serial %v", n, leaf.SerialNumber, resp.SerialNumber)
			}
		}
	}
}

func ocspParse(raw []byte) (*ocsp.Response, error) { return ocsp.ParseResponse(raw, nil) }

// "Never another certificate's staple" holds for an application that renews
// by writing the new leaf's bytes into the buffer its chain already holds
// (reading the renewed file into the same buffer: same length, same
// address): the new leaf is never served with the old leaf's staple, in a
// wrapped config or through the application's GetCertificate. Found when a
// leaf written in place was told apart by the address of its bytes only.
func TestLeafBytesRewrittenInPlaceNeverServeTheOldStaple(t *testing.T) {
	for _, viaGet := range []bool{false, true} {
		name := "listed"
		if viaGet {
			name = "GetCertificate"
		}
		t.Run(name, func(t *testing.T) { rewriteLeafBytesInPlace(t, viaGet) })
	}
}

func rewriteLeafBytesInPlace(t *testing.T, viaGet bool) {
	e := newEnv(t, on)
	l, err := e.srv.Issue(responder.LeafOptions{KeyType: responder.ECDSA, DNSNames: []string{"localhost"}})
	if err != nil {
		t.Fatal(err)
	}
	certs := []tls.Certificate{l.Certificate}
	cfg := &tls.Config{Certificates: certs}
	if viaGet {
		cfg = &tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &certs[0], nil }}
	}
	addr := e.serve(e.s.Wrap(cfg))
	if viaGet {
		e.handshake(addr)
	}
	e.waitStapled(l)
	e.mustGetStaple(addr, l, ocsp.Good)
	// A renewal of the same length: same key, names and validity, a serial
	// of the same size; ECDSA signatures vary in length, so retry.
	old := certs[0].Certificate[0]
	var der []byte
	for range 1000 {
		tmpl := *l.Cert
		tmpl.SerialNumber = new(big.Int).Add(l.Cert.SerialNumber, big.NewInt(1))
		tmpl.Raw, tmpl.RawTBSCertificate, tmpl.Signature = nil, nil, nil
		d, err := x509.CreateCertificate(rand.Reader, &tmpl, e.ca.Cert, l.Key.Public(), e.ca.Key)
		if err != nil {
			t.Fatal(err)
		}
		if len(d) == len(old) {
			der = d
			break
		}
	}
	if der == nil {
		t.Skip("no renewal of the same length")
	}
	copy(old, der) // the application's own buffer, in place
	for range 3 {
		staple, cs, err := e.handshake(addr, func(c *tls.Config) { c.InsecureSkipVerify = true })
		if err != nil {
			t.Fatal(err)
		}
		served := cs.PeerCertificates[0]
		if served.SerialNumber.Cmp(l.Cert.SerialNumber) == 0 {
			t.Fatal("the old leaf is still served")
		}
		if len(staple) == 0 {
			continue
		}
		r, err := ocsp.ParseResponse(staple, nil)
		if err != nil {
			t.Fatal(err)
		}
		if r.SerialNumber.Cmp(served.SerialNumber) != 0 {
			t.Fatalf("leaf serial %v served with the staple of serial %v (the leaf it replaced)", served.SerialNumber, r.SerialNumber)
		}
	}
}

// Wrap now SHARES the application's Certificates slice when every leaf is
// parsed, and a certificate's state keeps a pointer into it (its view's
// orig). The README and Wrap's doc tell the application to "change cfg (or
// a Clone of it) and wrap that again", and promise "cfg and its
// certificates are never modified" and "a wrapped config serves what cfg
// held when it was wrapped". An application that renews a certificate in
// place (cfg.Certificates[0] = renewed; s.Wrap(cfg)) changes the memory the
// old wrapped config and the old certificate's state read: at the old
// certificate's next refresh its view is rebuilt from the renewed
// certificate with the OLD certificate's OCSP response, and the old wrapped
// config (still serving: another listener, connections not yet moved)
// staples a response for another certificate. (The write also races with
// the Stapler's workers reading the same memory.)
func TestSharedCertificatesNeverStapleAnotherCertificate(t *testing.T) {
	e := newEnv(t, on)
	old := e.leaf
	renewed, err := e.srv.Issue(responder.LeafOptions{})
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

// A certificate renewed with the same key (certbot --reuse-key), whose new
// leaf the application writes into its certificate in place
// (cert.Certificate[0] = renewed), is never served with the old leaf's
// staple: "every handshake gets the staple for the certificate it is served
// (never another certificate's staple)", or a client enforcing the staple
// (Must-Staple) fails. Found when the wrapped config shared the chain's
// backing array with the application and served the renewed leaf with the
// old one's staple.
func TestInPlaceLeafSwapNeverGetsTheOldStaple(t *testing.T) {
	e := newEnv(t, on)
	app := tlsConfigFor(e.leaf)
	app.Certificates[0].Certificate = [][]byte{e.leaf.Cert.Raw, e.ca.Cert.Raw} // the application's own chain slice
	addr := e.serve(e.s.Wrap(app))
	e.mustGetStaple(addr, e.leaf, ocsp.Good)
	// Renewed with the same key.
	tmpl := *e.leaf.Cert
	tmpl.SerialNumber = big.NewInt(time.Now().UnixNano())
	der, err := x509.CreateCertificate(rand.Reader, &tmpl, e.ca.Cert, e.leaf.Key.Public(), e.ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	renewed, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	e.r.SetStatus(renewed.SerialNumber, responder.Good())
	app.Certificates[0].Certificate[0] = der // in place
	staple, st, err := e.handshake(addr)
	if err != nil {
		t.Fatal(err)
	}
	served := st.PeerCertificates[0]
	if staple == nil {
		return
	}
	resp, err := ocsp.ParseResponse(staple, e.ca.Cert)
	if err != nil {
		t.Fatal(err)
	}
	if resp.SerialNumber.Cmp(served.SerialNumber) != 0 {
		t.Fatalf("served leaf serial %v with the staple for serial %v", served.SerialNumber, resp.SerialNumber)
	}
}
