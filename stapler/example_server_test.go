package stapler_test

import (
	"context"
	"crypto/tls"
	"log"
	"net/http"

	"github.com/staplerkit/ocsp/cache"
	"github.com/staplerkit/ocsp/config"
	"github.com/staplerkit/ocsp/stapler"
)

// These examples are the code blocks of README.md and docs/server.md and
// docs/verifying.md (examples/docs_test.go holds each block to its
// example's body): compiled, not run, as each serves or dials for good.

// yourTLSConfig stands for the application's own server configuration.
var yourTLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}

// A server with certificate files, stapled: the files are loaded into the
// config before Wrap, and ListenAndServeTLS is given none (net/http would
// load them into its own copy of the config, served unstapled).
func ExampleNew() {
	s, err := stapler.New(config.OCSP{OCSPFunctionality: true}) // zero fields take the documented defaults
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	cfg, err := stapler.LoadKeyPair(nil, "chain.pem", "key.pem") // nil: a new config; or yours, cloned
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Addr: ":8443", TLSConfig: s.Wrap(cfg)}
	s.Ready(context.Background())            // optional: wait for the first fetches
	log.Fatal(srv.ListenAndServeTLS("", "")) // the files are in cfg: none here
}

// A server whose tls.Config holds its certificates already, or finds
// them itself.
func ExampleStapler_Wrap_config() {
	s, err := stapler.New(config.OCSP{OCSPFunctionality: true})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	srv := &http.Server{Addr: ":8443", TLSConfig: s.Wrap(yourTLSConfig)} // Certificates, GetCertificate or GetConfigForClient
	s.Ready(context.Background())
	log.Fatal(srv.ListenAndServeTLS("", ""))
}

// Staples kept in a directory survive restarts; each is verified again
// when it is read.
func ExampleWithStore() {
	s, err := stapler.New(config.OCSP{OCSPFunctionality: true}, stapler.WithStore(cache.DirStore("/var/lib/myserver/ocsp")))
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
}

// A client that checks the staple the server sends.
func ExampleVerifier_VerifyConnection() {
	v := &stapler.Verifier{} // or HardFail: true, FetchTimeout: 2 * time.Second, Client, ClockSkew, AllowSHA1, Time
	conn, err := tls.Dial("tcp", "example.com:443", &tls.Config{VerifyConnection: v.VerifyConnection})
	if err != nil {
		log.Fatal(err) // a *stapler.RevokedError for a revoked certificate, among others
	}
	defer conn.Close()
}
