package stapler

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/staplerkit/ocsp/responder"
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
	list := append([]tls.Certificate{{}}, attack6Certs(e)...)
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
