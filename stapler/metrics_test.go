package stapler

import (
	"crypto/tls"
	"testing"

	"golang.org/x/crypto/ocsp"

	"github.com/staplerkit/ocsp/responder"
)

// TestMetricsCountEveryOutcome: handshakes stapled, unstapled and refused,
// and queries by outcome and failure kind, each counted once.
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
