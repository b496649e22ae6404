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
	"math/big"
	"testing"
	"time"
)

// attack4Leaf makes a leaf for names with key, signed by e's CA, with e's
// responder URL.
func attack4Leaf(t *testing.T, e *env, key crypto.Signer, names ...string) tls.Certificate {
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

// TestSelectionTable: real handshakes, wrapped against crypto/tls
// alone, over certificates of every key kind (P-384, Ed25519, RSA limited
// to PKCS #1, RSA, P-256) for one name, server configs that are Clones of
// one wrapped config (all alive) with other versions, curves and suites,
// and clients of several kinds. HELD UP unless it fails.
func TestSelectionTable(t *testing.T) {
	e := newEnv(t, on)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	rsa1, _ := rsa.GenerateKey(rand.Reader, 2048)
	rsa2, _ := rsa.GenerateKey(rand.Reader, 2048)
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	const name = "www.example.com"
	pkcs1 := attack4Leaf(t, e, rsa1, name)
	pkcs1.SupportedSignatureAlgorithms = []tls.SignatureScheme{tls.PKCS1WithSHA256}
	certs := []tls.Certificate{
		attack4Leaf(t, e, other, "other.test"),
		attack4Leaf(t, e, p384, name, "*.example.com"),
		attack4Leaf(t, e, ed, name),
		pkcs1,
		attack4Leaf(t, e, rsa2, "*.example.com"),
		attack4Leaf(t, e, p256, name),
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
				want, werr := attack4Handshake(t, plain, roots, sni, cm)
				got, gerr := attack4Handshake(t, w, roots, sni, cm)
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
