package stapler

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/staplerkit/ocsp/config"
	"github.com/staplerkit/ocsp/internal/ocspfetch"
	"github.com/staplerkit/ocsp/responder"
	"golang.org/x/crypto/ocsp"
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

// A responder that refuses GET (cfssl, older responders) is asked again by
// POST, and that POST now waits on the rate limit within the query's
// deadline. The limiter hands out slots in the order they are asked for:
// with certificates queued for their first fetch, every worker holds a
// slot ahead of the POST, and the POST's slot lies past its deadline
// whenever workers/rate exceeds response_timeout (16 workers at 2 requests
// a second: 8s, against 5s). Every first fetch then fails, one after
// another, the responder is never learnt as POST-only, and each failure
// burns the POST's reserved slot without a request. Before the POST was
// paced, the first fetch was stapled and the rest went by POST alone. Here
// the first query ends, and must have stapled.
func TestPOSTAfterARefusedGETIsNotQueuedBehindOtherCertificates(t *testing.T) {
	e := newEnv(t, config.OCSP{OCSPFunctionality: true, ResponseTimeout: 5}, WithRateLimit(2, 1))
	held := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			once.Do(func() {
				close(held)
				<-release
			})
			http.NotFound(w, r) // GET refused, as cfssl's + makes it
			return
		}
		e.r.ServeHTTP(w, r)
	}))
	defer srv.Close()
	var certs []tls.Certificate
	var leaves []*responder.Leaf
	for i := range 24 {
		leaf, err := e.ca.Issue(responder.LeafOptions{OCSPServer: []string{srv.URL}, DNSNames: []string{fmt.Sprintf("h%d.test", i)}})
		if err != nil {
			t.Fatal(err)
		}
		e.r.SetStatus(leaf.Cert.SerialNumber, responder.Good())
		certs, leaves = append(certs, leaf.Certificate), append(leaves, leaf)
	}
	e.s.Wrap(&tls.Config{Certificates: certs}) // queued for their first fetch

	select {
	case <-held:
	case <-time.After(hangLimit):
		close(release)
		t.Fatal("no GET reached the responder")
	}
	// The other workers have taken their slots: the next free one is
	// past the held query's deadline.
	eventually(t, "the workers to queue on the rate limit", func() bool {
		return e.s.limit.Backlog() > 6*time.Second
	})
	close(release)

	var first CertificateStatus
	eventually(t, "a first query to end", func() bool {
		for _, l := range leaves {
			if st := e.status(l); st.Queries > 0 {
				first = st
				return true
			}
		}
		return false
	})
	if !first.Stapled {
		t.Fatalf("the first query failed (%s): the POST after the refused GET waited for a slot behind every queued certificate", first.LastError)
	}
}

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

// A responder that labels its answers with the wrong content type (or
// answers an error page) does not cost a new TCP connection per request.
func TestRefusedAnswersKeepTheConnection(t *testing.T) {
	for _, kind := range []responder.FaultKind{responder.FaultWrongContentType, responder.FaultHTTP503HTML} {
		t.Run(kind.String(), func(t *testing.T) {
			ca, err := responder.NewCA(responder.CAOptions{})
			if err != nil {
				t.Fatal(err)
			}
			r := responder.New(ca)
			r.SetFault(responder.Fault{Kind: kind})
			var conns atomic.Int32
			srv := httptest.NewUnstartedServer(r)
			srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
				if st == http.StateNew {
					conns.Add(1)
				}
			}
			srv.Start()
			defer srv.Close()
			leaf, err := ca.Issue(responder.LeafOptions{})
			if err != nil {
				t.Fatal(err)
			}
			client := ocspfetch.NewHTTPClient()
			for range 20 {
				if _, _, err := ocspfetch.Query(t.Context(), client, srv.URL, leaf.Cert, ca.Cert); err == nil {
					t.Fatal("a refused answer was accepted")
				}
			}
			if n := conns.Load(); n > 2 {
				t.Fatalf("20 refused answers opened %d connections", n)
			}
		})
	}
}

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

func TestNoResponderURL(t *testing.T) {
	e := newEnv(t, config.OCSP{})
	noAIA, err := e.ca.Issue(responder.LeafOptions{})
	if err != nil {
		t.Fatal(err)
	}
	addr := e.wrapAndServe(noAIA.Certificate)
	_, err = e.s.Update(config.OCSPUpdate{OCSPFunctionality: ptr(true)})
	var ce *config.Error
	if !errors.As(err, &ce) || ce.Code != config.CodeNoResponderURL {
		t.Fatalf("got %v", err)
	}
	if e.s.Get().OCSPFunctionality {
		t.Fatal("rejected update turned OCSP on")
	}
	// Test's errors are plain Go errors; the admin package maps them to the
	// documented no_responder_url (500).
	var ce2 *config.Error
	if _, err := e.s.Test(context.Background(), ""); !errors.Is(err, ErrNoResponderURL) || errors.As(err, &ce2) {
		t.Fatalf("test: %v", err)
	}
	if _, err := e.s.Update(config.OCSPUpdate{QueryFrequency: ptr(100)}); err != nil {
		t.Fatalf("unrelated update refused: %v", err)
	}
	e.mustGetNoStaple(addr)
	if st := e.status(noAIA); st.State != StateNotApplicable {
		t.Fatalf("state %s", st.State)
	}
}

