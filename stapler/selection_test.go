//lint:file-ignore SA1019 NameToCertificate is deprecated, but an application may still build it: the wrapper honours it, and these tests check that.

package stapler

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"reflect"
	"testing"
	"time"
	"unsafe"

	"github.com/staplerkit/ocsp/responder"
	"golang.org/x/crypto/ocsp"
)

// TestSelectionMatchesCryptoTLS: over a table of hellos (names exact and
// wildcard, upper case, no SNI, unknown names, key types, TLS versions),
// the wrapped config serves exactly the certificate crypto/tls serves from
// the same Certificates list, in real handshakes.
func TestSelectionMatchesCryptoTLS(t *testing.T) {
	e := newEnv(t, on)
	issue := func(kt responder.KeyType, names ...string) tls.Certificate {
		l, err := e.srv.Issue(responder.LeafOptions{KeyType: kt, DNSNames: names, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}})
		if err != nil {
			t.Fatal(err)
		}
		return l.Certificate
	}
	certs := []tls.Certificate{
		issue(responder.ECDSA, "first.test"),
		issue(responder.RSA, "a.example.com"),
		issue(responder.ECDSA, "a.example.com"),
		issue(responder.ECDSA, "*.example.com"),
		issue(responder.RSA, "*.example.com", "b.example.com"),
		issue(responder.ECDSA, "UPPER.example.com"),
		issue(responder.RSA, "only-rsa.test"),
		issue(responder.ECDSA, "-dash.example.com"),
		issue(responder.ECDSA, "*.deep.example.com", "deep.example.com"),
	}
	plainLn, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: certs})
	if err != nil {
		t.Fatal(err)
	}
	defer plainLn.Close()
	go func() {
		for {
			c, err := plainLn.Accept()
			if err != nil {
				return
			}
			go func() { c.(*tls.Conn).Handshake(); c.Close() }()
		}
	}()
	wrappedAddr := e.serve(e.s.Wrap(&tls.Config{Certificates: certs}))

	roots := x509.NewCertPool()
	roots.AddCert(e.ca.Cert)
	served := func(addr, name string, version uint16, suites []uint16) ([]byte, error) {
		cfg := &tls.Config{RootCAs: roots, ServerName: name, InsecureSkipVerify: true, MinVersion: version, MaxVersion: version, CipherSuites: suites}
		if name == "" {
			cfg.ServerName = "127.0.0.1" // dialled by IP: no SNI is sent
		}
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: time.Minute}, "tcp", addr, cfg)
		if err != nil {
			return nil, err
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].Raw, nil
	}
	ecdsaOnly := []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}
	rsaOnly := []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}
	for _, name := range []string{"a.example.com", "b.example.com", "c.example.com", "x.y.example.com", "x.deep.example.com", "deep.example.com",
		"upper.example.com", "UPPER.EXAMPLE.COM", "A.Example.Com", "only-rsa.test", "first.test", "nomatch.test", "", "-dash.example.com", "example.com"} {
		for _, v := range []struct {
			name    string
			version uint16
			suites  []uint16
		}{{"TLS1.3", tls.VersionTLS13, nil}, {"TLS1.2-ECDSA", tls.VersionTLS12, ecdsaOnly}, {"TLS1.2-RSA", tls.VersionTLS12, rsaOnly}} {
			t.Run(fmt.Sprintf("%s/%s", name, v.name), func(t *testing.T) {
				want, werr := served(plainLn.Addr().String(), name, v.version, v.suites)
				got, gerr := served(wrappedAddr, name, v.version, v.suites)
				if (werr == nil) != (gerr == nil) {
					t.Fatalf("crypto/tls: %v; wrapped: %v", werr, gerr)
				}
				if !bytes.Equal(want, got) {
					t.Fatal("the wrapped config chose another certificate than crypto/tls")
				}
			})
		}
	}
}

