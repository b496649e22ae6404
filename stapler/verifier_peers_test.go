package stapler

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/staplerkit/ocsp/config"
	"github.com/staplerkit/ocsp/responder"
	"golang.org/x/crypto/ocsp"
)

func TestVerifierAcceptsAResumedSessionWhoseStapleHasSinceExpired(t *testing.T) {
	for _, v := range tlsVersions {
		for _, tc := range []struct {
			name       string
			mustStaple bool
			hardFail   bool
		}{
			{"hard-fail", false, true},
			{"must-staple", true, false},
		} {
			t.Run(v.name+"/"+tc.name, func(t *testing.T) {
				e := newEnv(t, on)
				leaf, err := e.srv.Issue(responder.LeafOptions{MustStaple: tc.mustStaple})
				if err != nil {
					t.Fatal(err)
				}
				addr := e.serveGreeting(e.s.Wrap(tlsConfigFor(leaf)))
				e.waitStapled(leaf)
				client := e.sessionClient(&Verifier{HardFail: tc.hardFail, Time: e.clock.Now}, v.version)
				if resumed, err := dialSession(addr, client); err != nil || resumed {
					t.Fatalf("first connection: resumed %v, %v", resumed, err)
				}
				// A day later the server holds a fresh staple; the session's
				// staple has expired.
				queries := e.status(leaf).Queries
				e.clock.Advance(25 * time.Hour)
				e.waitQueries(leaf, queries+1)
				e.waitStapled(leaf)
				resumed, err := dialSession(addr, client)
				if err != nil {
					t.Fatalf("resumed session to a server with a current staple refused: %v", err)
				}
				if !resumed {
					t.Fatal("the session was not resumed")
				}
			})
		}
	}
}

func TestVerifierRefusesAKnownRevocationOnAResumedSession(t *testing.T) {
	for _, v := range tlsVersions {
		t.Run(v.name, func(t *testing.T) {
			e := newEnv(t, on)
			addr := e.serveGreeting(e.s.Wrap(tlsConfigFor(e.leaf)))
			e.waitStapled(e.leaf)
			verifier := &Verifier{Time: e.clock.Now}
			client := e.sessionClient(verifier, v.version)
			if _, err := dialSession(addr, client); err != nil {
				t.Fatal(err)
			}
			// The certificate is revoked; the Verifier learns it from
			// another server's staple. The first server still holds its good
			// staple (no refresh yet), which the session carries too.
			e.clock.Advance(time.Minute)
			e.r.SetStatus(e.leaf.Cert.SerialNumber, responder.Revoked(e.clock.Now(), ocsp.KeyCompromise))
			revoked := e.leaf.Certificate
			revoked.OCSPStaple = mustFetchRaw(t, e, e.leaf)
			other := e.serve(&tls.Config{Certificates: []tls.Certificate{revoked}})
			var re *RevokedError
			if err := e.dialVerified(other, verifier); !errors.As(err, &re) {
				t.Fatalf("revoked staple: %v", err)
			}
			resumed, err := dialSession(addr, client)
			if !errors.As(err, &re) {
				t.Fatalf("a resumed session was accepted (resumed %v) although the Verifier knows of the revocation: %v", resumed, err)
			}
		})
	}
}

