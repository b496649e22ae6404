package stapler

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/staplerkit/ocsp/config"
	"github.com/staplerkit/ocsp/responder"
	"golang.org/x/crypto/ocsp"
)

// dialVerified connects with a Verifier as the client's VerifyConnection.
func (e *env) dialVerified(addr string, v *Verifier) error {
	e.t.Helper()
	_, _, err := e.handshake(addr, func(c *tls.Config) { c.VerifyConnection = v.VerifyConnection })
	return err
}

func TestVerifierEndToEnd(t *testing.T) {
	e := newEnv(t, config.OCSP{OCSPFunctionality: true, QueryFrequency: 300})
	addr := e.wrapAndServe(e.leaf.Certificate)
	v := &Verifier{Time: e.clock.Now}
	if err := e.dialVerified(addr, v); err != nil {
		t.Fatalf("good certificate refused: %v", err)
	}
	// The responder flips to revoked: refused within one refresh.
	revokedAt := e.clock.Now().Add(-time.Minute)
	e.r.SetStatus(e.leaf.Cert.SerialNumber, responder.Revoked(revokedAt, ocsp.KeyCompromise))
	if err := e.dialVerified(addr, v); err != nil {
		t.Fatalf("refused before the refresh: %v", err)
	}
	e.clock.Advance(300 * time.Second)
	e.waitQueries(e.leaf, 2)
	err := e.dialVerified(addr, v)
	var re *RevokedError
	if !errors.As(err, &re) || re.Serial.Cmp(e.leaf.Cert.SerialNumber) != 0 || !re.RevokedAt.Equal(revokedAt) || re.Reason != ocsp.KeyCompromise {
		t.Fatalf("got %v, want a RevokedError naming the certificate", err)
	}
}

func TestVerifierRefusesMustStapleWithoutStaple(t *testing.T) {
	e := newEnv(t, on, WithColdWait(50*time.Millisecond))
	ms, err := e.srv.Issue(responder.LeafOptions{MustStaple: true})
	if err != nil {
		t.Fatal(err)
	}
	e.srv.Close() // down from the start
	// A plain server that staples nothing, so the client's verifier decides.
	addr := e.serve(&tls.Config{Certificates: []tls.Certificate{ms.Certificate}})
	var se *StapleError
	if err := e.dialVerified(addr, &Verifier{}); !errors.As(err, &se) || !se.MustStaple || !errors.Is(err, ErrNoStaple) {
		t.Fatalf("got %v", err)
	}
	// And through a Stapler: the server itself refuses.
	if err := e.dialVerified(e.wrapAndServe(ms.Certificate), &Verifier{}); err == nil {
		t.Fatal("must-staple certificate accepted without a staple")
	}
	// A certificate without must-staple and no staple: soft fail by default,
	// refused under HardFail.
	plain := e.serve(&tls.Config{Certificates: []tls.Certificate{e.leaf.Certificate}})
	if err := e.dialVerified(plain, &Verifier{}); err != nil {
		t.Fatalf("soft fail refused: %v", err)
	}
	if err := e.dialVerified(plain, &Verifier{HardFail: true}); !errors.Is(err, ErrNoStaple) {
		t.Fatalf("hard fail: %v", err)
	}
}

func TestVerifierRefusesAStapleForAnotherCertificate(t *testing.T) {
	e := newEnv(t, on)
	other, _ := e.srv.Issue(responder.LeafOptions{})
	// A server that staples other's (valid) response on e.leaf.
	c := e.s.Wrap(&tls.Config{Certificates: []tls.Certificate{other.Certificate}})
	otherStapled, err := c.GetCertificate(&tls.ClientHelloInfo{})
	if err != nil || otherStapled.OCSPStaple == nil {
		t.Fatal("no staple for the other certificate")
	}
	wrong := e.leaf.Certificate
	wrong.OCSPStaple = otherStapled.OCSPStaple
	addr := e.serve(&tls.Config{Certificates: []tls.Certificate{wrong}})
	for _, v := range []*Verifier{{}, {HardFail: true}} {
		var se *StapleError
		if err := e.dialVerified(addr, v); !errors.Is(err, ErrWrongCertificate) || !errors.As(err, &se) {
			t.Fatalf("got %v", err)
		}
	}
}

