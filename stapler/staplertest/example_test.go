package staplertest_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"

	"github.com/staplerkit/ocsp/stapler"
	"github.com/staplerkit/ocsp/stapler/staplertest"
)

// yourServerConfig stands for the application's own TLS configuration.
func yourServerConfig(cert tls.Certificate) *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{cert}}
}

// The test a user writes for their own server: stapled GOOD, then REVOKED
// after a revocation, and then refused by a client that checks staples.
func Example() {
	pki := staplertest.NewPKI()
	defer pki.Close()
	leaf := pki.Issue("example.com")
	s := pki.NewStapler()
	defer s.Close()
	srv := staplertest.NewTLSServer(s.Wrap(yourServerConfig(leaf.Certificate)), http.NotFoundHandler())
	defer srv.Close()
	s.Ready(context.Background())

	fmt.Println(pki.Check(srv, "example.com"))
	pki.Revoke(leaf, staplertest.KeyCompromise)
	staplertest.RefreshNow(context.Background(), s)
	fmt.Println(pki.Check(srv, "example.com"))
	_, err := pki.Dial(srv, "example.com", &stapler.Verifier{})
	fmt.Println("refused:", errors.As(err, new(*stapler.RevokedError)))
	// Output:
	// GOOD <nil>
	// REVOKED <nil>
	// refused: true
}
