package stapler_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"io/fs"
	"log"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/staplerkit/ocsp/cache"
	"github.com/staplerkit/ocsp/config"
	"github.com/staplerkit/ocsp/responder"
	"github.com/staplerkit/ocsp/stapler"
	"golang.org/x/crypto/ocsp"
)

// serveHandshakes completes the TLS handshake of every connection to ln.
func serveHandshakes(ln net.Listener) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		conn.(*tls.Conn).Handshake()
		conn.Close()
	}
}

func quiet() stapler.Option {
	return stapler.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))
}

// Wrap a server's tls.Config; the first handshake is already stapled.
func ExampleStapler_Wrap() {
	ca, _ := responder.NewCA(responder.CAOptions{})
	ocspServer := responder.NewServer(responder.New(ca))
	defer ocspServer.Close()
	leaf, _ := ocspServer.Issue(responder.LeafOptions{})

	s, err := stapler.New(config.OCSP{OCSPFunctionality: true}, quiet())
	if err != nil {
		panic(err)
	}
	defer s.Close()
	serverConfig := s.Wrap(&tls.Config{Certificates: []tls.Certificate{leaf.Certificate}})

	ln, _ := tls.Listen("tcp", "127.0.0.1:0", serverConfig)
	defer ln.Close()
	go serveHandshakes(ln)

	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: roots, ServerName: "localhost"})
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	fmt.Println("stapled:", len(conn.ConnectionState().OCSPResponse) > 0)
	// Output: stapled: true
}

// Ready waits until every certificate known so far has had its first
// attempt, so that a server can take traffic with its staples in hand.
func ExampleStapler_Ready() {
	ca, _ := responder.NewCA(responder.CAOptions{})
	ocspServer := responder.NewServer(responder.New(ca))
	defer ocspServer.Close()
	good, _ := ocspServer.Issue(responder.LeafOptions{DNSNames: []string{"good.example"}})
	noURL, _ := ca.Issue(responder.LeafOptions{DNSNames: []string{"no-url.example"}}) // no AIA OCSP URL

	s, _ := stapler.New(config.OCSP{OCSPFunctionality: true}, quiet())
	defer s.Close()
	s.Wrap(&tls.Config{Certificates: []tls.Certificate{good.Certificate, noURL.Certificate}})

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.Ready(ctx); err != nil {
		panic(err)
	}
	for _, st := range s.Status() {
		fmt.Println(st.SNIs[0], "stapled:", st.Stapled)
	}
	// Unordered output:
	// good.example stapled: true
	// no-url.example stapled: false
}

// Update changes the cluster configuration atomically; a rejected update
// changes nothing.
func ExampleStapler_Update() {
	s, _ := stapler.New(config.OCSP{}, quiet())
	defer s.Close()

	qf := 600
	cfg, err := s.Update(config.OCSPUpdate{QueryFrequency: &qf})
	fmt.Println(cfg.QueryFrequency, err)

	tooMany := 500
	cfg, err = s.Update(config.OCSPUpdate{RecoveryMaxTries: &tooMany})
	fmt.Println(cfg.RecoveryMaxTries, err)
	// Output:
	// 600 <nil>
	// 5 invalid_schema: recovery_max_tries: must be an integer from 1 to 100, got 500
}

// Test asks the responder now, as POST /v1/ocsp/test does.
func ExampleStapler_Test() {
	ca, _ := responder.NewCA(responder.CAOptions{})
	ocspServer := responder.NewServer(responder.New(ca))
	defer ocspServer.Close()
	leaf, _ := ocspServer.Issue(responder.LeafOptions{})

	s, _ := stapler.New(config.OCSP{OCSPFunctionality: true}, quiet())
	defer s.Close()
	id, _ := s.Add(&leaf.Certificate)
	st, err := s.Test(context.Background(), id)
	fmt.Println(st.CertStatus, st.ResponderURL == ocspServer.URL, err)
	// Output: GOOD true <nil>
}

