package stapler

import (
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/staplerkit/ocsp/cache"
	"github.com/staplerkit/ocsp/config"
	"github.com/staplerkit/ocsp/responder"
)

func TestFirstHandshakeIsStapled(t *testing.T) {
	e := newEnv(t, on)
	addr := e.wrapAndServe(e.leaf.Certificate)
	// No wait: the first handshake waits for the eager fetch (bounded).
	resp := e.mustGetStaple(addr, e.leaf, ocsp.Good)
	if resp.Certificate != nil {
		t.Fatal("CA-signed response should embed no certificate")
	}
	if n := e.r.RequestCount(); n != 1 {
		t.Fatalf("%d responder requests, want 1", n)
	}
	if reqs := e.r.Requests(); reqs[0].Method != "GET" {
		t.Fatalf("method %s, want GET for a short URL", reqs[0].Method)
	}
	st := e.status(e.leaf)
	if st.CertStatus != config.CertGood || st.State != StateGood || !st.Stapled || st.ResponderURL != e.srv.URL {
		t.Fatalf("status %+v", st)
	}
}

func TestDelegatedResponderStapleVerifies(t *testing.T) {
	e := newEnv(t, on)
	d, err := e.ca.NewDelegate(responder.DelegateOptions{KeyType: responder.RSA})
	if err != nil {
		t.Fatal(err)
	}
	e.r.UseDelegate(d)
	addr := e.wrapAndServe(e.leaf.Certificate)
	if resp := e.mustGetStaple(addr, e.leaf, ocsp.Good); resp.Certificate == nil {
		t.Fatal("delegate not embedded")
	}
}

func TestDualRSAAndECDSACertificatesEachGetTheirOwnStaple(t *testing.T) {
	e := newEnv(t, on)
	rsaLeaf, err := e.srv.Issue(responder.LeafOptions{KeyType: responder.RSA})
	if err != nil {
		t.Fatal(err)
	}
	addr := e.wrapAndServe(e.leaf.Certificate, rsaLeaf.Certificate)
	for _, tc := range []struct {
		leaf   *responder.Leaf
		suites []uint16
	}{
		{e.leaf, []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}},
		{rsaLeaf, []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}},
	} {
		staple, st, err := e.handshake(addr, func(c *tls.Config) {
			c.MaxVersion = tls.VersionTLS12
			c.CipherSuites = tc.suites
		})
		if err != nil {
			t.Fatal(err)
		}
		if !st.PeerCertificates[0].Equal(tc.leaf.Cert) {
			t.Fatal("server picked the other certificate")
		}
		if _, err := ocsp.ParseResponseForCert(staple, tc.leaf.Cert, e.ca.Cert); err != nil {
			t.Fatalf("%v staple: %v", tc.leaf.Cert.PublicKeyAlgorithm, err)
		}
	}
}

func TestCacheTTLBelow60IsRejected(t *testing.T) {
	e := newEnv(t, on)
	e.wrapAndServe(e.leaf.Certificate)
	id := CertificateID(e.leaf.Cert.Raw)
	before, _ := e.s.Stapling(id)
	if err := e.s.SetStapling(id, config.Stapling{Enabled: true, CacheTTL: 59}); !errors.Is(err, config.ErrInvalidSchema) {
		t.Fatalf("got %v", err)
	}
	if after, _ := e.s.Stapling(id); after != before {
		t.Fatalf("settings changed to %+v", after)
	}
}

func TestUpdateIsAtomicUnderConcurrentHandshakes(t *testing.T) {
	e := newEnv(t, on)
	addr := e.wrapAndServe(e.leaf.Certificate)
	e.mustGetStaple(addr, e.leaf, ocsp.Good)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var handshakes atomic.Int64
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, _, err := e.handshake(addr); err != nil {
					t.Error(err)
					return
				}
				handshakes.Add(1)
			}
		}()
	}
	for i := 0; i < 50 || handshakes.Load() < 20; i++ {
		i := i % 1000
		before := e.s.Get()
		bad := config.OCSPUpdate{QueryFrequency: ptr(120 + i), RecoveryMaxTries: ptr(1000)}
		got, err := e.s.Update(bad)
		if !errors.Is(err, config.ErrInvalidSchema) || got != before || e.s.Get() != before {
			t.Fatalf("rejected update changed the config: %+v -> %+v (%v)", before, got, err)
		}
		got, err = e.s.Update(config.OCSPUpdate{QueryFrequency: ptr(120 + i), ResponseTimeout: ptr(1 + i%5)})
		if err != nil || got.QueryFrequency != 120+i || got.ResponseTimeout != 1+i%5 || e.s.Get() != got {
			t.Fatalf("accepted update: %+v %v", got, err)
		}
	}
	close(stop)
	wg.Wait()
	if handshakes.Load() == 0 {
		t.Fatal("no handshakes ran")
	}
}

