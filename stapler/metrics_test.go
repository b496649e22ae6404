package stapler

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/staplerkit/ocsp/config"
	"github.com/staplerkit/ocsp/responder"
	"golang.org/x/crypto/ocsp"
)

// Handshakes stapled, unstapled and refused, and queries by outcome and
// failure kind, each counted once.
func TestMetricsCountEveryOutcome(t *testing.T) {
	e := newEnv(t, on, WithPolicy(Strict))
	good := e.leaf
	revoked, _ := e.srv.Issue(responder.LeafOptions{DNSNames: []string{"revoked.test"}})
	e.r.SetStatus(revoked.Cert.SerialNumber, responder.Revoked(e.clock.Now(), ocsp.KeyCompromise))
	down, _ := e.srv.Issue(responder.LeafOptions{DNSNames: []string{"down.test"}})
	e.r.SetSerialFault(down.Cert.SerialNumber, responder.Fault{Kind: responder.FaultHTTP500})
	unknown, _ := e.srv.Issue(responder.LeafOptions{DNSNames: []string{"unknown.test"}})
	e.r.Forget(unknown.Cert.SerialNumber)
	garbage, _ := e.srv.Issue(responder.LeafOptions{DNSNames: []string{"garbage.test"}})
	e.r.SetSerialFault(garbage.Cert.SerialNumber, responder.Fault{Kind: responder.FaultGarbageBody})
	cfg := e.s.Wrap(&tls.Config{Certificates: []tls.Certificate{good.Certificate, revoked.Certificate, down.Certificate, unknown.Certificate, garbage.Certificate}})
	if err := e.s.Ready(t.Context()); err != nil {
		t.Fatal(err)
	}
	m := e.s.Metrics()
	if m.QueriesGood != 1 || m.QueriesRevoked != 1 || m.QueryFailures[FailureHTTPStatus] != 1 || m.QueryFailures[FailureUnknown] != 1 || m.QueryFailures[FailureInvalidResponse] != 1 {
		t.Fatalf("queries: %+v", m)
	}
	if m.QueryLatency.Count != 5 {
		t.Fatalf("latency histogram counts %d queries, want 5", m.QueryLatency.Count)
	}
	hello := func(name string) *tls.ClientHelloInfo {
		return &tls.ClientHelloInfo{ServerName: name, SupportedVersions: []uint16{tls.VersionTLS13},
			SignatureSchemes: []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256}, SupportedCurves: []tls.CurveID{tls.X25519}}
	}
	for range 3 {
		cfg.GetCertificate(hello("localhost"))
	}
	cfg.GetCertificate(hello("revoked.test")) // refused: Strict
	cfg.GetCertificate(hello("down.test"))    // no staple, lenient about it
	m = e.s.Metrics()
	if m.HandshakesStapled != 3 || m.HandshakesRefused != 1 || m.HandshakesUnstapled != 1 {
		t.Fatalf("handshakes: stapled %d, refused %d, unstapled %d", m.HandshakesStapled, m.HandshakesRefused, m.HandshakesUnstapled)
	}
}

// A revocation is logged at WARN, naming the certificate's subject, serial
// and ID: the line an operator's alerting must not miss.
func TestARevocationIsLoggedAtWarnNamingTheCertificate(t *testing.T) {
	var logs syncBuffer
	e := newEnv(t, on, WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	addr := e.wrapAndServe(e.leaf.Certificate)
	e.mustGetStaple(addr, e.leaf, ocsp.Good)
	e.r.SetStatus(e.leaf.Cert.SerialNumber, responder.Revoked(e.clock.Now().Add(-time.Minute), ocsp.KeyCompromise))
	if _, err := e.s.Test(t.Context(), CertificateID(e.leaf.Cert.Raw)); err != nil {
		t.Fatal(err)
	}
	want := []string{"level=WARN", `msg="ocsp: certificate revoked"`, "id=" + CertificateID(e.leaf.Cert.Raw),
		"serial=" + fmt.Sprintf("%x", e.leaf.Cert.SerialNumber), "subject="}
	eventually(t, "the revocation's log line", func() bool {
		for _, line := range strings.Split(logs.String(), "\n") {
			ok := true
			for _, w := range want {
				ok = ok && strings.Contains(line, w)
			}
			if ok {
				return true
			}
		}
		return false
	})
}

// lockedBuffer is a log sink safe for the Stapler's goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestOCSPOffIsLoggedOnce(t *testing.T) {
	var logs lockedBuffer
	s, err := New(config.OCSP{}, WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ca, _ := responder.NewCA(responder.CAOptions{})
	leaf, _ := ca.Issue(responder.LeafOptions{OCSPServer: []string{"http://127.0.0.1:1/"}})
	cfg := s.Wrap(tlsConfigFor(leaf))
	for range 3 {
		cfg.GetCertificate(helloFor())
	}
	out := logs.String()
	if n := strings.Count(out, "OCSP is off"); n != 1 || !strings.Contains(out, "level=INFO") || !strings.Contains(out, "ocsp_functionality") {
		t.Fatalf("want one Info line naming ocsp_functionality, got:\n%s", out)
	}
}