func TestResponderURLOverride(t *testing.T) {
	e := newEnv(t, on)
	noAIA, _ := e.ca.Issue(responder.LeafOptions{})
	e.r.SetStatus(noAIA.Cert.SerialNumber, responder.Good())
	e.s.Close()
	s, err := New(on, WithClock(e.clock), WithLogger(quietLogger()), WithResponderURL(e.srv.URL), WithColdWait(hangLimit))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	e.s = s
	addr := e.wrapAndServe(noAIA.Certificate)
	e.mustGetStaple(addr, noAIA, ocsp.Good)
	if s.Get().ResponderURL != e.srv.URL {
		t.Fatalf("Get reports %q", s.Get().ResponderURL)
	}
	if _, err := New(config.OCSP{ResponderURL: "http://x"}); !errors.Is(err, config.ErrInvalidSchema) {
		t.Fatalf("New accepted responder_url: %v", err)
	}
}

// issueNamed issues a leaf whose AIA OCSP URL is aia, known good to e's
// responder.
func (e *env) issueNamed(aia, name string) *responder.Leaf {
	e.t.Helper()
	l, err := e.ca.Issue(responder.LeafOptions{OCSPServer: []string{aia}, DNSNames: []string{name}})
	if err != nil {
		e.t.Fatal(err)
	}
	e.r.SetStatus(l.Cert.SerialNumber, responder.Good())
	return l
}

// An override keyed by a certificate's own AIA URL rewrites its responder
// or, empty, disables fetching for it; the others are untouched; Status
// shows both URLs.
func TestResponderOverridesRewriteOrDisableByAIAURL(t *testing.T) {
	const internal, retired = "http://ocsp.internal.invalid/ca1", "http://ocsp.retired.invalid/"
	e := newEnv(t, on)
	e.restart(WithResponderOverrides(map[string]string{internal: e.srv.URL, retired: ""}))
	rewritten := e.issueNamed(internal, "rewritten.test")
	disabled := e.issueNamed(retired, "disabled.test")
	plain := e.leaf
	addr := e.wrapAndServe(plain.Certificate, rewritten.Certificate, disabled.Certificate)

	e.mustGetStaple(addr, plain, ocsp.Good)
	if st := e.status(plain); st.ResponderURL != e.srv.URL || st.AIAResponderURL != "" {
		t.Fatalf("no override: responder %q, aia %q", st.ResponderURL, st.AIAResponderURL)
	}
	staple, _, err := e.handshake(addr, func(c *tls.Config) { c.ServerName = "rewritten.test" })
	if err != nil || staple == nil {
		t.Fatalf("rewritten: no staple (%v)", err)
	}
	if st := e.status(rewritten); st.ResponderURL != e.srv.URL || st.AIAResponderURL != internal || st.State != StateGood {
		t.Fatalf("rewritten: %+v", st)
	}
	if staple, _, err := e.handshake(addr, func(c *tls.Config) { c.ServerName = "disabled.test" }); err != nil || staple != nil {
		t.Fatalf("disabled: stapled %v (%v)", staple != nil, err)
	}
	if st := e.status(disabled); st.ResponderURL != "" || st.AIAResponderURL != retired || st.State != StateNotApplicable {
		t.Fatalf("disabled: %+v", st)
	}
	if n := e.r.CountFor(disabled.Cert.SerialNumber); n != 0 {
		t.Fatalf("the disabled certificate was asked about %d times", n)
	}
	if _, err := e.s.Test(t.Context(), CertificateID(disabled.Cert.Raw)); !errors.Is(err, ErrNoResponderURL) {
		t.Fatalf("Test of a disabled certificate: %v", err)
	}
}

// An override is more specific than WithResponderURL.
func TestResponderOverrideWinsOverWithResponderURL(t *testing.T) {
	const retired = "http://ocsp.retired.invalid/"
	e := newEnv(t, on)
	e.restart(WithResponderURL(e.srv.URL), WithResponderOverrides(map[string]string{retired: ""}))
	disabled := e.issueNamed(retired, "disabled.test")
	elsewhere := e.issueNamed("http://ocsp.elsewhere.invalid/", "elsewhere.test")
	e.wrapAndServe(elsewhere.Certificate, disabled.Certificate)
	e.waitStapled(elsewhere)
	if st := e.status(disabled); st.State != StateNotApplicable || st.ResponderURL != "" {
		t.Fatalf("disabled by an override beside WithResponderURL: %+v", st)
	}
}

