package stapler

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/staplerkit/ocsp/config"
	"github.com/staplerkit/ocsp/internal/ocspfetch"
	"github.com/staplerkit/ocsp/responder"
	"github.com/staplerkit/ocsp/stapler/clock"
	"golang.org/x/crypto/ocsp"
)

func newFakeClock() *clock.Manual {
	return clock.NewManual(time.Now().Truncate(time.Second))
}

// env is a CA, a live responder, a leaf it knows, and a Stapler on a fake
// clock, with a TLS server on loopback serving the wrapped config.
type env struct {
	t      testing.TB
	clock  *clock.Manual
	ca     *responder.CA
	srv    *responder.Server
	r      *responder.Responder
	leaf   *responder.Leaf
	s      *Stapler
	events chan StatusChange
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newEnv(t testing.TB, cfg config.OCSP, opts ...Option) *env {
	t.Helper()
	e := &env{t: t, clock: newFakeClock(), events: make(chan StatusChange, 100)}
	var err error
	if e.ca, err = responder.NewCA(responder.CAOptions{}); err != nil {
		t.Fatal(err)
	}
	e.r = responder.New(e.ca)
	e.r.SetClock(e.clock.Now)
	e.srv = responder.NewServer(e.r)
	t.Cleanup(e.srv.Close)
	if e.leaf, err = e.srv.Issue(responder.LeafOptions{}); err != nil {
		t.Fatal(err)
	}
	opts = append([]Option{WithClock(e.clock), WithLogger(quietLogger()), WithColdWait(hangLimit), WithStatusHook(func(c StatusChange) {
		select {
		case e.events <- c:
		default:
		}
	})}, opts...)
	if e.s, err = New(cfg, opts...); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.s.Close() })
	return e
}

// serve runs a TLS server with cfg on loopback until the test ends.
func (e *env) serve(cfg *tls.Config) string {
	e.t.Helper()
	l, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	var wg sync.WaitGroup
	e.t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer conn.Close()
				conn.SetDeadline(time.Now().Add(hangLimit))
				if err := conn.(*tls.Conn).Handshake(); err == nil {
					io.Copy(io.Discard, conn)
				}
			}()
		}
	}()
	return l.Addr().String()
}

// wrapAndServe wraps a config serving certs and serves it.
func (e *env) wrapAndServe(certs ...tls.Certificate) string {
	e.t.Helper()
	return e.serve(e.s.Wrap(&tls.Config{Certificates: certs}))
}

// handshake connects to addr and returns the staple the server sent.
func (e *env) handshake(addr string, mod ...func(*tls.Config)) ([]byte, *tls.ConnectionState, error) {
	e.t.Helper()
	roots := x509.NewCertPool()
	roots.AddCert(e.ca.Cert)
	cfg := &tls.Config{RootCAs: roots, ServerName: "localhost"}
	for _, f := range mod {
		f(cfg)
	}
	d := &net.Dialer{Timeout: hangLimit}
	conn, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return nil, nil, err
	}
	defer conn.Close()
	st := conn.ConnectionState()
	return st.OCSPResponse, &st, nil
}

// mustStaple does a handshake and checks that the staple verifies for leaf
// with the wanted status.
func (e *env) mustGetStaple(addr string, leaf *responder.Leaf, want int) *ocsp.Response {
	e.t.Helper()
	staple, _, err := e.handshake(addr)
	if err != nil {
		e.t.Fatalf("handshake: %v", err)
	}
	if staple == nil {
		e.t.Fatal("no staple")
	}
	resp, err := ocsp.ParseResponseForCert(staple, leaf.Cert, e.ca.Cert)
	if err != nil {
		e.t.Fatalf("staple does not verify: %v", err)
	}
	if resp.Status != want {
		e.t.Fatalf("staple status %d, want %d", resp.Status, want)
	}
	return resp
}

func (e *env) mustGetNoStaple(addr string) {
	e.t.Helper()
	staple, _, err := e.handshake(addr)
	if err != nil {
		e.t.Fatalf("handshake: %v", err)
	}
	if staple != nil {
		e.t.Fatal("stapled, want none")
	}
}

