package stapler

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/staplerkit/ocsp/responder"
	"golang.org/x/crypto/ocsp"
)

// PROBE (passes): promise "the certificate chosen ... is exactly
// crypto/tls's choice for every hello ... config MinVersion/MaxVersion set
// on the application's config, including configs whose bounds exclude TLS
// 1.3, and configs returned by GetConfigForClient with other bounds". Real
// handshakes: the application's config served plainly by crypto/tls and
// the same config wrapped, each asked by the same clients (TLS 1.2 only,
// TLS 1.3 only, both; limited suites and curves; several names); the leaf
// served (or the failure) must be the same.
func TestRealHandshakesMatchPlainCryptoTLS(t *testing.T) {
	e := newEnv(t, on)
	certs := overlappingCerts(e)
	inner := func(lo, hi uint16) *tls.Config {
		return &tls.Config{Certificates: certs, MinVersion: lo, MaxVersion: hi}
	}
	innerFor := map[string]*tls.Config{
		"x.b.test":   inner(0, tls.VersionTLS12),
		"c.test":     inner(tls.VersionTLS13, 0),
		"other.test": inner(tls.VersionTLS12, tls.VersionTLS12),
	}
	outers := []*tls.Config{
		{Certificates: certs},
		{Certificates: certs, MinVersion: tls.VersionTLS12},
		{Certificates: certs, MaxVersion: tls.VersionTLS12},
		{Certificates: certs, MinVersion: tls.VersionTLS13},
		{Certificates: certs, GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			return innerFor[h.ServerName], nil // nil: the outer config
		}},
		{Certificates: certs, MaxVersion: tls.VersionTLS12, GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			return innerFor[h.ServerName], nil
		}},
	}
	type client struct {
		lo, hi uint16
		suites []uint16
		curves []tls.CurveID
	}
	clients := []client{
		{0, 0, nil, nil},
		{tls.VersionTLS12, tls.VersionTLS12, nil, nil},
		{tls.VersionTLS13, tls.VersionTLS13, nil, nil},
		{tls.VersionTLS12, tls.VersionTLS12, []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}, nil},
		{tls.VersionTLS12, tls.VersionTLS12, []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}, []tls.CurveID{tls.CurveP384}},
		{tls.VersionTLS12, tls.VersionTLS12, []uint16{tls.TLS_RSA_WITH_AES_128_GCM_SHA256}, nil},
		{0, tls.VersionTLS13, nil, []tls.CurveID{tls.X25519}},
	}
	names := []string{"a.test", "x.b.test", "y.b.test", "c.test", "other.test", "none.test", ""}
	shake := func(addr string, c client, name string) string {
		cfg := &tls.Config{InsecureSkipVerify: true, ServerName: name, MinVersion: c.lo, MaxVersion: c.hi, CipherSuites: c.suites, CurvePreferences: c.curves}
		d := &net.Dialer{Timeout: hangLimit}
		raw, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		raw.SetDeadline(time.Now().Add(hangLimit))
		conn := tls.Client(raw, cfg)
		if err := conn.Handshake(); err != nil {
			return "failed"
		}
		st := conn.ConnectionState()
		return fmt.Sprintf("%v/%x", st.PeerCertificates[0].SerialNumber, st.Version)
	}
	seen := map[string]int{}
	for oi, outer := range outers {
		plain := e.serve(outer)
		wrapped := e.serve(e.s.Wrap(outer))
		for ci, c := range clients {
			for _, name := range names {
				want := shake(plain, c, name)
				seen[want]++
				if got := shake(wrapped, c, name); got != want {
					t.Errorf("outer %d, client %d, name %q: wrapped served %s, crypto/tls %s", oi, ci, name, got, want)
				}
			}
		}
	}
	if len(seen) < 6 || seen["failed"] == len(outers)*len(clients)*len(names) {
		t.Fatalf("too few distinct outcomes to compare: %v", seen)
	}
	t.Logf("outcomes: %v", seen)
}

// PROBE (passes): promises "exactly crypto/tls's choice" and "never another
// certificate's staple", with openssl s_client (-tls1_2 / -tls1_3,
// -sigalgs, -servername, -status) against the same config served plainly
// by crypto/tls and wrapped: the same leaf, and the wrapped server staples
// it (which staple it is, is checked by the Go-client probes).
func TestOpenSSLClientsMatchPlainCryptoTLS(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("no openssl")
	}
	e := newEnv(t, on)
	certs := overlappingCerts(e)
	outer := &tls.Config{Certificates: certs, MinVersion: tls.VersionTLS12}
	plain := e.serve(outer)
	wrapped := e.serve(e.s.Wrap(outer))
	for i := range certs {
		l, _ := x509.ParseCertificate(certs[i].Certificate[0])
		eventually(t, "staples", func() bool {
			st, err := e.s.StatusOf(CertificateID(l.Raw))
			return err == nil && st.Stapled
		})
	}
	run := func(addr string, args ...string) (leaf *x509.Certificate, stapled bool) {
		t.Helper()
		cmd := exec.Command(openssl, append([]string{"s_client", "-connect", addr, "-status"}, args...)...)
		cmd.Stdin = strings.NewReader("")
		out, _ := cmd.CombinedOutput()
		if b, _ := pem.Decode(out[max(0, bytes.Index(out, []byte("-----BEGIN CERTIFICATE-----"))):]); b != nil {
			leaf, _ = x509.ParseCertificate(b.Bytes)
		}
		return leaf, bytes.Contains(out, []byte("OCSP Response Status: successful"))
	}
	variants := [][]string{
		{"-tls1_2"},
		{"-tls1_3"},
		{"-tls1_2", "-sigalgs", "RSA-PSS+SHA256:RSA+SHA256"},
		{"-tls1_2", "-sigalgs", "ECDSA+SHA256"},
		{"-tls1_3", "-sigalgs", "rsa_pss_rsae_sha256"},
		{"-tls1_3", "-sigalgs", "ecdsa_secp256r1_sha256"},
		{"-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"},
		{"-tls1_2", "-cipher", "AES128-GCM-SHA256"},
	}
	compared := 0
	for _, v := range variants {
		for _, name := range []string{"a.test", "x.b.test", "c.test", "none.test", ""} {
			args := v
			if name != "" {
				args = append([]string{"-servername", name}, v...)
			} else {
				args = append([]string{"-noservername"}, v...)
			}
			want, _ := run(plain, args...)
			got, stapled := run(wrapped, args...)
			if (want == nil) != (got == nil) || want != nil && !want.Equal(got) {
				t.Errorf("%v: wrapped served %v, crypto/tls %v", args, serialOf(got), serialOf(want))
				continue
			}
			if got != nil {
				compared++
				if !stapled {
					t.Errorf("%v: no staple", args)
				}
			}
		}
	}
	if compared < 10 {
		t.Fatalf("only %d handshakes compared", compared)
	}
}

func serialOf(c *x509.Certificate) any {
	if c == nil {
		return "none"
	}
	return c.SerialNumber
}

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
