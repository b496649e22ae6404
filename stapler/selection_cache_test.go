package stapler

import (
	"bytes"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"net"
	"runtime"
	"testing"
	"time"
	"unsafe"

	"github.com/staplerkit/ocsp/responder"
)

// Two configs with the same MaxVersion and different MinVersion (the usual
// pair: MinVersion left at 0, and MinVersion TLS 1.2) keep their own slots
// in the allowed-versions cache, so handshakes alternating between them
// allocate nothing. Found when the slot index, (minV ^ maxV*0x9e3779b97f4a7c15)
// >> 60, depended on MaxVersion alone (* binds tighter than ^), and the two
// configs evicted each other on every TLS 1.3 hello. Control: the same pair
// with equal bounds.
func TestAllowedCacheSlotIgnoresMinVersion(t *testing.T) {
	e := newEnv(t, on)
	issue := func(names ...string) *responder.Leaf { return e.mustIssue(responder.ECDSA, names...) }
	a, b := issue("a.test"), issue("b.test")
	list := []tls.Certificate{a.Certificate, b.Certificate}
	run := func(min1, min2 uint16) float64 {
		c1 := e.s.Wrap(&tls.Config{Certificates: list, MinVersion: min1})
		c2 := e.s.Wrap(&tls.Config{Certificates: list, MinVersion: min2})
		h1 := &tls.ClientHelloInfo{ServerName: "a.test", SupportedVersions: []uint16{tls.VersionTLS13, tls.VersionTLS12}, SignatureSchemes: []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256}}
		h2 := *h1
		setHelloConfig(t, h1, c1)
		setHelloConfig(t, &h2, c2)
		for _, p := range []struct {
			c *tls.Config
			h *tls.ClientHelloInfo
		}{{c1, h1}, {c2, &h2}} {
			// Warm up: the staple in place, every cache filled once.
			eventually(t, "a stapled hit", func() bool {
				c, err := p.c.GetCertificate(p.h)
				return err == nil && c != nil && c.OCSPStaple != nil
			})
		}
		return testing.AllocsPerRun(200, func() {
			c1.GetCertificate(h1)
			c2.GetCertificate(&h2)
		})
	}
	if n := run(tls.VersionTLS12, tls.VersionTLS12); n != 0 {
		t.Fatalf("control (equal bounds): %v allocations per pair of handshakes", n)
	}
	if n := run(0, tls.VersionTLS12); n != 0 {
		t.Fatalf("configs with MinVersion 0 and TLS 1.2 (MaxVersion 0): %v allocations per pair of handshakes, want 0", n)
	}
}

// plainServe serves cfg with crypto/tls alone (no Stapler) until the test ends.
func servePlain(t *testing.T, cfg *tls.Config) string {
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

func servedLeaf(t *testing.T, roots *x509.CertPool, addr, name string, mod func(*tls.Config)) ([]byte, error) {
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
		return e.mustIssue(kt, names...).Certificate
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
	legacyPlainAddr := servePlain(t, legacyPlain)

	roots := x509.NewCertPool()
	roots.AddCert(e.ca.Cert)
	client := func(c *tls.Config) { c.MaxVersion = tls.VersionTLS12 }

	// One TLS 1.2 handshake on the main config caches "ECDSA supported".
	if _, err := servedLeaf(t, roots, mainAddr, "www.example.com", client); err != nil {
		t.Fatalf("main config: %v", err)
	}
	want, werr := servedLeaf(t, roots, legacyPlainAddr, "www.example.com", client)
	if werr != nil {
		t.Fatalf("crypto/tls with the legacy settings: %v", werr)
	}
	got, gerr := servedLeaf(t, roots, legacyAddr, "www.example.com", client)
	if gerr != nil {
		t.Fatalf("the same client on the clone with legacy settings fails where crypto/tls succeeds: %v", gerr)
	}
	if !bytes.Equal(want, got) {
		t.Fatal("the clone chose another certificate than crypto/tls")
	}
}

// signerOnly hides the crypto.Decrypter of an RSA key, as a KMS or
// HSM key does: it can sign, not decrypt.
type signerOnly struct{ crypto.Signer }

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
		return e.mustIssue(kt, names...).Certificate
	}
	signOnly := issue(responder.RSA, "www.example.com")
	signOnly.PrivateKey = signerOnly{signOnly.PrivateKey.(crypto.Signer)}
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
	plainAddr := servePlain(t, plain)
	wrappedAddr := e.serve(e.s.Wrap(wrappedCfg))
	roots := x509.NewCertPool()
	roots.AddCert(e.ca.Cert)
	client := func(c *tls.Config) {
		c.MaxVersion = tls.VersionTLS12
		c.CipherSuites = []uint16{tls.TLS_RSA_WITH_AES_128_GCM_SHA256}
	}
	want, werr := servedLeaf(t, roots, plainAddr, "www.example.com", client)
	got, gerr := servedLeaf(t, roots, wrappedAddr, "www.example.com", client)
	if (werr == nil) != (gerr == nil) {
		t.Fatalf("crypto/tls: %v; wrapped: %v", werr, gerr)
	}
	if !bytes.Equal(want, got) {
		t.Fatal("the wrapped config chose another certificate than crypto/tls")
	}
}

// loopbackHandshake runs one real handshake on loopback, the server side
// with server (used as tls.Server(conn, server), as a per-connection
// config is), and returns the leaf the client got.
func loopbackHandshake(t *testing.T, server *tls.Config, roots *x509.CertPool, name string, client func(*tls.Config)) (*x509.Certificate, error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(hangLimit))
		done <- tls.Server(c, server).Handshake()
	}()
	cfg := &tls.Config{RootCAs: roots, ServerName: name}
	if client != nil {
		client(cfg)
	}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: hangLimit}, "tcp", ln.Addr().String(), cfg)
	serr := <-done
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if serr != nil {
		return nil, serr
	}
	return conn.ConnectionState().PeerCertificates[0], nil
}

