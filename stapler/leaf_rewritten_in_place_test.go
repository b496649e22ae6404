package stapler

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"math/big"
	"testing"

	"github.com/staplerkit/ocsp/responder"
	"golang.org/x/crypto/ocsp"
)

// FINDING (fixed): promise "never another certificate's staple". view.leafMoved
// tells a leaf written into the application's chain in place by the
// address of the leaf's bytes only. An application that renews by writing
// the new leaf's bytes into the buffer its chain already holds (reading
// the renewed file into the same buffer: same length, same address) is
// served the new leaf with the old leaf's staple (another serial).
// The same through the application's GetCertificate (sameCertificate also
// compares addresses only).
func TestLeafBytesRewrittenInPlaceNeverServeTheOldStaple(t *testing.T) {
	for _, viaGet := range []bool{false, true} {
		name := "listed"
		if viaGet {
			name = "GetCertificate"
		}
		t.Run(name, func(t *testing.T) { attack6RewriteBytes(t, viaGet) })
	}
}

func attack6RewriteBytes(t *testing.T, viaGet bool) {
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
