package stapler

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/staplerkit/ocsp/config"
	"github.com/staplerkit/ocsp/internal/ocspfetch"
	"github.com/staplerkit/ocsp/responder"
)

// getRefusingFront answers POSTs with the responder and refuses GETs with
// refuse, counting both.
type getRefusingFront struct {
	next       http.Handler
	refuse     atomic.Pointer[func(http.ResponseWriter)]
	gets, post atomic.Int64
}

func (f *getRefusingFront) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet {
		f.gets.Add(1)
		if refuse := f.refuse.Load(); refuse != nil {
			(*refuse)(w)
			return
		}
	} else {
		f.post.Add(1)
	}
	f.next.ServeHTTP(w, r)
}

// frontedLeaf issues a leaf whose AIA names a front that refuses GET with
// refuse (nil: it lets GETs through).
func frontedLeaf(t *testing.T, e *env, refuse func(http.ResponseWriter)) (*responder.Leaf, *getRefusingFront) {
	t.Helper()
	front := &getRefusingFront{next: e.r}
	if refuse != nil {
		front.refuse.Store(&refuse)
	}
	srv := httptest.NewServer(front)
	t.Cleanup(srv.Close)
	leaf, err := e.ca.Issue(responder.LeafOptions{OCSPServer: []string{srv.URL}})
	if err != nil {
		t.Fatal(err)
	}
	e.r.SetStatus(leaf.Cert.SerialNumber, responder.Good())
	return leaf, front
}

// The ways responders refuse GET: cfssl's 400 (it unescapes a + into a
// space), 404, 405, an HTML page labelled as such, garbage labelled as an
// OCSP response, and malformedRequest.
var getRefusals = map[string]func(http.ResponseWriter){
	"400": func(w http.ResponseWriter) { http.Error(w, "Bad Request", http.StatusBadRequest) },
	"404": func(w http.ResponseWriter) { http.NotFound(w, nil) },
	"405": func(w http.ResponseWriter) {
		w.Header().Set("Allow", "POST")
		w.WriteHeader(http.StatusMethodNotAllowed)
	},
	"html page": func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "text/html")
		w.Write([]byte("<html><body>OCSP responder</body></html>"))
	},
	"not an OCSP response": func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "application/ocsp-response")
		w.Write([]byte("<html><body>OCSP responder</body></html>"))
	},
	"malformedRequest": func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "application/ocsp-response")
		w.Write(ocsp.MalformedRequestErrorResponse)
	},
}

// A responder that refuses GET is asked again by POST at once, then by POST
// alone for an hour (one GET, not one per refresh), then by GET again; the
// fallback is counted.
func TestResponderRefusingGETIsAskedByPOST(t *testing.T) {
	for name, refuse := range getRefusals {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, config.OCSP{OCSPFunctionality: true, QueryFrequency: 600})
			leaf, front := frontedLeaf(t, e, refuse)
			addr := e.wrapAndServe(leaf.Certificate)
			e.mustGetStaple(addr, leaf, ocsp.Good)
			first := e.clock.Now()
			if gets, posts, fb := front.gets.Load(), front.post.Load(), e.s.Metrics().GETFallbacks; gets != 1 || posts != 1 || fb != 1 {
				t.Fatalf("first fetch: %d GETs, %d POSTs, %d fallbacks; want 1, 1, 1", gets, posts, fb)
			}
			// The refreshes within the hour: POST alone.
			for i := 2; i <= 5; i++ {
				before := e.advanceToNextRefresh(leaf)
				e.waitQueries(leaf, before+1)
			}
			if gets, posts := front.gets.Load(), front.post.Load(); gets != 1 || posts != 5 {
				t.Fatalf("after 4 refreshes within the hour: %d GETs, %d POSTs; want 1, 5", gets, posts)
			}
			// An hour on, GET is tried again.
			for !e.clock.Now().After(first.Add(ocspfetch.GetRetry)) {
				before := e.advanceToNextRefresh(leaf)
				e.waitQueries(leaf, before+1)
			}
			if gets := front.gets.Load(); gets < 2 {
				t.Fatalf("GET never tried again after the hour: %d GETs", gets)
			}
			if st := e.status(leaf); st.LastError != "" || st.CertStatus != config.CertGood {
				t.Fatalf("status %+v", st)
			}
		})
	}
}

// A responder in trouble (5xx, timeout) is not asked twice: POST would not
// help, and doubles its load.
func TestResponderFailingGETIsNotAskedAgainByPOST(t *testing.T) {
	e := newEnv(t, config.OCSP{OCSPFunctionality: true, ResponseTimeout: 1}, WithColdWait(time.Millisecond))
	leaf, front := frontedLeaf(t, e, func(w http.ResponseWriter) { http.Error(w, "down", http.StatusServiceUnavailable) })
	e.wrapAndServe(leaf.Certificate)
	st := e.waitQueries(leaf, 1)
	if gets, posts := front.gets.Load(), front.post.Load(); gets != 1 || posts != 0 || st.Stapled {
		t.Fatalf("%d GETs, %d POSTs, stapled %v; want 1 GET and nothing else", gets, posts, st.Stapled)
	}
	if fb := e.s.Metrics().GETFallbacks; fb != 0 {
		t.Fatalf("%d fallbacks counted", fb)
	}
}

// A responder that works with GET again is asked by GET again, and one that
// refuses both says why, with both errors.
func TestResponderRefusingBothMethodsNamesBoth(t *testing.T) {
	e := newEnv(t, on, WithColdWait(time.Millisecond))
	leaf, front := frontedLeaf(t, e, getRefusals["404"])
	front.next = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "nope", http.StatusForbidden) })
	e.wrapAndServe(leaf.Certificate)
	st := e.waitQueries(leaf, 1)
	if st.Stapled || !contains(st.LastError, "403") || !contains(st.LastError, "404") {
		t.Fatalf("last error %q, want the POST's 403 and the GET's 404", st.LastError)
	}
}

// The Verifier's own fetches fall back too.
func TestVerifierAsksByPOSTWhenGETIsRefused(t *testing.T) {
	e := newEnv(t, on)
	leaf, front := frontedLeaf(t, e, getRefusals["400"])
	plain := e.serve(tlsConfigFor(leaf)) // staples nothing: the Verifier asks
	v := &Verifier{HardFail: true, FetchTimeout: hangLimit, Time: e.clock.Now}
	if err := e.dialVerified(plain, v); err != nil {
		t.Fatalf("refused: %v", err)
	}
	if gets, posts := front.gets.Load(), front.post.Load(); gets != 1 || posts != 1 {
		t.Fatalf("%d GETs, %d POSTs; want 1 and 1", gets, posts)
	}
}

func contains(s, sub string) bool {
	return len(sub) == 0 || len(s) >= len(sub) && (s[:len(sub)] == sub || contains(s[1:], sub))
}