// TestSelectionByNameAllocatesNothing: choosing among many listed
// certificates by server name takes no allocation once the kind of hello
// has been seen.
func TestSelectionByNameAllocatesNothing(t *testing.T) {
	e := newEnv(t, on)
	var certs []tls.Certificate
	for i := range 20 {
		l, err := e.srv.Issue(responder.LeafOptions{DNSNames: []string{fmt.Sprintf("c%d.test", i)}})
		if err != nil {
			t.Fatal(err)
		}
		certs = append(certs, l.Certificate)
	}
	cfg := e.s.Wrap(&tls.Config{Certificates: certs})
	hello := &tls.ClientHelloInfo{ServerName: "c17.test", SupportedVersions: []uint16{tls.VersionTLS13},
		SignatureSchemes: []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256}, SupportedCurves: []tls.CurveID{tls.X25519}}
	eventually(t, "a staple", func() bool { c, _ := cfg.GetCertificate(hello); return c != nil && c.OCSPStaple != nil })
	if c, _ := cfg.GetCertificate(hello); c.Leaf.DNSNames[0] != "c17.test" {
		t.Fatalf("chose %v", c.Leaf.DNSNames)
	}
	if n := testing.AllocsPerRun(1000, func() { cfg.GetCertificate(hello) }); n != 0 {
		t.Fatalf("%v allocations per selection, want 0", n)
	}

	// A name with two certificates (RSA listed first, then ECDSA), and a
	// client that supports only the second: the candidates are walked
	// without allocating either.
	rsa, err := e.srv.Issue(responder.LeafOptions{KeyType: responder.RSA, DNSNames: []string{"both.test"}})
	if err != nil {
		t.Fatal(err)
	}
	ec, err := e.srv.Issue(responder.LeafOptions{DNSNames: []string{"both.test"}})
	if err != nil {
		t.Fatal(err)
	}
	both := e.s.Wrap(&tls.Config{Certificates: append(certs[:1:1], rsa.Certificate, ec.Certificate)})
	hello = &tls.ClientHelloInfo{ServerName: "both.test", SupportedVersions: []uint16{tls.VersionTLS13},
		SignatureSchemes: []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256}, SupportedCurves: []tls.CurveID{tls.X25519}}
	eventually(t, "a staple for both.test", func() bool { c, _ := both.GetCertificate(hello); return c != nil && c.OCSPStaple != nil })
	if c, _ := both.GetCertificate(hello); c.Leaf.SerialNumber.Cmp(ec.Cert.SerialNumber) != 0 {
		t.Fatal("chose the RSA certificate for an ECDSA-only client")
	}
	if n := testing.AllocsPerRun(1000, func() { both.GetCertificate(hello) }); n != 0 {
		t.Fatalf("%v allocations per selection among two candidates, want 0", n)
	}
}

// TestWrappedEmptyEntryChosenByCryptoTLS: for a TLS 1.3 hello with no
// server name and no signature_algorithms, crypto/tls chooses an empty
// tls.Certificate{} listed first (no key is looked at), and so does the
// wrapped config: it serves the entry as it is.
func TestWrappedEmptyEntryChosenByCryptoTLS(t *testing.T) {
	e := newEnv(t, on)
	list := append([]tls.Certificate{{}}, overlappingCerts(e)...)
	cfg := e.s.Wrap(&tls.Config{Certificates: list})
	h := &tls.ClientHelloInfo{SupportedVersions: []uint16{tls.VersionTLS13}}
	if h.SupportsCertificate(&list[0]) != nil {
		t.Skip("this crypto/tls does not choose the empty entry")
	}
	c, err := cfg.GetCertificate(h)
	if err != nil || c == nil || len(c.Certificate) != 0 {
		t.Fatalf("served %v (%v), crypto/tls serves the empty entry", c, err)
	}
}