// An mTLS server gets the client's first staple back on a resumed session.
func TestMutualTLSServerAcceptsAResumedSessionWhoseClientStapleHasSinceExpired(t *testing.T) {
	e := newEnv(t, on)
	client, _ := e.srv.Issue(responder.LeafOptions{DNSNames: []string{"client.test"}})
	roots := x509.NewCertPool()
	roots.AddCert(e.ca.Cert)
	v := &Verifier{HardFail: true, Time: e.clock.Now}
	resumedAtServer := make(chan bool, 4)
	addr := e.serveGreeting(&tls.Config{
		Certificates: []tls.Certificate{e.leaf.Certificate},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    roots,
		MinVersion:   tls.VersionTLS13,
		VerifyConnection: func(cs tls.ConnectionState) error {
			resumedAtServer <- cs.DidResume
			return v.VerifyConnection(cs)
		},
	})
	clientConfig := e.s.Wrap(&tls.Config{Certificates: []tls.Certificate{client.Certificate}, RootCAs: roots, ServerName: "localhost",
		ClientSessionCache: tls.NewLRUClientSessionCache(8)})
	e.waitStapled(client)
	if _, err := dialSession(addr, clientConfig); err != nil {
		t.Fatal(err)
	}
	if <-resumedAtServer {
		t.Fatal("first connection resumed")
	}
	queries := e.status(client).Queries
	e.clock.Advance(25 * time.Hour)
	e.waitQueries(client, queries+1)
	e.waitStapled(client)
	if _, err := dialSession(addr, clientConfig); err != nil {
		t.Fatalf("resumed session of a client with a current staple refused: %v", err)
	}
	if !<-resumedAtServer {
		t.Fatal("the session was not resumed")
	}
}

// staticStapled serves leaf with the given staple, never refreshed.
func (e *env) staticStapled(leaf *responder.Leaf, staple []byte) string {
	c := leaf.Certificate
	c.OCSPStaple = staple
	return e.serve(&tls.Config{Certificates: []tls.Certificate{c}})
}

func TestVerifierNeverAcceptsAnOlderGoodOverANewerRevoked(t *testing.T) {
	e := newEnv(t, on)
	good := mustFetchRaw(t, e, e.leaf) // valid for a day
	e.clock.Advance(time.Hour)
	e.r.SetStatus(e.leaf.Cert.SerialNumber, responder.Revoked(e.clock.Now(), ocsp.KeyCompromise))
	revoked := mustFetchRaw(t, e, e.leaf)
	replay := e.staticStapled(e.leaf, good) // a stolen key and an old staple
	honest := e.staticStapled(e.leaf, revoked)
	plain := e.serve(tlsConfigFor(e.leaf))

	var re *RevokedError
	// Learnt from a staple.
	v := &Verifier{Time: e.clock.Now}
	if err := e.dialVerified(honest, v); !errors.As(err, &re) {
		t.Fatalf("revoked staple: %v", err)
	}
	if err := e.dialVerified(replay, v); !errors.As(err, &re) {
		t.Fatalf("an older good staple was accepted after a newer revoked one: %v", err)
	}
	// Learnt from the responder.
	v = &Verifier{FetchTimeout: 5 * time.Second, Time: e.clock.Now}
	if err := e.dialVerified(plain, v); !errors.As(err, &re) {
		t.Fatalf("fetched revocation: %v", err)
	}
	if err := e.dialVerified(replay, v); !errors.As(err, &re) {
		t.Fatalf("an older good staple was accepted after the responder said revoked: %v", err)
	}
	// The other way round: the newer answer still wins.
	v = &Verifier{Time: e.clock.Now}
	if err := e.dialVerified(replay, v); err != nil {
		t.Fatal(err)
	}
	if err := e.dialVerified(honest, v); !errors.As(err, &re) {
		t.Fatalf("revoked staple after a good one: %v", err)
	}
	if err := e.dialVerified(replay, v); !errors.As(err, &re) {
		t.Fatalf("an older good staple was accepted after a newer revoked one: %v", err)
	}
}