// hangLimit bounds every real-time wait of these tests: background work
// runs on real goroutines even when the clock is fake, and a busy machine
// (-race, two cores, other work) may take seconds where an idle one takes
// milliseconds. Only a hang reaches it; no test passes or fails on how fast
// the machine is.
const hangLimit = time.Minute

// eventually polls cond in real time until it holds, failing the test
// after hangLimit.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(hangLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func (e *env) status(leaf *responder.Leaf) CertificateStatus {
	e.t.Helper()
	st, err := e.s.StatusOf(CertificateID(leaf.Cert.Raw))
	if err != nil {
		e.t.Fatal(err)
	}
	return st
}

// waitStapled waits until the leaf's staple is in place.
func (e *env) waitStapled(leaf *responder.Leaf) {
	e.t.Helper()
	eventually(e.t, "a staple", func() bool { return e.status(leaf).Stapled })
}

// waitQueries waits until the Stapler has recorded n queries for leaf.
func (e *env) waitQueries(leaf *responder.Leaf, n int) CertificateStatus {
	e.t.Helper()
	var st CertificateStatus
	eventually(e.t, "queries to be recorded", func() bool {
		st = e.status(leaf)
		return st.Queries >= n
	})
	return st
}

var on = config.OCSP{OCSPFunctionality: true}

var _ = context.Background

// mustIssue issues a leaf with a key of type kt, valid for names.
func (e *env) mustIssue(kt responder.KeyType, names ...string) *responder.Leaf {
	e.t.Helper()
	l, err := e.srv.Issue(responder.LeafOptions{KeyType: kt, DNSNames: names})
	if err != nil {
		e.t.Fatal(err)
	}
	return l
}

func tlsConfigFor(l *responder.Leaf) *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{l.Certificate}}
}

func helloFor() *tls.ClientHelloInfo { return &tls.ClientHelloInfo{ServerName: "localhost"} }

// mustFetchRaw asks e's responder for leaf's response directly.
func mustFetchRaw(t testing.TB, e *env, l *responder.Leaf) []byte {
	t.Helper()
	raw, _, err := ocspfetch.Query(context.Background(), ocspfetch.NewHTTPClient(), e.srv.URL, l.Cert, e.ca.Cert)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// advanceToNextRefresh moves the clock to leaf's next planned query (to the
// nanosecond: the status rounds to seconds) and returns how many queries
// had been recorded before it.
func (e *env) advanceToNextRefresh(leaf *responder.Leaf) int {
	e.t.Helper()
	m, err := e.s.lookup(CertificateID(leaf.Cert.Raw))
	if err != nil {
		e.t.Fatal(err)
	}
	// The count is read before the plan: a query due now (planned by an
	// earlier step, OCSP turned on, say) that ends in between is then the
	// one waited for, not counted already with nothing left to come.
	var due time.Time
	var queries int
	eventually(e.t, "a planned query", func() bool {
		queries = e.status(leaf).Queries
		due = e.s.sched.DueAt(m)
		return !due.IsZero()
	})
	e.clock.Advance(max(0, due.Sub(e.clock.Now())))
	return queries
}

func ptr[T any](v T) *T { return &v }

// reportingServer is a TLS server on loopback that reports the server
// side's handshake result of each connection, in order, and writes one
// byte after a successful handshake (a client that reads it has taken in
// the TLS 1.3 session ticket sent before it).
type reportingServer struct {
	t       testing.TB
	addr    string
	results chan error
}

func serveReporting(t testing.TB, cfg *tls.Config) *reportingServer {
	t.Helper()
	l, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := &reportingServer{t: t, addr: l.Addr().String(), results: make(chan error, 64)}
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer conn.Close()
				conn.SetDeadline(time.Now().Add(hangLimit))
				err := conn.(*tls.Conn).Handshake()
				s.results <- err
				if err == nil {
					conn.Write([]byte("x"))
					conn.Read(make([]byte, 1)) // until the client closes
				}
			})
		}
	})
	return s
}

// connection is one connection's outcome, seen from both ends.
type connection struct {
	staple  []byte
	resumed bool
	client  error // the client's handshake, or reading the greeting
	server  error // the server's handshake
}

