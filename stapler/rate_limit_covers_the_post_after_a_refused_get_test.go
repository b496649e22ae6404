package stapler

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/staplerkit/ocsp/responder"
)

// WithRateLimit "caps responder requests at perSecond, with bursts of up to
// burst at once". The POST sent after a refused GET is a second request to
// the responder: it must take a slot of its own, or a responder that
// refuses GET (and one that refuses both methods, on every query, for
// ever) gets twice the requests the operator allowed.
func TestRateLimitCoversThePOSTAfterARefusedGET(t *testing.T) {
	e := newEnv(t, on)
	var requests atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		http.NotFound(w, r) // refuses GET and POST alike
	}))
	defer srv.Close()
	leaf, err := e.ca.Issue(responder.LeafOptions{OCSPServer: []string{srv.URL}})
	if err != nil {
		t.Fatal(err)
	}
	// One request, then none for about 11 days.
	e.restart(WithRateLimit(1e-6, 1), WithColdWait(0))
	if _, err := e.s.Add(&leaf.Certificate); err != nil {
		t.Fatal(err)
	}
	e.waitQueries(leaf, 1)
	if n := requests.Load(); n > 1 {
		t.Fatalf("a rate limit of a burst of 1 let %d requests reach the responder", n)
	}
}