func TestVerifierTreatsAnExpiredStapleAsMissing(t *testing.T) {
	e := newEnv(t, on)
	own, err := e.s.Wrap(&tls.Config{Certificates: []tls.Certificate{e.leaf.Certificate}}).GetCertificate(&tls.ClientHelloInfo{})
	if err != nil || own.OCSPStaple == nil {
		t.Fatal("no staple")
	}
	addr := e.serve(&tls.Config{Certificates: []tls.Certificate{*own}}) // a static staple, never refreshed
	e.clock.Advance(25 * time.Hour)
	if err := e.dialVerified(addr, &Verifier{Time: e.clock.Now}); err != nil {
		t.Fatalf("soft fail refused an expired staple: %v", err)
	}
	if err := e.dialVerified(addr, &Verifier{HardFail: true, Time: e.clock.Now}); !errors.Is(err, ErrExpired) {
		t.Fatalf("hard fail: %v", err)
	}
}

func TestVerifierFetchesWhenNoStapleCame(t *testing.T) {
	e := newEnv(t, on)
	addr := e.serve(&tls.Config{Certificates: []tls.Certificate{e.leaf.Certificate}})
	v := &Verifier{HardFail: true, FetchTimeout: hangLimit, Time: e.clock.Now}
	for range 3 {
		if err := e.dialVerified(addr, v); err != nil {
			t.Fatal(err)
		}
	}
	if n := e.r.RequestCount(); n != 1 {
		t.Fatalf("%d requests for 3 connections, want 1 (cached)", n)
	}
	e.r.SetStatus(e.leaf.Cert.SerialNumber, responder.Revoked(e.clock.Now(), ocsp.Unspecified))
	e.clock.Advance(25 * time.Hour) // past the cached answer's nextUpdate
	var re *RevokedError
	if err := e.dialVerified(addr, v); !errors.As(err, &re) {
		t.Fatalf("got %v", err)
	}
}

func TestVerifierWithoutVerifiedChains(t *testing.T) {
	e := newEnv(t, on)
	addr := e.serve(&tls.Config{Certificates: []tls.Certificate{e.leaf.Certificate}})
	skip := func(v *Verifier) func(*tls.Config) {
		return func(c *tls.Config) { c.InsecureSkipVerify = true; c.VerifyConnection = v.VerifyConnection }
	}
	if _, _, err := e.handshake(addr, skip(&Verifier{})); err != nil {
		t.Fatalf("soft fail without chains: %v", err)
	}
	if _, _, err := e.handshake(addr, skip(&Verifier{HardFail: true})); !errors.Is(err, ErrNoVerifiedChain) {
		t.Fatalf("hard fail without chains: %v", err)
	}
}

func TestMutualTLSServerVerifiesTheClientStaple(t *testing.T) {
	e := newEnv(t, config.OCSP{OCSPFunctionality: true, QueryFrequency: 300})
	client, _ := e.srv.Issue(responder.LeafOptions{DNSNames: []string{"client.test"}})
	serverLeaf, _ := e.srv.Issue(responder.LeafOptions{})
	roots := x509.NewCertPool()
	roots.AddCert(e.ca.Cert)
	verdicts := make(chan error, 10)
	v := &Verifier{HardFail: true, Time: e.clock.Now}
	addr := e.serve(&tls.Config{
		Certificates: []tls.Certificate{serverLeaf.Certificate},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    roots,
		MinVersion:   tls.VersionTLS13,
		VerifyConnection: func(cs tls.ConnectionState) error {
			err := v.VerifyConnection(cs)
			verdicts <- err
			return err
		},
	})
	clientConfig := e.s.Wrap(&tls.Config{Certificates: []tls.Certificate{client.Certificate}, RootCAs: roots, ServerName: "localhost"})
	e.waitStapled(client)
	connect := func() error {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: hangLimit}, "tcp", addr, clientConfig)
		if err != nil {
			return err
		}
		defer conn.Close()
		conn.Write([]byte("x"))
		select {
		case err := <-verdicts:
			return err
		case <-time.After(hangLimit):
			return errors.New("server never verified")
		}
	}
	if err := connect(); err != nil {
		t.Fatalf("server refused a good client staple: %v", err)
	}
	e.r.SetStatus(client.Cert.SerialNumber, responder.Revoked(e.clock.Now(), ocsp.KeyCompromise))
	e.clock.Advance(300 * time.Second)
	e.waitQueries(client, 2)
	var re *RevokedError
	if err := connect(); !errors.As(err, &re) {
		t.Fatalf("server accepted a revoked client: %v", err)
	}
}

func TestVerifierRefusesAStapleSignedByARevokedDelegate(t *testing.T) {
	e := newEnv(t, on)
	e.r.SetSerialFault(e.leaf.Cert.SerialNumber, responder.Fault{Kind: responder.FaultRevokedDelegate})
	stapled := e.leaf.Certificate
	stapled.OCSPStaple = mustFetchRaw(t, e, e.leaf)
	addr := e.serve(&tls.Config{Certificates: []tls.Certificate{stapled}})
	// With network checks allowed, the delegate's revocation is found.
	if err := e.dialVerified(addr, &Verifier{HardFail: true, FetchTimeout: hangLimit, Time: e.clock.Now}); !errors.Is(err, ErrUnauthorizedSigner) {
		t.Fatalf("got %v", err)
	}
	// Without them, the signature and EKU check pass and nothing more can be known.
	if err := e.dialVerified(addr, &Verifier{HardFail: true, Time: e.clock.Now}); err != nil {
		t.Fatalf("offline verifier: %v", err)
	}
}