// leafWithKey makes a leaf for names with key, signed by e's CA, with e's
// responder URL.
func leafWithKey(t *testing.T, e *env, key crypto.Signer, names ...string) tls.Certificate {
	t.Helper()
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: names[0]},
		DNSNames:     names,
		NotBefore:    e.clock.Now().Add(-time.Hour),
		NotAfter:     e.clock.Now().Add(90 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		OCSPServer:   []string{e.srv.URL},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, e.ca.Cert, key.Public(), e.ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der, e.ca.Cert.Raw}, PrivateKey: key, Leaf: leaf}
}

// A wrapped config chooses as crypto/tls alone does, over real handshakes:
// certificates of every key kind (P-384, Ed25519, RSA limited to PKCS #1,
// RSA, P-256) for one name, server configs that are Clones of one wrapped
// config (all alive) with other versions, curves and suites, and clients
// of several kinds.
func TestSelectionTable(t *testing.T) {
	e := newEnv(t, on)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	rsa1, _ := rsa.GenerateKey(rand.Reader, 2048)
	rsa2, _ := rsa.GenerateKey(rand.Reader, 2048)
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	const name = "www.example.com"
	pkcs1 := leafWithKey(t, e, rsa1, name)
	pkcs1.SupportedSignatureAlgorithms = []tls.SignatureScheme{tls.PKCS1WithSHA256}
	certs := []tls.Certificate{
		leafWithKey(t, e, other, "other.test"),
		leafWithKey(t, e, p384, name, "*.example.com"),
		leafWithKey(t, e, ed, name),
		pkcs1,
		leafWithKey(t, e, rsa2, "*.example.com"),
		leafWithKey(t, e, p256, name),
	}
	servers := map[string]func(*tls.Config){
		"default": func(*tls.Config) {},
		"max12":   func(c *tls.Config) { c.MaxVersion = tls.VersionTLS12 },
		"x25519":  func(c *tls.Config) { c.CurvePreferences = []tls.CurveID{tls.X25519}; c.MaxVersion = tls.VersionTLS12 },
		"rsa12": func(c *tls.Config) {
			c.MaxVersion = tls.VersionTLS12
			c.CipherSuites = []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_RSA_WITH_AES_128_GCM_SHA256}
		},
		"min13": func(c *tls.Config) { c.MinVersion = tls.VersionTLS13 },
	}
	clients := map[string]func(*tls.Config){
		"default": func(*tls.Config) {},
		"tls12":   func(c *tls.Config) { c.MaxVersion = tls.VersionTLS12 },
		"p256only": func(c *tls.Config) {
			c.MaxVersion = tls.VersionTLS12
			c.CurvePreferences = []tls.CurveID{tls.CurveP256}
		},
		"p384only": func(c *tls.Config) { c.CurvePreferences = []tls.CurveID{tls.CurveP384} },
		"staticrsa": func(c *tls.Config) {
			c.MaxVersion = tls.VersionTLS12
			c.CipherSuites = []uint16{tls.TLS_RSA_WITH_AES_128_GCM_SHA256}
		},
		"ecdsa12": func(c *tls.Config) {
			c.MaxVersion = tls.VersionTLS12
			c.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}
		},
	}
	wrapped := e.s.Wrap(&tls.Config{Certificates: certs})
	roots := x509.NewCertPool()
	roots.AddCert(e.ca.Cert)
	var keep []*tls.Config
	for _, sni := range []string{name, "a.example.com"} {
		for sn, sm := range servers {
			w := wrapped.Clone()
			sm(w)
			keep = append(keep, w)
			plain := &tls.Config{Certificates: certs}
			sm(plain)
			for cn, cm := range clients {
				want, werr := loopbackHandshake(t, plain, roots, sni, cm)
				got, gerr := loopbackHandshake(t, w, roots, sni, cm)
				if (werr == nil) != (gerr == nil) {
					t.Errorf("%s server %s client %s: crypto/tls: %v; wrapped: %v", sni, sn, cn, werr, gerr)
					continue
				}
				if werr == nil && !bytes.Equal(want.Raw, got.Raw) {
					t.Errorf("%s server %s client %s: wrapped chose %v (%s), crypto/tls %v (%s)", sni, sn, cn, got.PublicKeyAlgorithm, got.DNSNames, want.PublicKeyAlgorithm, want.DNSNames)
				}
			}
		}
	}
	_ = keep
}

