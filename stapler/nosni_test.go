package stapler

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/staplerkit/ocsp/responder"
)

// noSNI dials by IP address with no ServerName: a Go client then sends no
// server name indication (and checks the certificate's IP address).
func noSNI(version uint16) func(*tls.Config) {
	return func(c *tls.Config) {
		c.ServerName = ""
		c.MinVersion, c.MaxVersion = version, version
	}
}

var tlsVersions = []struct {
	name    string
	version uint16
}{{"TLS1.2", tls.VersionTLS12}, {"TLS1.3", tls.VersionTLS13}}

// sniSeen records the server names that reached the server.
func sniSeen(names *atomic.Value) func(*tls.ClientHelloInfo) (*tls.Config, error) {
	return func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		names.Store(h.ServerName)
		return nil, nil
	}
}

func TestHandshakesWithoutSNIAreStapled(t *testing.T) {
	e := newEnv(t, on)
	other, err := e.srv.Issue(responder.LeafOptions{DNSNames: []string{"other.test"}})
	if err != nil {
		t.Fatal(err)
	}
	var appCalls atomic.Int32
	for _, tc := range []struct {
		name string
		cfg  *tls.Config
		// appCalled: the application's GetCertificate is consulted without
		// SNI (only when it has no Certificates, as crypto/tls does).
		appCalled bool
	}{
		{name: "certificates", cfg: &tls.Config{Certificates: []tls.Certificate{e.leaf.Certificate}}},
		{name: "certificates-and-getcertificate", cfg: &tls.Config{
			Certificates: []tls.Certificate{e.leaf.Certificate},
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
				appCalls.Add(1)
				return &other.Certificate, nil
			},
		}},
		{name: "getcertificate-only", appCalled: true, cfg: &tls.Config{
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
				appCalls.Add(1)
				return &e.leaf.Certificate, nil
			},
		}},
		{name: "getconfigforclient", cfg: &tls.Config{
			GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
				return &tls.Config{Certificates: []tls.Certificate{e.leaf.Certificate}}, nil
			},
		}},
	} {
		var seen atomic.Value
		cfg := tc.cfg.Clone()
		if cfg.GetConfigForClient == nil {
			cfg.GetConfigForClient = sniSeen(&seen)
		}
		addr := e.serve(e.s.Wrap(cfg))
		for _, v := range tlsVersions {
			t.Run(tc.name+"/"+v.name, func(t *testing.T) {
				appCalls.Store(0)
				staple, st, err := e.handshake(addr, noSNI(v.version))
				if err != nil {
					t.Fatal(err)
				}
				if name, _ := seen.Load().(string); name != "" {
					t.Fatalf("the client sent SNI %q", name)
				}
				if !st.PeerCertificates[0].Equal(e.leaf.Cert) {
					t.Fatalf("served %s", st.PeerCertificates[0].Subject)
				}
				if resp, err := ocsp.ParseResponseForCert(staple, e.leaf.Cert, e.ca.Cert); err != nil || resp.Status != ocsp.Good {
					t.Fatalf("no valid staple without SNI: %v", err)
				}
				if got := appCalls.Load() > 0; got != tc.appCalled {
					t.Fatalf("application's GetCertificate called: %v, want %v", got, tc.appCalled)
				}
			})
		}
	}
}

func TestStrictRefusesARevokedLeafWithoutSNI(t *testing.T) {
	e := newEnv(t, on, WithPolicy(Strict))
	e.r.SetStatus(e.leaf.Cert.SerialNumber, responder.Revoked(e.clock.Now().Add(-time.Hour), ocsp.KeyCompromise))
	plain := e.serve(e.s.Wrap(&tls.Config{Certificates: []tls.Certificate{e.leaf.Certificate}}))
	inner := e.serve(e.s.Wrap(&tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
		return &tls.Config{Certificates: []tls.Certificate{e.leaf.Certificate}}, nil
	}}))
	e.waitStapled(e.leaf)
	for _, addr := range []string{plain, inner} {
		for _, v := range tlsVersions {
			if _, st, err := e.handshake(addr, noSNI(v.version)); err == nil {
				t.Fatalf("%s without SNI: strict served a revoked certificate (staple %d bytes)", v.name, len(st.OCSPResponse))
			}
			if _, _, err := e.handshake(addr); err == nil {
				t.Fatalf("%s with SNI: strict served a revoked certificate", v.name)
			}
		}
	}
}

func TestMustStapleLeafIsRefusedWithoutSNI(t *testing.T) {
	e := newEnv(t, on, WithColdWait(50*time.Millisecond))
	ms, err := e.srv.Issue(responder.LeafOptions{MustStaple: true})
	if err != nil {
		t.Fatal(err)
	}
	e.r.SetSerialFault(ms.Cert.SerialNumber, responder.Fault{Kind: responder.FaultHTTP503HTML})
	addr := e.wrapAndServe(ms.Certificate)
	for _, v := range tlsVersions {
		if _, _, err := e.handshake(addr, noSNI(v.version)); err == nil {
			t.Fatalf("%s without SNI: must-staple certificate served without a staple", v.name)
		}
	}
	// Once stapled, the same handshakes succeed.
	e.r.SetSerialFault(ms.Cert.SerialNumber, responder.Fault{})
	if _, err := e.s.Test(context.Background(), CertificateID(ms.Cert.Raw)); err != nil {
		t.Fatal(err)
	}
	for _, v := range tlsVersions {
		staple, _, err := e.handshake(addr, noSNI(v.version))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ocsp.ParseResponseForCert(staple, ms.Cert, e.ca.Cert); err != nil {
			t.Fatalf("%s: %v", v.name, err)
		}
	}
}

// A wrapped client config dialling an IP address (no SNI) still applies the
// policy to its own certificate: a must-staple client certificate with no
// staple is not sent.
func TestClientSideWithoutSNIIsPoliced(t *testing.T) {
	e := newEnv(t, on, WithColdWait(50*time.Millisecond))
	ms, err := e.srv.Issue(responder.LeafOptions{MustStaple: true})
	if err != nil {
		t.Fatal(err)
	}
	e.r.SetSerialFault(ms.Cert.SerialNumber, responder.Fault{Kind: responder.FaultHTTP503HTML})
	serverLeaf, _ := e.srv.Issue(responder.LeafOptions{})
	roots := x509.NewCertPool()
	roots.AddCert(e.ca.Cert)
	addr := e.serve(&tls.Config{
		Certificates: []tls.Certificate{serverLeaf.Certificate},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    roots,
	})
	client := e.s.Wrap(&tls.Config{Certificates: []tls.Certificate{ms.Certificate}, RootCAs: roots})
	for _, v := range tlsVersions {
		c := client.Clone()
		c.MinVersion, c.MaxVersion = v.version, v.version
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: hangLimit}, "tcp", addr, c)
		if err == nil {
			err = conn.Handshake()
			conn.Close()
		}
		if err == nil || !strings.Contains(err.Error(), "refusing certificate") {
			t.Fatalf("%s: a must-staple client certificate was sent without a staple: %v", v.name, err)
		}
		if !errors.Is(err, ErrNoStaple) {
			t.Fatalf("%s: %v", v.name, err)
		}
	}
}
