package stapler

import (
	"crypto/tls"
	"fmt"
	"net"
	"testing"
	"time"
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
	certs := attack6Certs(e)
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
