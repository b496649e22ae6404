package staplertest_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/staplerkit/ocsp/stapler"
	"github.com/staplerkit/ocsp/stapler/staplertest"
)

// The test docs/testing.md shows (the body of Example, compiled there)
// does what its comments say: GOOD, then REVOKED after a revocation.
func TestTheTestingGuidesExampleDoesWhatItsCommentsSay(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	yourServerConfig := func(c tls.Certificate) *tls.Config { return &tls.Config{Certificates: []tls.Certificate{c}} }
	handler := http.NotFoundHandler()

	pki := staplertest.NewPKI()
	defer pki.Close()
	leaf := pki.Issue("example.com")
	s := pki.NewStapler()
	defer s.Close()
	srv := staplertest.NewTLSServer(s.Wrap(yourServerConfig(leaf.Certificate)), handler)
	defer srv.Close()
	s.Ready(ctx)
	st, _ := pki.Check(srv, "example.com") // st.Status == "GOOD"
	if st.Status != "GOOD" {
		t.Fatalf("first check: %v", st)
	}
	pki.Revoke(leaf, staplertest.KeyCompromise)
	staplertest.RefreshNow(ctx, s)
	st, _ = pki.Check(srv, "example.com") // st.Status == "REVOKED"
	if st.Status != "REVOKED" {
		t.Fatalf("after the revocation: %v", st)
	}
	_, err := pki.Dial(srv, "example.com", &stapler.Verifier{}) // a *stapler.RevokedError
	var re *stapler.RevokedError
	if !errors.As(err, &re) {
		t.Fatalf("Dial with a Verifier: %v, want a *stapler.RevokedError", err)
	}
}