// connect dials s with cfg, reads the greeting, and waits for the server
// side's result of this connection before it returns, so that results
// never mix between connections.
func (s *reportingServer) connect(cfg *tls.Config) connection {
	s.t.Helper()
	var c connection
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: hangLimit}, "tcp", s.addr, cfg)
	if err == nil {
		conn.SetReadDeadline(time.Now().Add(hangLimit))
		if _, err = conn.Read(make([]byte, 1)); err == nil {
			st := conn.ConnectionState()
			c.staple, c.resumed = st.OCSPResponse, st.DidResume
		}
		conn.Close()
	}
	c.client = err
	select {
	case c.server = <-s.results:
	case <-time.After(hangLimit):
		s.t.Fatal("the server never finished its handshake")
	}
	return c
}

// clientConfig trusts e's CA and asks for "localhost"; mods adjust it.
func (e *env) clientConfig(mods ...func(*tls.Config)) *tls.Config {
	roots := x509.NewCertPool()
	roots.AddCert(e.ca.Cert)
	cfg := &tls.Config{RootCAs: roots, ServerName: "localhost"}
	for _, f := range mods {
		f(cfg)
	}
	return cfg
}

// sessionClient is a Go client with a session cache, so that its second
// connection to a server resumes the first one's session.
func (e *env) sessionClient(v *Verifier, version uint16) *tls.Config {
	roots := x509.NewCertPool()
	roots.AddCert(e.ca.Cert)
	return &tls.Config{
		RootCAs:            roots,
		ServerName:         "localhost",
		ClientSessionCache: tls.NewLRUClientSessionCache(8),
		VerifyConnection:   v.VerifyConnection,
		MinVersion:         version,
		MaxVersion:         version,
	}
}

// serveGreeting runs a TLS server that writes one byte after each
// handshake, so that a client reading it has taken in the session ticket
// sent before it (TLS 1.3 sends tickets after the handshake).
func (e *env) serveGreeting(cfg *tls.Config) string {
	e.t.Helper()
	l, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	var wg sync.WaitGroup
	e.t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer conn.Close()
				conn.SetDeadline(time.Now().Add(hangLimit))
				if conn.(*tls.Conn).Handshake() == nil {
					conn.Write([]byte("x"))
					conn.Read(make([]byte, 1)) // until the client closes
				}
			})
		}
	})
	return l.Addr().String()
}

// dialSession connects with cfg and reads the server's greeting, taking in
// the session ticket that comes before it.
func dialSession(addr string, cfg *tls.Config) (resumed bool, err error) {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: hangLimit}, "tcp", addr, cfg)
	if err != nil {
		return false, err
	}
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(hangLimit))
	if _, err := conn.Read(make([]byte, 1)); err != nil {
		return false, err
	}
	return conn.ConnectionState().DidResume, nil
}

// leafOnly drops the issuer from a chain.
func leafOnly(l *responder.Leaf) tls.Certificate {
	c := l.Certificate
	c.Certificate = c.Certificate[:1]
	return c
}

// issueTestLeaf issues a leaf for names from e's CA, with e's responder in its
// AIA, and returns it with its Leaf field cleared when noLeaf (as a
// certificate built by hand, or loaded with x509keypairleaf=0, has it).
func issueTestLeaf(t *testing.T, e *env, noLeaf bool, names ...string) (*responder.Leaf, tls.Certificate) {
	t.Helper()
	l, err := e.srv.Issue(responder.LeafOptions{DNSNames: names})
	if err != nil {
		t.Fatal(err)
	}
	c := l.Certificate
	if noLeaf {
		c.Leaf = nil
	}
	return l, c
}

// expectEvent waits for the status hook to report from -> to for leaf,
// passing over other certificates' events.
func (e *env) expectEvent(leaf *responder.Leaf, from, to State) {
	e.t.Helper()
	id := CertificateID(leaf.Cert.Raw)
	timeout := time.After(hangLimit)
	for {
		select {
		case ev := <-e.events:
			if ev.ID != id {
				continue
			}
			if ev.From != from || ev.To != to {
				e.t.Fatalf("status hook saw %s -> %s, want %s -> %s", ev.From, ev.To, from, to)
			}
			return
		case <-timeout:
			e.t.Fatalf("status hook never saw %s -> %s", from, to)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for a logger and a reader at once.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
