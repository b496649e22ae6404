package stapler

import (
	"crypto/tls"
	"crypto/x509"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/staplerkit/ocsp/config"
	"github.com/staplerkit/ocsp/responder"
)

// HELD UP (no race reported under -race).
// TestRaceHandshakesWrapRemove: real handshakes on several wrapped
// configs (a Clone per connection with other versions, a GetConfigForClient
// config) while the application wraps again, removes certificates, changes
// their settings and the configuration. Run with -race.
func TestRaceHandshakesWrapRemove(t *testing.T) {
	e := newEnv(t, on)
	var certs []tls.Certificate
	for i := 0; i < 4; i++ {
		kt := responder.ECDSA
		if i%2 == 1 {
			kt = responder.RSA
		}
		l, err := e.srv.Issue(responder.LeafOptions{KeyType: kt, DNSNames: []string{"www.example.com", "*.example.com"}})
		if err != nil {
			t.Fatal(err)
		}
		certs = append(certs, l.Certificate)
	}
	base := &tls.Config{Certificates: certs}
	wrapped := e.s.Wrap(base)
	inner := &tls.Config{Certificates: certs[1:]}
	outer := e.s.Wrap(&tls.Config{Certificates: certs[:1], GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) { return inner, nil }})
	roots := x509.NewCertPool()
	roots.AddCert(e.ca.Cert)
	var stop atomic.Bool
	var wg sync.WaitGroup
	const rounds = 40
	for g := 0; g < 3; g++ {
		wg.Go(func() {
			for i := 0; i < rounds; i++ {
				srv := wrapped.Clone()
				if i%2 == 0 {
					srv.MaxVersion = tls.VersionTLS12
				}
				if g == 2 {
					srv = outer
				}
				client := func(c *tls.Config) {
					if i%3 == 0 {
						c.MaxVersion = tls.VersionTLS12
					}
				}
				attack4Handshake(t, srv, roots, "a.example.com", client)
			}
		})
	}
	wg.Go(func() {
		for i := 0; !stop.Load() && i < 200; i++ {
			c := base.Clone()
			c.MinVersion = tls.VersionTLS12
			e.s.Wrap(c)
			id := CertificateID(certs[i%len(certs)].Certificate[0])
			e.s.Remove(id)
			e.s.SetPolicy(id, Strict)
			e.s.UpdateStapling(id, config.StaplingUpdate{})
			e.s.Status()
		}
	})
	wg.Wait()
	stop.Store(true)
}