func TestUpdateTakesEffectAtOnce(t *testing.T) {
	e := newEnv(t, config.OCSP{OCSPFunctionality: false})
	addr := e.wrapAndServe(e.leaf.Certificate)
	e.mustGetNoStaple(addr)
	if e.r.RequestCount() != 0 {
		t.Fatal("fetched while off")
	}
	got, err := e.s.Update(config.OCSPUpdate{OCSPFunctionality: ptr(true)})
	if err != nil || !got.OCSPFunctionality || got.ResponderURL != e.srv.URL {
		t.Fatalf("%+v %v", got, err)
	}
	e.mustGetStaple(addr, e.leaf, ocsp.Good)
	st := e.waitQueries(e.leaf, 1)
	if d := st.NextRefresh.Sub(e.clock.Now()); d < 50*time.Minute {
		t.Fatalf("next refresh in %v", d)
	}
	// A shorter query_frequency moves the refresh earlier.
	if _, err := e.s.Update(config.OCSPUpdate{QueryFrequency: ptr(300)}); err != nil {
		t.Fatal(err)
	}
	if d := e.status(e.leaf).NextRefresh.Sub(e.clock.Now()); d > 300*time.Second {
		t.Fatalf("next refresh in %v after query_frequency 300", d)
	}
	e.clock.Advance(300 * time.Second)
	e.waitQueries(e.leaf, 2)
	// Off: no staple and no fetching.
	if _, err := e.s.Update(config.OCSPUpdate{OCSPFunctionality: ptr(false)}); err != nil {
		t.Fatal(err)
	}
	e.mustGetNoStaple(addr)
	n := e.r.RequestCount()
	e.clock.Advance(2 * time.Hour)
	time.Sleep(50 * time.Millisecond)
	if e.r.RequestCount() != n {
		t.Fatal("fetched while off")
	}
	if st := e.status(e.leaf); st.State != StateDisabled {
		t.Fatalf("state %s", st.State)
	}
}

// gatedTransport holds every request until open is closed, so that a test
// decides when the responder is reached (not the scheduler of a busy machine).
type gatedTransport struct{ open chan struct{} }

func (g gatedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	select {
	case <-g.open:
	case <-r.Context().Done():
		return nil, r.Context().Err()
	}
	return http.DefaultTransport.RoundTrip(r)
}

func TestHerdOfColdHandshakesMakesOneRequest(t *testing.T) {
	// The fetch is held at the gate until every caller has arrived, so all
	// of them are cold however slowly the machine runs them; the limits
	// (response_timeout 60 s, the cold wait a minute) are reached only by a
	// hang.
	gate := gatedTransport{open: make(chan struct{})}
	e := newEnv(t, config.OCSP{OCSPFunctionality: true, ResponseTimeout: 60},
		WithHTTPClient(&http.Client{Transport: gate}), WithColdWait(time.Minute))
	var user atomic.Pointer[tls.Certificate]
	user.Store(&e.leaf.Certificate)
	cfg := e.s.Wrap(&tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return user.Load(), nil }})

	const n = 10000
	var wg sync.WaitGroup
	var stapled, arrived atomic.Int64
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			arrived.Add(1)
			c, err := cfg.GetCertificate(&tls.ClientHelloInfo{ServerName: "localhost"})
			if err != nil {
				t.Error(err)
				return
			}
			if c.OCSPStaple != nil {
				stapled.Add(1)
			}
		}()
	}
	eventually(t, "every caller to arrive", func() bool { return arrived.Load() == n })
	if stapled.Load() != 0 {
		t.Fatalf("%d handshakes stapled before the responder was reached", stapled.Load())
	}
	close(gate.open)
	wg.Wait()
	if got := e.r.RequestCount(); got != 1 {
		t.Fatalf("%d responder requests for %d cold handshakes, want 1", got, n)
	}
	if stapled.Load() != n {
		t.Fatalf("%d of %d handshakes stapled", stapled.Load(), n)
	}
	// And through real handshakes on loopback.
	addr := e.serve(cfg)
	var hs sync.WaitGroup
	for range 50 {
		hs.Add(1)
		go func() {
			defer hs.Done()
			staple, _, err := e.handshake(addr)
			if err != nil || staple == nil {
				t.Errorf("handshake: staple %v, err %v", staple != nil, err)
			}
		}()
	}
	hs.Wait()
	if got := e.r.RequestCount(); got != 1 {
		t.Fatalf("%d responder requests, want 1", got)
	}
}