func TestVerifierRemembersFailedRequests(t *testing.T) {
	e := newEnv(t, on)
	e.r.SetFault(responder.Fault{Kind: responder.FaultHTTP500})
	plain := e.serve(tlsConfigFor(e.leaf))
	soft := &Verifier{FetchTimeout: 5 * time.Second, Time: e.clock.Now}
	for range 10 {
		if err := e.dialVerified(plain, soft); err != nil {
			t.Fatalf("soft fail refused: %v", err)
		}
	}
	if n := e.r.RequestCount(); n != 1 {
		t.Fatalf("%d requests for 10 connections with the responder down, want 1", n)
	}
	hard := &Verifier{HardFail: true, FetchTimeout: 5 * time.Second, Time: e.clock.Now}
	e.dialVerified(plain, hard)
	err := e.dialVerified(plain, hard)
	if !errors.Is(err, ErrHTTPStatus) || !strings.Contains(err.Error(), "remembered") {
		t.Fatalf("a remembered failure: %v", err)
	}
	// Backoff: asked again after 5 s, then after 10 more.
	before := e.r.RequestCount()
	e.clock.Advance(verifierRetryMin)
	e.dialVerified(plain, soft)
	e.clock.Advance(verifierRetryMin)
	e.dialVerified(plain, soft)
	if n := e.r.RequestCount() - before; n != 1 {
		t.Fatalf("%d requests, want 1 (the second failure doubles the wait)", n)
	}
	e.clock.Advance(verifierRetryMin)
	e.r.SetFault(responder.Fault{})
	if err := e.dialVerified(plain, hard); err != nil {
		t.Fatalf("responder back: %v", err)
	}
	if n := e.r.RequestCount() - before; n != 2 {
		t.Fatalf("%d requests, want 2", n)
	}
}

func TestVerifierConcurrentConnectionsShareOneRequest(t *testing.T) {
	e := newEnv(t, on)
	e.r.SetFault(responder.Fault{Kind: responder.FaultDelay, Delay: 300 * time.Millisecond})
	plain := e.serve(tlsConfigFor(e.leaf))
	for _, heal := range []bool{false, true} {
		v := &Verifier{HardFail: true, FetchTimeout: 5 * time.Second, Time: e.clock.Now}
		if !heal {
			e.r.SetFault(responder.Fault{Kind: responder.FaultDelay, Delay: 300 * time.Millisecond})
			e.r.QueueFaults(responder.Fault{Kind: responder.FaultHTTP500})
		}
		before := e.r.RequestCount()
		var wg sync.WaitGroup
		for range 10 {
			wg.Go(func() { e.dialVerified(plain, v) })
		}
		wg.Wait()
		if n := e.r.RequestCount() - before; n != 1 {
			t.Fatalf("%d requests for 10 concurrent connections, want 1", n)
		}
	}
}

func TestVerifierCheckHasOneDeadline(t *testing.T) {
	e := newEnv(t, on)
	delegate, err := e.ca.NewDelegate(responder.DelegateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e.r.UseDelegate(delegate)
	e.r.Forget(e.leaf.Cert.SerialNumber)
	// A staple signed by a delegate, saying unknown: checking it asks about
	// the delegate, then (unknown decides nothing) about the certificate.
	addr := e.staticStapled(e.leaf, mustFetchRaw(t, e, e.leaf))
	e.r.SetFault(responder.Fault{Kind: responder.FaultHang})
	before := e.r.RequestCount()
	v := &Verifier{HardFail: true, FetchTimeout: 300 * time.Millisecond, Time: e.clock.Now}
	err = e.dialVerified(addr, v)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want the check's deadline", err)
	}
	// The delegate check spent the whole deadline: the fetch is not even
	// sent, so the check took one timeout, not two.
	if n := e.r.RequestCount() - before; n > 1 {
		t.Fatalf("%d requests, want the delegate check's alone: the fetch was sent after the deadline passed", n)
	}
}

func TestVerifierErrorsSayWhatHappened(t *testing.T) {
	e := newEnv(t, on)
	other, _ := e.srv.Issue(responder.LeafOptions{})
	wrong := e.staticStapled(e.leaf, mustFetchRaw(t, e, other))
	plain := e.serve(tlsConfigFor(e.leaf))
	err := e.dialVerified(wrong, &Verifier{Time: e.clock.Now})
	if err == nil || strings.Contains(err.Error(), "hard fail") || !strings.Contains(err.Error(), "another certificate") {
		t.Fatalf("a soft-fail verifier refusing another certificate's staple says: %v", err)
	}
	err = e.dialVerified(plain, &Verifier{HardFail: true, Time: e.clock.Now})
	if !errors.Is(err, ErrNoStaple) || !strings.Contains(err.Error(), "(hard fail): the peer sent no OCSP staple") || strings.Contains(err.Error(), "to staple") {
		t.Fatalf("no staple under hard fail says: %v", err)
	}
}

