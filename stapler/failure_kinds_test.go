package stapler

import (
	"net"
	"testing"
	"time"

	"github.com/staplerkit/ocsp/config"
)

// A failed query says what failed: a responder whose name does not resolve
// (dns), one that refuses the connection (connection), one that does not
// answer in time (timeout); not "other".
func TestQueryFailuresSayWhatFailed(t *testing.T) {
	hung, err := net.Listen("tcp", "127.0.0.1:0") // accepts, never answers
	if err != nil {
		t.Fatal(err)
	}
	defer hung.Close()
	refusing, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := "http://" + refusing.Addr().String()
	refusing.Close()
	for _, tc := range []struct {
		url  string
		want QueryFailure
	}{
		{"http://ocsp.staplerkit.invalid", FailureDNS},
		{refused, FailureConnection},
		{"http://" + hung.Addr().String(), FailureTimeout},
	} {
		t.Run(string(tc.want), func(t *testing.T) {
			e := newEnv(t, config.OCSP{OCSPFunctionality: true, ResponseTimeout: 1}, WithColdWait(time.Millisecond))
			e.restart(WithResponderURL(tc.url), WithColdWait(time.Millisecond))
			if _, err := e.s.Add(&e.leaf.Certificate); err != nil {
				t.Fatal(err)
			}
			e.waitQueries(e.leaf, 1)
			m := e.s.Metrics()
			if m.QueryFailures[tc.want] != 1 || m.QueryFailures[FailureOther] != 0 {
				t.Fatalf("failures by kind %v, want one %s (last error %q)", m.QueryFailures, tc.want, e.status(e.leaf).LastError)
			}
		})
	}
}
