package stapler

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"

	"github.com/staplerkit/ocsp/responder"
	"golang.org/x/crypto/ocsp"
)

// PROBE (passes): promise "never another certificate's staple". Real
// handshakes: a listed certificate and one returned by the application's
// GetCertificate are stapled, then the application writes a renewed leaf
// (same key, another serial) into each one's chain array in place; every
// handshake after that must carry no staple or the renewed leaf's own,
// never the old leaf's.
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