func TestColdHandshakeWaitIsBounded(t *testing.T) {
	e := newEnv(t, on, WithColdWait(100*time.Millisecond))
	e.r.SetFault(responder.Fault{Kind: responder.FaultHang})
	addr := e.wrapAndServe(e.leaf.Certificate)
	e.mustGetNoStaple(addr) // after at most the cold wait
}

func TestMustStaplePolicies(t *testing.T) {
	e := newEnv(t, config.OCSP{OCSPFunctionality: true, RecoveryMaxTries: 100}, WithColdWait(100*time.Millisecond))
	ms, err := e.srv.Issue(responder.LeafOptions{MustStaple: true})
	if err != nil {
		t.Fatal(err)
	}
	e.r.SetSerialFault(ms.Cert.SerialNumber, responder.Fault{Kind: responder.FaultHTTP503HTML})
	addr := e.wrapAndServe(ms.Certificate)
	if _, _, err := e.handshake(addr); err == nil {
		t.Fatal("must-staple certificate served without a staple")
	}
	if st := e.status(ms); st.Policy != "must-staple" {
		t.Fatalf("policy %s", st.Policy)
	}
	e.r.SetSerialFault(ms.Cert.SerialNumber, responder.Fault{})
	if _, err := e.s.Test(context.Background(), CertificateID(ms.Cert.Raw)); err != nil {
		t.Fatal(err)
	}
	e.mustGetStaple(addr, ms, ocsp.Good)
	// Past the staple's expiry with the responder down: refused again.
	e.srv.Close()
	e.clock.Advance(25 * time.Hour)
	if _, _, err := e.handshake(addr); err == nil {
		t.Fatal("must-staple certificate served with an expired staple")
	}
}

func TestStrictPolicyRefusesRevoked(t *testing.T) {
	e := newEnv(t, on, WithPolicy(Strict))
	addr := e.wrapAndServe(e.leaf.Certificate)
	e.mustGetStaple(addr, e.leaf, ocsp.Good)
	e.r.SetStatus(e.leaf.Cert.SerialNumber, responder.Revoked(e.clock.Now(), ocsp.Superseded))
	id := CertificateID(e.leaf.Cert.Raw)
	if _, err := e.s.Test(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.handshake(addr); err == nil {
		t.Fatal("strict served a revoked certificate")
	}
	// A per-certificate override back to lenient staples the revoked response.
	if err := e.s.SetPolicy(id, Lenient); err != nil {
		t.Fatal(err)
	}
	e.mustGetStaple(addr, e.leaf, ocsp.Revoked)
}

func TestGetCertificateAndGetConfigForClientAreStapled(t *testing.T) {
	e := newEnv(t, on)
	other, err := e.srv.Issue(responder.LeafOptions{DNSNames: []string{"other.test"}})
	if err != nil {
		t.Fatal(err)
	}
	inner := &tls.Config{Certificates: []tls.Certificate{other.Certificate}}
	user := &tls.Config{
		GetCertificate: func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
			if h.ServerName == "localhost" {
				return &e.leaf.Certificate, nil
			}
			return nil, nil
		},
		GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			if h.ServerName == "other.test" {
				return inner, nil
			}
			return nil, nil
		},
	}
	addr := e.serve(e.s.Wrap(user))
	e.mustGetStaple(addr, e.leaf, ocsp.Good)
	staple, st, err := e.handshake(addr, func(c *tls.Config) { c.ServerName = "other.test" })
	if err != nil {
		t.Fatal(err)
	}
	if !st.PeerCertificates[0].Equal(other.Cert) {
		t.Fatal("wrong certificate")
	}
	if _, err := ocsp.ParseResponseForCert(staple, other.Cert, e.ca.Cert); err != nil {
		t.Fatalf("GetConfigForClient certificate not stapled: %v", err)
	}
	if e.leaf.Certificate.OCSPStaple != nil || other.Certificate.OCSPStaple != nil || inner.Certificates[0].OCSPStaple != nil {
		t.Fatal("the application's certificates were modified")
	}
	if len(e.s.Status()) != 2 {
		t.Fatalf("%d managed certificates", len(e.s.Status()))
	}
}