// An mTLS server under HardFail: TLS 1.2 clients cannot staple, so they
// are refused unless FetchTimeout asks the responder instead.
func TestMutualTLSHardFailAndTLS12Clients(t *testing.T) {
	e := newEnv(t, config.OCSP{OCSPFunctionality: true})
	client, _ := e.srv.Issue(responder.LeafOptions{DNSNames: []string{"client.test"}})
	roots := x509.NewCertPool()
	roots.AddCert(e.ca.Cert)
	clientConfig := e.s.Wrap(&tls.Config{Certificates: []tls.Certificate{client.Certificate}, RootCAs: roots, ServerName: "localhost"})
	e.waitStapled(client)
	for _, tc := range []struct {
		fetchTimeout time.Duration
		version      uint16
		want         error
	}{
		{0, tls.VersionTLS13, nil},
		{0, tls.VersionTLS12, ErrNoStaple},
		{5 * time.Second, tls.VersionTLS12, nil},
	} {
		verdicts := make(chan error, 1)
		v := &Verifier{HardFail: true, FetchTimeout: tc.fetchTimeout, Time: e.clock.Now}
		addr := e.serve(&tls.Config{
			Certificates: []tls.Certificate{e.leaf.Certificate},
			ClientAuth:   tls.RequireAndVerifyClientCert,
			ClientCAs:    roots,
			VerifyConnection: func(cs tls.ConnectionState) error {
				err := v.VerifyConnection(cs)
				verdicts <- err
				return err
			},
		})
		c := clientConfig.Clone()
		c.MaxVersion = tc.version
		conn, err := tls.Dial("tcp", addr, c)
		if err == nil {
			conn.Write([]byte("x"))
		}
		if err := <-verdicts; !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
			t.Fatalf("version %x: got %v, want %v", tc.version, err, tc.want)
		}
		if conn != nil {
			conn.Close()
		}
	}
}

// A client that meets very many servers: the Verifier's memory is bounded,
// and revocations are the last thing it forgets.
func TestVerifierMemoryIsBoundedAndKeepsRevocations(t *testing.T) {
	e := newEnv(t, on)
	staples := map[string]*tls.Certificate{}
	var first *responder.Leaf
	var oldGood, revoked []byte
	for i := range 12 {
		name := fmt.Sprintf("l%d.test", i)
		l, err := e.srv.Issue(responder.LeafOptions{DNSNames: []string{name}})
		if err != nil {
			t.Fatal(err)
		}
		c := l.Certificate
		c.OCSPStaple = mustFetchRaw(t, e, l)
		staples[name] = &c
		if i == 0 {
			first, oldGood = l, c.OCSPStaple
		}
	}
	e.clock.Advance(time.Hour)
	e.r.SetStatus(first.Cert.SerialNumber, responder.Revoked(e.clock.Now(), ocsp.KeyCompromise))
	revoked = mustFetchRaw(t, e, first)
	var replay atomic.Bool
	addr := e.serve(&tls.Config{GetCertificate: func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
		c := *staples[h.ServerName]
		if h.ServerName == "l0.test" {
			c.OCSPStaple = revoked
			if replay.Load() {
				c.OCSPStaple = oldGood
			}
		}
		return &c, nil
	}})
	v := &Verifier{Time: e.clock.Now}
	v.maxKnown = 4
	dial := func(name string) error {
		_, _, err := e.handshake(addr, func(c *tls.Config) { c.ServerName = name; c.VerifyConnection = v.VerifyConnection })
		return err
	}
	var re *RevokedError
	if err := dial("l0.test"); !errors.As(err, &re) {
		t.Fatalf("revoked: %v", err)
	}
	for i := 1; i < 12; i++ {
		if err := dial(fmt.Sprintf("l%d.test", i)); err != nil {
			t.Fatal(err)
		}
	}
	v.mu.Lock()
	n := len(v.known)
	v.mu.Unlock()
	if n > 4 {
		t.Fatalf("%d certificates remembered, bound 4", n)
	}
	replay.Store(true)
	if err := dial("l0.test"); !errors.As(err, &re) {
		t.Fatalf("the revocation was forgotten before good answers: %v", err)
	}
}