// TestSupportCacheConfigAddressReused: the name index's support
// cache keys a hello's answer by the hello's lists and the *address* of the
// connection's config (helloFingerprint(hello, cfg uintptr)), holding
// nothing alive. A server that makes a config per connection
// (tls.Server(conn, wrapped.Clone()) with settings of its own, as the
// README allows: "an unchanged Clone of one is returned as it is") gets a
// new config at an address a collected clone with other settings had: the
// answer computed under the old config's cipher suites is served under the
// new one's. Here the old clone accepted ECDHE-ECDSA, the new one only
// ECDHE-RSA: crypto/tls would choose the RSA certificate; the wrapped
// config picks the ECDSA one from the stale cache and the handshake fails
// ("no cipher suite supported by both client and server").
func TestSupportCacheConfigAddressReused(t *testing.T) {
	e := newEnv(t, on)
	issue := func(kt responder.KeyType, names ...string) tls.Certificate {
		return e.mustIssue(kt, names...).Certificate
	}
	certs := []tls.Certificate{
		issue(responder.ECDSA, "other.test"),
		issue(responder.ECDSA, "www.example.com"),
		issue(responder.RSA, "www.example.com"),
	}
	wrapped := e.s.Wrap(&tls.Config{Certificates: certs})
	roots := x509.NewCertPool()
	roots.AddCert(e.ca.Cert)
	client := func(c *tls.Config) { c.MaxVersion = tls.VersionTLS12 }
	rsaOnly := []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}

	// crypto/tls's own answer for the RSA-only settings.
	plain := &tls.Config{Certificates: certs, CipherSuites: rsaOnly}
	want, err := loopbackHandshake(t, plain, roots, "www.example.com", client)
	if err != nil {
		t.Fatalf("crypto/tls alone: %v", err)
	}

	reused := false
	for attempt := 0; attempt < 50 && !reused; attempt++ {
		// A connection with the default settings: "ECDSA supported" cached
		// under this clone's address.
		b := wrapped.Clone()
		if _, err := loopbackHandshake(t, b, roots, "www.example.com", client); err != nil {
			t.Fatalf("default clone: %v", err)
		}
		addrB := uintptr(unsafe.Pointer(b))
		b = nil
		runtime.GC()
		runtime.GC()
		// Later connections' clones, RSA-only; one lands where b was.
		var keep []*tls.Config
		for i := 0; i < 20000; i++ {
			a := wrapped.Clone()
			if uintptr(unsafe.Pointer(a)) != addrB {
				keep = append(keep, a)
				continue
			}
			reused = true
			a.CipherSuites = rsaOnly
			got, err := loopbackHandshake(t, a, roots, "www.example.com", client)
			if err != nil {
				t.Fatalf("a per-connection clone at a collected clone's address fails where crypto/tls succeeds: %v", err)
			}
			if got.PublicKeyAlgorithm != want.PublicKeyAlgorithm {
				t.Fatalf("chose a %v certificate; crypto/tls chooses %v", got.PublicKeyAlgorithm, want.PublicKeyAlgorithm)
			}
			break
		}
		runtime.KeepAlive(keep)
	}
	if !reused {
		t.Skip("no address reused in 50 attempts")
	}
}

// TestACloneWithoutCipherSuitesNeverChangesTheWrappedConfigsChoice: a
// Clone of a wrapped config selects with the wrapped config's index, and
// its hellos carry the Clone. A Clone whose CipherSuites is empty (not nil:
// no TLS 1.2 suite at all, where nil means crypto/tls's defaults) refuses a
// TLS 1.2 client, after choosing its certificate; what that choice learnt
// of the client must not decide the choice of the original config, whose
// CipherSuites is nil, for the same client. Real handshakes, against
// crypto/tls serving the same lists unwrapped.
func TestACloneWithoutCipherSuitesNeverChangesTheWrappedConfigsChoice(t *testing.T) {
	e := newEnv(t, on)
	certs := []tls.Certificate{
		e.mustIssue(responder.RSA, "other.test").Certificate,
		e.mustIssue(responder.ECDSA, "a.test").Certificate,
	}
	app := &tls.Config{Certificates: certs}
	wrapped := e.s.Wrap(app)
	wrappedNoSuites := wrapped.Clone()
	wrappedNoSuites.CipherSuites = []uint16{}
	plainNoSuites := app.Clone()
	plainNoSuites.CipherSuites = []uint16{}

	served := func(addr string) ([]byte, error) {
		cfg := &tls.Config{ServerName: "a.test", InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12}
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: hangLimit}, "tcp", addr, cfg)
		if err != nil {
			return nil, err
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].Raw, nil
	}
	_, werr := served(e.serve(plainNoSuites))
	_, gerr := served(e.serve(wrappedNoSuites))
	if werr == nil || gerr == nil {
		t.Fatalf("a config without TLS 1.2 suites served a TLS 1.2 client: crypto/tls: %v; wrapped clone: %v", werr, gerr)
	}
	want, werr := served(e.serve(app))
	got, gerr := served(e.serve(wrapped))
	if werr != nil || gerr != nil {
		t.Fatalf("crypto/tls: %v; wrapped: %v", werr, gerr)
	}
	if !bytes.Equal(want, got) {
		t.Fatalf("the wrapped config served another certificate than crypto/tls (want the ECDSA one for a.test; got the one for other.test: %v)",
			bytes.Equal(got, certs[0].Certificate[0]))
	}
}