// slowToCancel is a transport that, like a real one stuck in a slow dial,
// goes on for a while after its request is cancelled.
type slowToCancel struct{ linger time.Duration }

func (c slowToCancel) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(r)
	if r.Context().Err() != nil {
		time.Sleep(c.linger)
	}
	return resp, err
}

// stapleWork names the functions that run the Stapler's background work.
// Each runs inside a goroutine whose last act is to tell Close it is done,
// so none of them may be on any stack once Close has returned.
var stapleWork = []string{
	"schedule.(*Scheduler[...]).Run",
	"schedule.(*Scheduler[...]).Serve",
	"stapler.(*Stapler).refresh",
	"stapler.(*Stapler).fetchAndVerify",
	"stapler.(*Stapler).runRetirement",
	"stapler.(*coarseClock).run",
	"stapler.(*stapleNotifier).run",
	"writeback.(*Writer).Run",
	"fleet.(*Source[...]).run",
}

func TestCloseLeaksNoGoroutine(t *testing.T) {
	// A fetch hangs in flight, on a transport that lingers after it is
	// cancelled, while Close runs: Close must wait for it (the fetch runs
	// on a goroutine of its own), within response_timeout.
	e := newEnv(t, config.OCSP{OCSPFunctionality: true, ResponseTimeout: 5},
		WithHTTPClient(&http.Client{Transport: slowToCancel{linger: 500 * time.Millisecond}}),
		WithStore(cache.DirStore(t.TempDir())))
	addr := e.wrapAndServe(e.leaf.Certificate)
	e.mustGetStaple(addr, e.leaf, ocsp.Good)
	e.r.SetFault(responder.Fault{Kind: responder.FaultHang})
	e.clock.Advance(2 * time.Hour)
	eventually(t, "the hanging request", func() bool { return e.r.RequestCount() >= 2 })
	e.s.Close()
	// No polling: at the moment Close returns, none of the Stapler's work
	// may still run.
	buf := make([]byte, 1<<20)
	stacks := string(buf[:runtime.Stack(buf, true)])
	for _, fn := range stapleWork {
		if strings.Contains(stacks, fn) {
			t.Fatalf("%s still running after Close:\n%s", fn, stacks)
		}
	}
}

func TestCacheHitAllocatesNothing(t *testing.T) {
	e := newEnv(t, on)
	cfg := e.s.Wrap(&tls.Config{Certificates: []tls.Certificate{e.leaf.Certificate}})
	hello := &tls.ClientHelloInfo{ServerName: "localhost"}
	if c, err := cfg.GetCertificate(hello); err != nil || c.OCSPStaple == nil {
		t.Fatalf("not stapled: %v", err)
	}
	if n := testing.AllocsPerRun(1000, func() { cfg.GetCertificate(hello) }); n != 0 {
		t.Fatalf("%v allocations per cache hit, want 0", n)
	}
}

func TestRemoveStopsManagingARotatedCertificate(t *testing.T) {
	e := newEnv(t, config.OCSP{OCSPFunctionality: true, QueryFrequency: 300})
	next, err := e.srv.Issue(responder.LeafOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var current atomic.Pointer[tls.Certificate]
	current.Store(&e.leaf.Certificate)
	addr := e.serve(e.s.Wrap(&tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return current.Load(), nil }}))
	e.mustGetStaple(addr, e.leaf, ocsp.Good)
	current.Store(&next.Certificate) // rotation
	e.mustGetStaple(addr, next, ocsp.Good)
	old := CertificateID(e.leaf.Cert.Raw)
	if err := e.s.Remove(old); err != nil {
		t.Fatal(err)
	}
	if _, err := e.s.StatusOf(old); !errors.Is(err, ErrUnknownCertificate) {
		t.Fatalf("removed certificate still has a status: %v", err)
	}
	before := e.r.CountFor(e.leaf.Cert.SerialNumber)
	e.clock.Advance(time.Hour)
	e.waitQueries(next, 2)
	if n := e.r.CountFor(e.leaf.Cert.SerialNumber); n != before {
		t.Fatalf("the removed certificate was queried %d more times", n-before)
	}
	// Served again, it is managed afresh.
	current.Store(&e.leaf.Certificate)
	if _, _, err := e.handshake(addr); err != nil {
		t.Fatal(err)
	}
	e.waitStapled(e.leaf)
	e.mustGetStaple(addr, e.leaf, ocsp.Good)
	if err := e.s.Remove("nope"); !errors.Is(err, ErrUnknownCertificate) {
		t.Fatalf("Remove of an unknown id: %v", err)
	}
}