// The zero Verifier is ready to use, and sets itself up once however many
// connections check with it at the same time.
func TestZeroVerifierFirstUseIsSafeForConcurrentUse(t *testing.T) {
	e := newEnv(t, on)
	addr := e.wrapAndServe(e.leaf.Certificate)
	e.waitStapled(e.leaf)
	v := &Verifier{HardFail: true, Time: e.clock.Now}
	errs := make(chan error, 8)
	for range 8 {
		go func() { errs <- e.dialVerified(addr, v) }()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatalf("a stapled good certificate refused: %v", err)
		}
	}
}

// A zero ClockSkew (Verifier, VerifyOptions) is the default 5 minutes, a
// negative one none.
func TestClockSkewFieldDefaults(t *testing.T) {
	for _, tc := range []struct{ in, want time.Duration }{
		{0, 5 * time.Minute},
		{-1, 0},
		{time.Minute, time.Minute},
	} {
		if got := skewOrDefault(tc.in); got != tc.want {
			t.Errorf("ClockSkew %v: got %v, want %v", tc.in, got, tc.want)
		}
	}
}

// A Verifier that asks a responder which answers UNKNOWN remembers the
// answer as a failure: ten connections within the backoff make one
// request, and the responder is asked again once the backoff has passed.
func TestVerifierAsksAboutAnUnknownCertificateOncePerBackoff(t *testing.T) {
	e := newEnv(t, on)
	e.r.Forget(e.leaf.Cert.SerialNumber)   // the responder answers unknown
	plain := e.serve(tlsConfigFor(e.leaf)) // staples nothing: the Verifier asks
	v := &Verifier{FetchTimeout: hangLimit, Time: e.clock.Now}
	serial := e.leaf.Cert.SerialNumber
	for i := range 10 {
		if err := e.dialVerified(plain, v); err != nil {
			t.Fatalf("connection %d: soft fail refused: %v", i+1, err)
		}
	}
	if n := e.r.CountFor(serial); n != 1 {
		t.Fatalf("%d requests for 10 connections with the responder answering unknown, want 1", n)
	}
	e.clock.Advance(verifierRetryMin - time.Second)
	e.dialVerified(plain, v)
	if n := e.r.CountFor(serial); n != 1 {
		t.Fatalf("%d requests within the backoff, want 1", n)
	}
	e.clock.Advance(2 * time.Second) // past the backoff
	e.dialVerified(plain, v)
	if n := e.r.CountFor(serial); n != 2 {
		t.Fatalf("%d requests after the backoff, want 2 (asked again)", n)
	}
}

type countingTransport struct {
	n    atomic.Int64
	next http.RoundTripper
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.next.RoundTrip(r)
}

// A Verifier with a nil Client uses a transport of its own, as its doc says
// ("If nil, the Verifier uses its own transport ..., as the Stapler does"):
// its OCSP requests never go through http.DefaultTransport, so they neither
// share the application's pool (2 idle connections per host) nor pass
// through whatever RoundTripper the application or a library installed
// there (a tracing or mocking transport, a proxy dialer). Found when it
// built an http.Client with a nil Transport.
func TestZeroClientVerifierUsesItsOwnTransport(t *testing.T) {
	ca, err := responder.NewCA(responder.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	srv := responder.NewServer(responder.New(ca))
	t.Cleanup(srv.Close)
	leaf, err := srv.Issue(responder.LeafOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// A server that staples nothing: a Verifier with FetchTimeout asks
	// the responder.
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{leaf.Certificate}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()

	counting := &countingTransport{next: http.DefaultTransport}
	old := http.DefaultTransport
	http.DefaultTransport = counting
	t.Cleanup(func() { http.DefaultTransport = old })

	v := &Verifier{FetchTimeout: time.Minute}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: roots, ServerName: "localhost", VerifyConnection: v.VerifyConnection})
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	conn.Close()
	if srv.Responder.RequestCount() == 0 {
		t.Fatal("the Verifier did not ask the responder")
	}
	if n := counting.n.Load(); n > 0 {
		t.Fatalf("the Verifier with a nil Client sent %d request(s) through http.DefaultTransport, not a transport of its own", n)
	}
}
