package stapler

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"runtime"
	"testing"
	"time"
	"unsafe"

	"github.com/staplerkit/ocsp/responder"
)

// attack4Handshake runs one real handshake on loopback, the server side
// with server (used as tls.Server(conn, server), as a per-connection
// config is), and returns the leaf the client got.
func attack4Handshake(t *testing.T, server *tls.Config, roots *x509.CertPool, name string, client func(*tls.Config)) (*x509.Certificate, error) {
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
		l, err := e.srv.Issue(responder.LeafOptions{KeyType: kt, DNSNames: names})
		if err != nil {
			t.Fatal(err)
		}
		return l.Certificate
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
	want, err := attack4Handshake(t, plain, roots, "www.example.com", client)
	if err != nil {
		t.Fatalf("crypto/tls alone: %v", err)
	}

	reused := false
	for attempt := 0; attempt < 50 && !reused; attempt++ {
		// A connection with the default settings: "ECDSA supported" cached
		// under this clone's address.
		b := wrapped.Clone()
		if _, err := attack4Handshake(t, b, roots, "www.example.com", client); err != nil {
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
			got, err := attack4Handshake(t, a, roots, "www.example.com", client)
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
