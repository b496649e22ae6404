package stapler

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/staplerkit/ocsp/responder"
)

// A responder remembered as refusing GET is asked by POST alone for an
// hour. When that POST is refused in turn (the responder was redeployed
// behind a GET-only cache, as RFC 5019 recommends; the refusal that taught
// "POST only" was about one certificate's request, as cfssl's + is), the
// GET it refused once must be tried again at once, as the GET is when it is
// refused: not one failed query after another, for an hour, while the
// staple runs out (an undated one lives an hour).
func TestPOSTOnlyResponderIsAskedByGETWhenPOSTIsRefused(t *testing.T) {
	e := newEnv(t, on)
	var getOnly atomic.Bool
	var gets, posts atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			gets.Add(1)
			if !getOnly.Load() {
				http.NotFound(w, r)
				return
			}
		} else {
			posts.Add(1)
			if getOnly.Load() {
				w.Header().Set("Allow", "GET")
				w.WriteHeader(http.StatusMethodNotAllowed)
				return
			}
		}
		e.r.ServeHTTP(w, r)
	}))
	defer srv.Close()
	leaf, err := e.ca.Issue(responder.LeafOptions{OCSPServer: []string{srv.URL}})
	if err != nil {
		t.Fatal(err)
	}
	e.r.SetStatus(leaf.Cert.SerialNumber, responder.Good())
	addr := e.wrapAndServe(leaf.Certificate)
	e.mustGetStaple(addr, leaf, ocsp.Good)
	if gets.Load() != 1 || posts.Load() != 1 {
		t.Fatalf("first query: %d GETs, %d POSTs; want the refused GET and its POST", gets.Load(), posts.Load())
	}

	getOnly.Store(true)
	e.clock.Advance(time.Minute)
	before := e.status(leaf).ThisUpdate.Time
	st, err := e.s.Test(t.Context(), CertificateID(leaf.Cert.Raw))
	if err != nil {
		t.Fatalf("the responder answers GETs, but the query failed after %d GETs and %d POSTs: %v", gets.Load(), posts.Load(), err)
	}
	if !st.ThisUpdate.Time.After(before) {
		t.Fatalf("no newer response installed: %+v", st)
	}
}
