package stapler

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/staplerkit/ocsp/config"
	"github.com/staplerkit/ocsp/responder"
)

// A response signed by a delegated responder that the CA has revoked must
// not be stapled. When the responder refuses the GET that asks about the
// delegate (cfssl unescapes a + in a GET URL; the delegate's request may
// have one where the leaf's has none), the check is sent again by POST.
// That POST now waits on the Stapler's rate limit: when no slot is free
// before the check's deadline (a low limit, or a backlog of certificates
// queued on it), the check gives up, the delegate's status counts as
// undetermined, the revoked delegate is accepted (and so remembered for
// delegateRecheck), and its answer is stapled. The Stapler's own
// throttling must not turn a reachable responder's "revoked" into
// "accepted".
func TestRevokedDelegateIsRefusedWhenItsCheckIsSentAgainByPOST(t *testing.T) {
	// One responder request allowed (the leaf's), then none for days:
	// the rate limit is what holds the delegate's POST.
	e := newEnv(t, config.OCSP{OCSPFunctionality: true, ResponseTimeout: 1}, WithRateLimit(1e-6, 1))
	var gets, posts atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			if gets.Add(1) > 1 { // the delegate's GET (the leaf's went first)
				http.NotFound(w, r)
				return
			}
		} else {
			posts.Add(1)
		}
		e.r.ServeHTTP(w, r)
	}))
	defer srv.Close()
	leaf, err := e.ca.Issue(responder.LeafOptions{OCSPServer: []string{srv.URL}})
	if err != nil {
		t.Fatal(err)
	}
	e.r.SetStatus(leaf.Cert.SerialNumber, responder.Good())
	e.r.SetSerialFault(leaf.Cert.SerialNumber, responder.Fault{Kind: responder.FaultRevokedDelegate})

	id, err := e.s.Add(&leaf.Certificate)
	if err != nil {
		t.Fatal(err)
	}
	st := e.waitQueries(leaf, 1)
	if _, _, err := e.s.Staple(id); err == nil || st.Stapled {
		t.Fatalf("a response signed by a revoked delegate is stapled (%d GETs, %d POSTs reached the responder; the delegate's POST never did): %+v",
			gets.Load(), posts.Load(), st)
	}
}
