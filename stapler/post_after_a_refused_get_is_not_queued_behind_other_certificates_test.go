package stapler

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/staplerkit/ocsp/config"
	"github.com/staplerkit/ocsp/responder"
)

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
		e.s.limit.mu.Lock()
		defer e.s.limit.mu.Unlock()
		return time.Until(e.s.limit.next) > 6*time.Second
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
