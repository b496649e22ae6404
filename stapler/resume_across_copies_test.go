package stapler

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"testing"
)

// TestCloneOfAWrappedConfigNeverResumes: the wrapped config's
// UnwrapSession decrypts tickets with the wrapped config itself
// (c.DecryptTicket on the config Wrap made), while crypto/tls encrypts
// them with the connection's config. http.Server.ServeTLS (and anyone
// else) serves a Clone of the wrapped config, whose ticket keys are its
// own (generated on first use, or set by SetSessionTicketKeys): no ticket
// it issues ever decrypts, so no session is ever resumed, silently — every
// connection is a full handshake. Expected: a Clone of a wrapped config
// resumes as the config itself does.
func TestCloneOfAWrappedConfigNeverResumes(t *testing.T) {
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(v), func(t *testing.T) {
			e := newEnv(t, on)
			wrapped := e.s.Wrap(tlsConfigFor(e.leaf))
			addr := e.serveGreeting(wrapped.Clone()) // as http.Server.ServeTLS does
			e.waitStapled(e.leaf)
			roots := x509.NewCertPool()
			roots.AddCert(e.ca.Cert)
			client := &tls.Config{RootCAs: roots, ServerName: "localhost", ClientSessionCache: tls.NewLRUClientSessionCache(8), MinVersion: v, MaxVersion: v}
			if resumed, err := dialSession(addr, client); err != nil || resumed {
				t.Fatalf("first connection: resumed %v, %v", resumed, err)
			}
			resumed, err := dialSession(addr, client)
			if err != nil {
				t.Fatal(err)
			}
			if !resumed {
				t.Fatal("a Clone of a wrapped config never resumes a session (the wrapped UnwrapSession decrypts with the original config's ticket keys)")
			}
		})
	}
}

// TestWrappedConfigResumesControl is the control: served as it is, the
// wrapped config resumes.
func TestWrappedConfigResumesControl(t *testing.T) {
	e := newEnv(t, on)
	addr := e.serveGreeting(e.s.Wrap(tlsConfigFor(e.leaf)))
	e.waitStapled(e.leaf)
	roots := x509.NewCertPool()
	roots.AddCert(e.ca.Cert)
	client := &tls.Config{RootCAs: roots, ServerName: "localhost", ClientSessionCache: tls.NewLRUClientSessionCache(8)}
	dialSession(addr, client)
	if resumed, err := dialSession(addr, client); err != nil || !resumed {
		t.Fatalf("resumed %v, %v", resumed, err)
	}
}

// TestGetConfigForClientNeverResumes: with GetConfigForClient,
// crypto/tls encrypts tickets with the outer config's keys (unless the
// returned config sets its own), but the wrapped inner config's
// UnwrapSession decrypts with the inner wrapped config's keys: no session
// is ever resumed.
func TestGetConfigForClientNeverResumes(t *testing.T) {
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(v), func(t *testing.T) {
			e := newEnv(t, on)
			inner := tlsConfigFor(e.leaf)
			outer := &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) { return inner, nil }}
			addr := e.serveGreeting(e.s.Wrap(outer))
			roots := x509.NewCertPool()
			roots.AddCert(e.ca.Cert)
			client := &tls.Config{RootCAs: roots, ServerName: "localhost", ClientSessionCache: tls.NewLRUClientSessionCache(8), MinVersion: v, MaxVersion: v}
			if resumed, err := dialSession(addr, client); err != nil || resumed {
				t.Fatalf("first connection: resumed %v, %v", resumed, err)
			}
			resumed, err := dialSession(addr, client)
			if err != nil {
				t.Fatal(err)
			}
			if !resumed {
				t.Fatal("with GetConfigForClient, a wrapped server never resumes a session")
			}
		})
	}
}

// Control: the same unwrapped resumes.
func TestGetConfigForClientResumesUnwrappedControl(t *testing.T) {
	e := newEnv(t, on)
	inner := tlsConfigFor(e.leaf)
	outer := &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) { return inner, nil }}
	addr := e.serveGreeting(outer)
	roots := x509.NewCertPool()
	roots.AddCert(e.ca.Cert)
	client := &tls.Config{RootCAs: roots, ServerName: "localhost", ClientSessionCache: tls.NewLRUClientSessionCache(8)}
	dialSession(addr, client)
	if resumed, err := dialSession(addr, client); err != nil || !resumed {
		t.Fatalf("resumed %v, %v", resumed, err)
	}
}

// TestHTTPServerNeverResumes: the README's way, http.Server.ServeTLS
// with a wrapped config, which net/http clones: no connection ever
// resumes a session.
func TestHTTPServerNeverResumes(t *testing.T) {
	e := newEnv(t, on)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{TLSConfig: e.s.Wrap(tlsConfigFor(e.leaf)), Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })}
	go srv.ServeTLS(ln, "", "")
	t.Cleanup(func() { srv.Close() })
	e.waitStapled(e.leaf)
	roots := x509.NewCertPool()
	roots.AddCert(e.ca.Cert)
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true,
		TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "localhost", ClientSessionCache: tls.NewLRUClientSessionCache(8)}}}
	get := func() bool {
		resp, err := client.Get("https://" + ln.Addr().String() + "/")
		if err != nil {
			t.Fatal(err)
		}
		io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.TLS.DidResume
	}
	get()
	if !get() {
		t.Fatal("http.Server with a wrapped config never resumes a session")
	}
}