func TestResponderOverridesAreValidated(t *testing.T) {
	for _, bad := range []map[string]string{
		{"ocsp.example.com": "http://proxy.test/"},
		{"http://ocsp.example.com/": "ldap://proxy.test/"},
		{"http://ocsp.example.com/": "http:///no-host"},
		{"": "http://proxy.test/"},
	} {
		_, err := New(on, WithResponderOverrides(bad))
		var ce *config.Error
		if !errors.As(err, &ce) || ce.Code != config.CodeInvalidSchema {
			t.Fatalf("%v: New returned %v, want invalid_schema", bad, err)
		}
	}
	s, err := New(on, WithResponderOverrides(map[string]string{"http://ocsp.example.com/": "", "https://a.test/x": "http://b.test:8080/y"}))
	if err != nil {
		t.Fatalf("valid overrides refused: %v", err)
	}
	s.Close()
}

// The Verifier's own requests follow its overrides.
func TestVerifierFollowsResponderOverrides(t *testing.T) {
	const internal = "http://ocsp.internal.invalid/ca1"
	e := newEnv(t, on)
	leaf := e.issueNamed(internal, "localhost")
	plain := e.serve(tlsConfigFor(leaf)) // staples nothing: the Verifier asks
	v := &Verifier{HardFail: true, FetchTimeout: hangLimit, Time: e.clock.Now, ResponderOverrides: map[string]string{internal: e.srv.URL}}
	if err := e.dialVerified(plain, v); err != nil {
		t.Fatalf("refused: %v", err)
	}
	if n := e.r.CountFor(leaf.Cert.SerialNumber); n != 1 {
		t.Fatalf("the overriding responder was asked %d times, want 1", n)
	}
	off := &Verifier{HardFail: true, FetchTimeout: hangLimit, Time: e.clock.Now, ResponderOverrides: map[string]string{internal: ""}}
	if err := e.dialVerified(plain, off); !errors.Is(err, ErrNoStaple) {
		t.Fatalf("with fetching disabled: %v, want ErrNoStaple", err)
	}
}

func TestIssuerFromAIACAIssuers(t *testing.T) {
	e := newEnv(t, on)
	var served atomic.Int64
	caIssuers := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		w.Write(e.ca.Cert.Raw)
	}))
	defer caIssuers.Close()
	leaf, err := e.srv.Issue(responder.LeafOptions{IssuingCertificateURL: []string{caIssuers.URL + "/ca.der"}})
	if err != nil {
		t.Fatal(err)
	}
	addr := e.wrapAndServe(leafOnly(leaf))
	staple, _, err := e.handshake(addr, func(c *tls.Config) { c.InsecureSkipVerify = true })
	if err != nil || staple == nil {
		t.Fatalf("staple %v, err %v", staple != nil, err)
	}
	if _, err := ocsp.ParseResponseForCert(staple, leaf.Cert, e.ca.Cert); err != nil {
		t.Fatal(err)
	}
	if served.Load() != 1 {
		t.Fatalf("issuer fetched %d times", served.Load())
	}
}

func TestIssuerThatDidNotSignTheLeafIsRejected(t *testing.T) {
	e := newEnv(t, on)
	other, _ := responder.NewCA(responder.CAOptions{CommonName: "impostor"})
	caIssuers := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(other.Cert.Raw) }))
	defer caIssuers.Close()
	leaf, _ := e.srv.Issue(responder.LeafOptions{IssuingCertificateURL: []string{caIssuers.URL}})
	wrong := leaf.Certificate
	wrong.Certificate = [][]byte{leaf.Cert.Raw, other.Cert.Raw} // a chain whose "issuer" did not sign the leaf
	e.wrapAndServe(wrong)
	st := e.waitQueries(leaf, 1)
	if st.Stapled || st.LastError == "" {
		t.Fatalf("status %+v", st)
	}
	if e.r.RequestCount() != 0 {
		t.Fatal("queried the responder without a verified issuer")
	}
}

func TestIssuerFromOption(t *testing.T) {
	e := newEnv(t, on)
	e.s.Close()
	s, err := New(on, WithClock(e.clock), WithLogger(quietLogger()), WithIssuer(e.ca.Cert), WithColdWait(hangLimit))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	e.s = s
	addr := e.wrapAndServe(leafOnly(e.leaf))
	staple, _, err := e.handshake(addr, func(c *tls.Config) { c.InsecureSkipVerify = true })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ocsp.ParseResponseForCert(staple, e.leaf.Cert, e.ca.Cert); err != nil {
		t.Fatal(err)
	}
}
