package stapler

import (
	"bytes"
	"crypto/tls"
	"net"
	"testing"

	"github.com/staplerkit/ocsp/responder"
)

// TestACloneWithoutCipherSuitesNeverChangesTheWrappedConfigsChoice: a
// Clone of a wrapped config selects with the wrapped config's index, and
// its hellos carry the Clone. A Clone whose CipherSuites is empty (not nil:
// no TLS 1.2 suite at all, where nil means crypto/tls's defaults) refuses a
// TLS 1.2 client, after choosing its certificate; what that choice learnt
// of the client must not decide the choice of the original config, whose
// CipherSuites is nil, for the same client. Real handshakes, against
// crypto/tls serving the same lists unwrapped.
func TestACloneWithoutCipherSuitesNeverChangesTheWrappedConfigsChoice(t *testing.T) {
	e := newEnv(t, on)
	certs := []tls.Certificate{
		e.mustIssue(responder.RSA, "other.test").Certificate,
		e.mustIssue(responder.ECDSA, "a.test").Certificate,
	}
	app := &tls.Config{Certificates: certs}
	wrapped := e.s.Wrap(app)
	wrappedNoSuites := wrapped.Clone()
	wrappedNoSuites.CipherSuites = []uint16{}
	plainNoSuites := app.Clone()
	plainNoSuites.CipherSuites = []uint16{}

	served := func(addr string) ([]byte, error) {
		cfg := &tls.Config{ServerName: "a.test", InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12}
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: hangLimit}, "tcp", addr, cfg)
		if err != nil {
			return nil, err
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].Raw, nil
	}
	_, werr := served(e.serve(plainNoSuites))
	_, gerr := served(e.serve(wrappedNoSuites))
	if werr == nil || gerr == nil {
		t.Fatalf("a config without TLS 1.2 suites served a TLS 1.2 client: crypto/tls: %v; wrapped clone: %v", werr, gerr)
	}
	want, werr := served(e.serve(app))
	got, gerr := served(e.serve(wrapped))
	if werr != nil || gerr != nil {
		t.Fatalf("crypto/tls: %v; wrapped: %v", werr, gerr)
	}
	if !bytes.Equal(want, got) {
		t.Fatalf("the wrapped config served another certificate than crypto/tls (want the ECDSA one for a.test; got the one for other.test: %v)",
			bytes.Equal(got, certs[0].Certificate[0]))
	}
}
