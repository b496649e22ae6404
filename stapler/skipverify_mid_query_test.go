package stapler

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/staplerkit/ocsp/config"
	"github.com/staplerkit/ocsp/responder"
)

// TestSkipVerifyTurnedOffMidQuery: a query started while
// skip_verify was on (signature and signer unchecked) ends after
// SetStapling turned skip_verify off; its answer, signed by a key the CA
// never authorized, is installed and stapled all the same (and the
// refetch that SetStapling promises fails without removing it). Expected:
// once skip_verify is off, no response whose signer was not checked is
// stapled.
func TestSkipVerifyTurnedOffMidQuery(t *testing.T) {
	e := newEnv(t, on)
	e.r.SetFault(responder.Fault{Kind: responder.FaultUnauthorizedSigner})
	arrived := make(chan struct{}, 16)
	release := make(chan struct{})
	var once sync.Once
	gate := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-release
		e.r.ServeHTTP(w, r)
	}))
	t.Cleanup(gate.Close)
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	s, err := New(on, WithClock(e.clock), WithLogger(quietLogger()), WithResponderURL(gate.URL),
		WithDefaultStapling(config.Stapling{Enabled: true, SkipVerify: true, CacheTTL: 3600}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	leaf, err := e.ca.Issue(responder.LeafOptions{OCSPServer: []string{gate.URL}})
	if err != nil {
		t.Fatal(err)
	}
	e.r.SetStatus(leaf.Cert.SerialNumber, responder.Good())
	id, err := s.Add(&leaf.Certificate)
	if err != nil {
		t.Fatal(err)
	}
	<-arrived // the first query, made with skip_verify on, is in flight
	if err := s.SetStapling(id, config.Stapling{Enabled: true, SkipVerify: false, CacheTTL: 3600}); err != nil {
		t.Fatal(err)
	}
	once.Do(func() { close(release) })
	// The refetch SetStapling asked for shares the query in flight (one
	// outcome, counted once), so one query is all there is to wait for.
	eventually(t, "the query", func() bool {
		st, err := s.StatusOf(id)
		return err == nil && st.Queries >= 1
	})
	if st, _ := s.StatusOf(id); st.Stapled {
		t.Fatalf("with skip_verify off, a response from an unauthorized signer is stapled: %+v", st)
	}
}
