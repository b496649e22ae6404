package stapler

import (
	"io"
	"log"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/staplerkit/ocsp/config"
)

// FailureConnection is documented as "the responder could not be reached
// (connection refused or reset, no route, a TLS handshake with it
// failed)". An https responder whose certificate does not verify (an
// interception proxy, a private CA the host does not trust) fails the TLS
// handshake: the metric must say connection, not other, or a dashboard
// keyed on the kinds sends the operator looking in the wrong place.
func TestTLSHandshakeFailureWithTheResponderIsAConnectionFailure(t *testing.T) {
	e := newEnv(t, config.OCSP{OCSPFunctionality: true, ResponseTimeout: 5}, WithColdWait(time.Millisecond))
	untrusted := httptest.NewUnstartedServer(e.r) // a real responder behind a certificate no one trusts
	untrusted.Config.ErrorLog = log.New(io.Discard, "", 0)
	untrusted.StartTLS()
	defer untrusted.Close()
	e.restart(WithResponderURL(untrusted.URL), WithColdWait(time.Millisecond))
	if _, err := e.s.Add(&e.leaf.Certificate); err != nil {
		t.Fatal(err)
	}
	e.waitQueries(e.leaf, 1)
	m := e.s.Metrics()
	if m.QueryFailures[FailureConnection] != 1 || m.QueryFailures[FailureOther] != 0 {
		t.Fatalf("failures by kind %v, want one connection (last error %q)", m.QueryFailures, e.status(e.leaf).LastError)
	}
}