// A good and a revoked response signed in the same second carry the same
// times; once the good one is known, the revoked staple is still refused (a
// valid revocation is final), and the good one is not accepted after it.
func TestVerifierRefusesARevocationWithTheSameTimesAsAGoodAnswer(t *testing.T) {
	e := newEnv(t, on)
	good := mustFetchRaw(t, e, e.leaf)
	e.r.SetStatus(e.leaf.Cert.SerialNumber, responder.Revoked(e.clock.Now().Add(-time.Second), ocsp.KeyCompromise))
	revoked := mustFetchRaw(t, e, e.leaf) // the clock stood still: the same times
	goodSrv := e.staticStapled(e.leaf, good)
	revokedSrv := e.staticStapled(e.leaf, revoked)
	v := &Verifier{Time: e.clock.Now}
	if err := e.dialVerified(goodSrv, v); err != nil {
		t.Fatal(err)
	}
	var re *RevokedError
	if err := e.dialVerified(revokedSrv, v); !errors.As(err, &re) {
		t.Fatalf("a revoked staple with the same times as a known good one: %v", err)
	}
	if err := e.dialVerified(goodSrv, v); !errors.As(err, &re) {
		t.Fatalf("the good staple accepted after the revocation with the same times: %v", err)
	}
}

// A resumed session whose restored staple has expired is accepted when the
// staple was a valid good answer when the session began
// (checkedWhenSessionBegan), also when the staple carries several
// SingleResponses (RFC 6960 allows several: batch-signed responses, the
// whole chain's status), as with a one-answer staple (the control subtest),
// for HardFail and must-staple clients alike. Found when that check parsed
// the staple with x/crypto's ocsp.ParseResponse(raw, nil), which refuses
// more than one SingleResponse when no certificate is given ("bad number of
// responses").
func TestResumedSessionWithAMultiResponseStaple(t *testing.T) {
	for _, tc := range []struct {
		name  string
		multi bool
	}{{"one answer (control)", false}, {"two answers", true}} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, on)
			other, err := e.ca.Issue(responder.LeafOptions{})
			if err != nil {
				t.Fatal(err)
			}
			staple := mustFetchRaw(t, e, e.leaf)
			staple = resign(t, staple, e.ca.Key, func(tbs *derNode) {
				if !tc.multi {
					return
				}
				for _, c := range tbs.children {
					if c.tag == single(tbs).tag && len(c.children) > 0 && c.children[0] == single(tbs) {
						second := parseDER(t, single(tbs).bytes(t))
						second.children[0].children[3] = parseDER(t, serialDER(t, other))
						c.children = append(c.children, second)
					}
				}
			})
			// The full handshake accepts it: the Verifier's parser allows
			// several answers.
			if _, err := (&Verifier{}).verify(t.Context(), staple, e.leaf.Cert, e.ca.Cert, e.clock.Now()); err != nil {
				t.Fatalf("the staple does not verify: %v", err)
			}
			cert := e.leaf.Certificate
			cert.OCSPStaple = staple
			addr := e.serveGreeting(&tls.Config{Certificates: []tls.Certificate{cert}})
			client := e.sessionClient(&Verifier{HardFail: true, Time: e.clock.Now}, tls.VersionTLS13)
			if resumed, err := dialSession(addr, client); err != nil || resumed {
				t.Fatalf("first connection: resumed %v, %v", resumed, err)
			}
			e.clock.Advance(25 * time.Hour) // the session's staple has expired
			resumed, err := dialSession(addr, client)
			if err != nil {
				t.Fatalf("resumed session refused (resumed %v): %v", resumed, err)
			}
		})
	}
}

func serialDER(t testing.TB, l *responder.Leaf) []byte {
	t.Helper()
	var n derNode
	n.tag = 0x02
	b := l.Cert.SerialNumber.Bytes()
	if len(b) == 0 || b[0]&0x80 != 0 {
		b = append([]byte{0}, b...)
	}
	n.content = b
	return n.bytes(t)
}
