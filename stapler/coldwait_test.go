package stapler

import (
	"testing"
	"time"

	"github.com/staplerkit/ocsp/config"
	"github.com/staplerkit/ocsp/responder"
)

// A handshake whose cold wait ends while the first query is under way waits
// on for that query: a herd that slows the machine down must not give up on
// the one query that staples it (issue 14).
func TestAColdHandshakeWaitsPastTheColdWaitForAQueryUnderWay(t *testing.T) {
	e := newEnv(t, config.OCSP{OCSPFunctionality: true, ResponseTimeout: 60}, WithColdWait(10*time.Millisecond))
	e.r.SetFault(responder.Fault{Kind: responder.FaultDelay, Delay: 300 * time.Millisecond})
	cfg := e.s.Wrap(tlsConfigFor(e.leaf))
	eventually(t, "the first query reaches the responder", func() bool { return e.r.RequestCount() > 0 })
	cert, err := cfg.GetCertificate(helloFor())
	if err != nil {
		t.Fatal(err)
	}
	if cert.OCSPStaple == nil {
		t.Fatal("the handshake went on without a staple while the query was under way")
	}
}

// The wait for a query under way is bounded by the query's own deadline
// (response_timeout) and a cold wait more: a hanging responder holds a
// handshake for about a second here, never for good.
func TestAColdHandshakeGivesUpWithAHangingQuery(t *testing.T) {
	e := newEnv(t, config.OCSP{OCSPFunctionality: true, ResponseTimeout: 1}, WithColdWait(10*time.Millisecond))
	e.r.SetFault(responder.Fault{Kind: responder.FaultHang})
	cfg := e.s.Wrap(tlsConfigFor(e.leaf))
	eventually(t, "the first query reaches the responder", func() bool { return e.r.RequestCount() > 0 })
	done := make(chan error, 1)
	go func() {
		cert, err := cfg.GetCertificate(helloFor())
		if err == nil && cert.OCSPStaple != nil {
			t.Error("stapled by a hanging responder")
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(hangLimit):
		t.Fatal("a handshake waited past the hang limit for a hanging responder")
	}
}