// A Clone of a wrapped config on which BuildNameToCertificate was called
// (legacy code calls it on every config it assembles) serves what the
// original did: the wrapped config has no Certificates, so the map is
// empty, and an empty NameToCertificate selects nothing (crypto/tls falls
// back to the Certificates list). Found when Wrap took the empty map for a
// changed selection, dropped the certificates captured at Wrap, and every
// handshake failed.
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

// TestAChoiceThroughABuiltNameToCertificateAllocatesNothing: legacy code
// calls BuildNameToCertificate before Wrap; a wildcard leaf is then found
// under "*.b.test" for a server name it covers, after the exact lookup
// misses. The handshake hit (a staple at hand) must allocate nothing, as
// it does without NameToCertificate, for that name and for one that no
// entry has.
func TestAChoiceThroughABuiltNameToCertificateAllocatesNothing(t *testing.T) {
	e := newEnv(t, on)
	wild := e.mustIssue(responder.ECDSA, "*.b.test")
	a := e.mustIssue(responder.ECDSA, "a.test")
	app := &tls.Config{Certificates: []tls.Certificate{a.Certificate, wild.Certificate}}
	app.BuildNameToCertificate()
	cfg := e.s.Wrap(app)
	for _, tc := range []struct {
		name string
		want *responder.Leaf
	}{{"x.b.test", wild}, {"none.test", a}} {
		hello := &tls.ClientHelloInfo{ServerName: tc.name, SupportedVersions: []uint16{tls.VersionTLS13},
			SignatureSchemes: []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256}, SupportedCurves: []tls.CurveID{tls.X25519}}
		eventually(t, "a staple for "+tc.name, func() bool { c, _ := cfg.GetCertificate(hello); return c != nil && c.OCSPStaple != nil })
		if c, _ := cfg.GetCertificate(hello); c.Leaf.SerialNumber.Cmp(tc.want.Cert.SerialNumber) != 0 {
			t.Fatalf("%s: chose %v", tc.name, c.Leaf.DNSNames)
		}
		if n := testing.AllocsPerRun(1000, func() { cfg.GetCertificate(hello) }); n != 0 {
			t.Errorf("%s: %v allocations per handshake hit, want 0", tc.name, n)
		}
	}
}

// overlappingCerts is a list of ECDSA and RSA certificates for overlapping
// names, exact and wildcard, issued by e's CA.
func overlappingCerts(e *env) []tls.Certificate {
	issue := func(kt responder.KeyType, names ...string) tls.Certificate {
		return e.mustIssue(kt, names...).Certificate
	}
	return []tls.Certificate{
		issue(responder.ECDSA, "other.test"),
		issue(responder.RSA, "a.test"),
		issue(responder.ECDSA, "a.test"),
		issue(responder.ECDSA, "*.b.test"),
		issue(responder.RSA, "x.b.test"),
		issue(responder.RSA, "c.test"),
	}
}

// setHelloConfig sets the unexported config of a hello, as crypto/tls does
// for the connection's config (the one SupportsCertificate consults, and
// selection's caches are keyed by).
func setHelloConfig(t testing.TB, h *tls.ClientHelloInfo, cfg *tls.Config) {
	t.Helper()
	f, ok := reflect.TypeFor[tls.ClientHelloInfo]().FieldByName("config")
	if !ok || len(f.Index) != 1 || f.Type != reflect.TypeFor[*tls.Config]() {
		t.Skip("no config field in tls.ClientHelloInfo")
	}
	*(*unsafe.Pointer)(unsafe.Add(unsafe.Pointer(h), f.Offset)) = unsafe.Pointer(cfg)
}