// A Go client that checks the server's staple: a revoked certificate is
// refused, and so is a must-staple one that comes without a staple.
func ExampleVerifier() {
	ca, _ := responder.NewCA(responder.CAOptions{})
	ocspServer := responder.NewServer(responder.New(ca))
	defer ocspServer.Close()
	leaf, _ := ocspServer.Issue(responder.LeafOptions{})

	s, _ := stapler.New(config.OCSP{OCSPFunctionality: true}, quiet())
	defer s.Close()
	ln, _ := tls.Listen("tcp", "127.0.0.1:0", s.Wrap(&tls.Config{Certificates: []tls.Certificate{leaf.Certificate}}))
	defer ln.Close()
	go serveHandshakes(ln)

	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	verifier := &stapler.Verifier{}
	dial := func() error {
		conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{
			RootCAs:          roots,
			ServerName:       "localhost",
			VerifyConnection: verifier.VerifyConnection,
		})
		if err == nil {
			conn.Close()
		}
		return err
	}
	s.Ready(context.Background())
	fmt.Println("connected:", dial() == nil)

	// The certificate is revoked; the server staples the revocation (the
	// lenient policy serves it), and the client refuses the connection.
	ocspServer.Responder.SetStatus(leaf.Cert.SerialNumber, responder.Revoked(time.Now().Add(-time.Minute), ocsp.KeyCompromise))
	s.Test(context.Background(), stapler.CertificateID(leaf.Cert.Raw))
	var revoked *stapler.RevokedError
	fmt.Println("refused as revoked:", errors.As(dial(), &revoked))

	// A must-staple certificate (RFC 7633) from a server that staples
	// nothing: the client refuses it, even without HardFail.
	must, _ := ocspServer.Issue(responder.LeafOptions{MustStaple: true})
	bare, _ := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{must.Certificate}})
	defer bare.Close()
	go serveHandshakes(bare)
	conn, err := tls.Dial("tcp", bare.Addr().String(), &tls.Config{
		RootCAs:          roots,
		ServerName:       "localhost",
		VerifyConnection: verifier.VerifyConnection,
	})
	if err == nil {
		conn.Close()
	}
	var stapleErr *stapler.StapleError
	fmt.Println("must-staple without a staple refused:", errors.As(err, &stapleErr) && stapleErr.MustStaple && errors.Is(err, stapler.ErrNoStaple))
	// Output:
	// connected: true
	// refused as revoked: true
	// must-staple without a staple refused: true
}

// LoadKeyPair loads certificate files into a config before Wrap, where
// http.Server's ListenAndServeTLS(certFile, keyFile) would load them into
// its own copy, unstapled.
func ExampleLoadKeyPair() {
	s, err := stapler.New(config.OCSP{OCSPFunctionality: true})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	cfg, err := stapler.LoadKeyPair(&tls.Config{MinVersion: tls.VersionTLS12}, "chain.pem", "key.pem")
	if err != nil {
		fmt.Println("no key pair here:", errors.Is(err, fs.ErrNotExist))
		return
	}
	srv := &http.Server{Addr: ":8443", TLSConfig: s.Wrap(cfg)}
	log.Fatal(srv.ListenAndServeTLS("", ""))
	// Output: no key pair here: true
}

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

// An mTLS server whose clients' CA publishes CRLs and runs no OCSP
// responder.
func ExampleVerifier_crl() {
	clientCAs := x509.NewCertPool() // the CA's certificate: clientCAs.AppendCertsFromPEM(caPEM)
	v := &stapler.Verifier{
		// The Verifier may fetch each client certificate's CRL (its
		// http or https CRL distribution point), and this bounds the
		// whole check of one handshake.
		FetchTimeout: 3 * time.Second,
		// Refuse a client whose status could not be established (the
		// CRL server down, the CRL expired or refused). Without it,
		// only a known revocation is refused.
		HardFail: true,
	}
	server := &http.Server{
		Addr: ":8443",
		TLSConfig: &tls.Config{
			ClientAuth:       tls.RequireAndVerifyClientCert,
			ClientCAs:        clientCAs,
			VerifyConnection: v.VerifyConnection,
		},
	}
	_ = server // server.ListenAndServeTLS("server.pem", "server.key")
}

// ExampleVerifier shows what its doc promises: while the doc says "a
// revoked certificate is refused, and so is a must-staple one that comes
// without a staple", its code issues a must-staple certificate and its
// Output shows that refusal too, so a reader of pkg.go.dev gets the
// demonstration promised. Found when the example showed the revocation
// only.
func TestExampleVerifierShowsWhatItsDocPromises(t *testing.T) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "example_test.go", nil, parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range f.Decls {
		fn, ok := d.(*ast.FuncDecl)
		if !ok || fn.Name.Name != "ExampleVerifier" {
			continue
		}
		doc := fn.Doc.Text()
		if !strings.Contains(doc, "must-staple") {
			return // the doc no longer promises it
		}
		var body strings.Builder
		ast.Inspect(fn.Body, func(n ast.Node) bool {
			if id, ok := n.(*ast.Ident); ok {
				body.WriteString(id.Name + " ")
			}
			return true
		})
		out := ""
		for _, cg := range f.Comments {
			if cg.Pos() > fn.Body.Lbrace && cg.End() < fn.Body.Rbrace && strings.HasPrefix(strings.TrimSpace(cg.Text()), "Output:") {
				out = cg.Text()
			}
		}
		if !strings.Contains(body.String(), "MustStaple") || !strings.Contains(strings.ToLower(out), "must") {
			t.Fatalf("ExampleVerifier's doc promises %q, but its code issues no must-staple certificate and its output shows no such refusal:\n%s", strings.TrimSpace(doc), out)
		}
		return
	}
	t.Fatal("ExampleVerifier not found")
}
