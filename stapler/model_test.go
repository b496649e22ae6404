package stapler

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/staplerkit/ocsp/cache"
	"github.com/staplerkit/ocsp/config"
	"github.com/staplerkit/ocsp/responder"
	"github.com/staplerkit/ocsp/stapler/clock"
)

// The model-based test: seeded random sequences of events (responder
// answers good, revoked, unknown, an older answer replayed, HTTP errors,
// junk, rogue-signed answers, some dated ahead; clock steps; SetStapling;
// Update; Remove and serving again; restarts from a store; Test; session
// resumption across configs; a Verifier's connections) over two
// certificates and two Staplers with random options, checked after every
// step against a small reference model of what each Stapler was told and
// verified. The invariants:
//
//   - nothing expired, unverified (outside skip_verify) or for another
//     certificate is stapled;
//   - once a revocation at time T was verified, nothing good with a
//     thisUpdate at or before T is stapled, and while the newest verified
//     answer says revoked no Strict or MustStaple handshake succeeds and
//     no session resumes;
//   - two unrelated wrapped configs never resume each other's sessions;
//   - a Verifier asks the responder once per certificate however many
//     connections it checks while its answer (or failure) is remembered;
//   - responder requests per step stay within the schedule's bound;
//   - goroutines return to their baseline after Close; nothing panics.
//
// `go test` runs a fixed set of seeds; -model.sequences=N runs N more (the
// long mode: .ci/model runs 100,000).
var (
	modelSequences = flag.Int("model.sequences", 0, "run this many random model sequences besides the fixed seeds (long mode)")
	modelSteps     = flag.Int("model.steps", 60, "steps per model sequence")
	modelSeed      = flag.Uint64("model.seed", 0, "first seed of the long mode (0: random)")
)

func TestModelKnowledgeInvariantsHoldInEveryCombination(t *testing.T) {
	var seeds []uint64
	for seed := range uint64(24) {
		seeds = append(seeds, seed+1)
	}
	if testing.Short() {
		seeds = seeds[:4]
	}
	for _, seed := range seeds {
		runModelSeed(t, seed, *modelSteps)
	}
	if n := *modelSequences; n > 0 {
		first := *modelSeed
		if first == 0 {
			first = mrand.Uint64()
		}
		t.Logf("long mode: %d sequences from seed %d", n, first)
		for i := range uint64(n) {
			if !runModelSeed(t, first+i, *modelSteps) {
				return
			}
		}
	}
}

// runModelSeed runs one sequence as a subtest; it reports whether it passed.
func runModelSeed(t *testing.T, seed uint64, steps int) bool {
	return t.Run(fmt.Sprint(seed), func(t *testing.T) {
		w := newModelWorld(t, seed)
		defer w.close()
		for i := range steps {
			w.step(i)
			if t.Failed() {
				t.Logf("seed %d failed at step %d; events:\n%s", seed, i, w.history.String())
				return
			}
		}
	})
}

// answerMode is how the scripted responder answers the next requests.
type answerMode int

const (
	answerFresh      answerMode = iota // the CA's answer for the status set now
	answerReplay                       // an older genuine answer, captured earlier
	answerHTTP500                      // 500 Internal Server Error
	answerJunk                         // bytes that are not DER
	answerRogue                        // good, signed by a key the CA never authorized
	answerRogueAhead                   // the same, with thisUpdate 4 minutes ahead
	answerUndated                      // the CA's answer, without nextUpdate (openssl ocsp's default)
	answerModes
)

var answerNames = [...]string{"fresh", "replay", "http-500", "junk", "rogue", "rogue-ahead", "undated"}

// modelResponder answers OCSP requests as the model says: a real
// responder for fresh answers, and replays, errors and forgeries. It
// records every answer it sends, by the client that asked (each Stapler
// and the Verifier tag their requests).
type modelResponder struct {
	t     testing.TB
	r     *responder.Responder
	ca    *responder.CA
	rogue *responder.CA
	clock *clock.Manual

	mu       sync.Mutex
	mode     answerMode
	replay   map[string][]byte   // by serial: the genuine answer to replay
	captured map[string][][]byte // by serial: genuine answers sent, oldest first
	requests map[string]int      // by client tag and serial
	// refusedGET marks the GETs answered with junk, whose POST (the
	// fetcher asks again by POST) is the same fetch.
	refusedGET map[string]bool
	sent       []sentAnswer
}

// sentAnswer is one response the responder sent.
type sentAnswer struct {
	client, serial string
	raw            []byte
	genuine        bool // signed by the CA
}

const modelClientHeader = "X-Model-Client"

func (mr *modelResponder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	client := req.Header.Get(modelClientHeader)
	var der []byte
	if req.Method == http.MethodPost {
		der, _ = readAllLimited(req)
	} else {
		der = decodeGET(req.URL.EscapedPath())
	}
	ocspReq, err := ocsp.ParseRequest(der)
	if err != nil {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	serial := ocspReq.SerialNumber.String()
	mr.mu.Lock()
	mode := mr.mode
	key := client + "/" + serial
	if req.Method == http.MethodPost && mr.refusedGET[key] {
		// The same fetch, asked again by POST after its GET was
		// answered with junk: not a request of its own.
		delete(mr.refusedGET, key)
	} else {
		mr.requests[key]++
	}
	if req.Method == http.MethodGet && mode == answerJunk {
		mr.refusedGET[key] = true
	}
	replay := mr.replay[serial]
	mr.mu.Unlock()
	var raw []byte
	genuine := false
	switch mode {
	case answerHTTP500:
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	case answerJunk:
		raw = []byte("this is not an OCSP response")
	case answerReplay:
		if replay != nil {
			raw, genuine = replay, true
			break
		}
		fallthrough
	case answerFresh:
		raw, err = mr.r.Respond(&x509.Certificate{SerialNumber: ocspReq.SerialNumber})
		if err != nil {
			mr.t.Error(err)
			return
		}
		genuine = true
	case answerUndated:
		raw, genuine = mr.undated(ocspReq.SerialNumber), true
	case answerRogue, answerRogueAhead:
		ahead := time.Duration(0)
		if mode == answerRogueAhead {
			ahead = 5 * time.Minute
		}
		raw = mr.forge(ocspReq.SerialNumber, ahead)
	}
	mr.mu.Lock()
	mr.sent = append(mr.sent, sentAnswer{client: client, serial: serial, raw: raw, genuine: genuine})
	if genuine && (mode == answerFresh || mode == answerUndated) {
		mr.captured[serial] = append(mr.captured[serial], raw)
	}
	mr.mu.Unlock()
	w.Header().Set("Content-Type", "application/ocsp-response")
	w.Write(raw)
}

// undated is the CA's answer for serial now, signed again without
// nextUpdate.
func (mr *modelResponder) undated(serial *big.Int) []byte {
	fresh, err := mr.r.Respond(&x509.Certificate{SerialNumber: serial})
	if err != nil {
		mr.t.Fatal(err)
	}
	tmpl, err := ocsp.ParseResponse(fresh, nil)
	if err != nil {
		mr.t.Fatal(err)
	}
	tmpl.NextUpdate = time.Time{}
	tmpl.Certificate = nil
	raw, err := ocsp.CreateResponse(mr.ca.Cert, mr.ca.Cert, *tmpl, mr.ca.Key)
	if err != nil {
		mr.t.Fatal(err)
	}
	return raw
}

// validUntil is when a response stops being relied on: its nextUpdate, or
// the default lifetime after thisUpdate for one without.
func validUntil(resp *ocsp.Response) time.Time {
	if resp.NextUpdate.IsZero() {
		return resp.ThisUpdate.Add(DefaultNoNextUpdateLifetime)
	}
	return resp.NextUpdate
}

// forge signs a good answer for serial with the rogue key, thisUpdate
// ahead of the clock by ahead (minus a minute).
func (mr *modelResponder) forge(serial *big.Int, ahead time.Duration) []byte {
	now := mr.clock.Now()
	tmpl := ocsp.Response{
		Status:       ocsp.Good,
		SerialNumber: serial,
		ThisUpdate:   now.Add(ahead - time.Minute).UTC().Truncate(time.Second),
		NextUpdate:   now.Add(ahead + 7*24*time.Hour).UTC().Truncate(time.Second),
		Certificate:  mr.rogue.Cert,
	}
	raw, err := ocsp.CreateResponse(mr.ca.Cert, mr.rogue.Cert, tmpl, mr.rogue.Key)
	if err != nil {
		mr.t.Fatal(err)
	}
	return raw
}

// takeSent returns the answers sent since the last call.
func (mr *modelResponder) takeSent() []sentAnswer {
	mr.mu.Lock()
	defer mr.mu.Unlock()
	s := mr.sent
	mr.sent = nil
	return s
}

func (mr *modelResponder) requestsOf(client, serial string) int {
	mr.mu.Lock()
	defer mr.mu.Unlock()
	return mr.requests[client+"/"+serial]
}

// taggingTransport marks each request with the client it comes from.
type taggingTransport struct {
	tag  string
	base *http.Transport
}

func (tt taggingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.Header.Set(modelClientHeader, tt.tag)
	return tt.base.RoundTrip(req)
}

// modelCert is one certificate of the model.
type modelCert struct {
	name string
	leaf *responder.Leaf
	id   string
}

// knowledgeModel is what the model knows a Stapler verified of one
// certificate.
type knowledgeModel struct {
	// newest is the newest verified good or revoked answer (by thisUpdate,
	// then producedAt; a revocation wins a tie); nil when none.
	newest *ocsp.Response
	// floor is the thisUpdate of the newest verified revocation.
	floor time.Time
	// skipVerify is the certificate's skip_verify as the model set it.
	skipVerify bool
}

func newerResponse(a, b *ocsp.Response) bool {
	if !a.ThisUpdate.Equal(b.ThisUpdate) {
		return a.ThisUpdate.After(b.ThisUpdate)
	}
	if !a.ProducedAt.Equal(b.ProducedAt) {
		return a.ProducedAt.After(b.ProducedAt)
	}
	return a.Status == ocsp.Revoked && b.Status != ocsp.Revoked
}

// modelStapler is one Stapler of the model, its options and two unrelated
// configs it wrapped.
type modelStapler struct {
	tag          string
	s            *Stapler
	policy       Policy
	dropOnFail   bool
	store        cache.Store
	client       *http.Client
	transport    *http.Transport
	cfgA, cfgB   *tls.Config
	know         []knowledgeModel // by certificate
	sessionCache tls.ClientSessionCache
	// functional is ocsp_functionality as the model set it: while off,
	// the Stapler records nothing it is told (a Test's answer included).
	functional bool
}

type modelWorld struct {
	t       *testing.T
	rng     *mrand.Rand
	clock   *clock.Manual
	ca      *responder.CA
	resp    *modelResponder
	srv     *httptest.Server
	certs   []*modelCert
	st      []*modelStapler
	ocspCfg config.OCSP
	// verifier checks connections as a client would; it asks the
	// responder itself.
	verifier          *Verifier
	verifierTransport *http.Transport
	history           bytes.Buffer
	baseline          int
}

func newModelWorld(t *testing.T, seed uint64) *modelWorld {
	runtime.GC()
	w := &modelWorld{t: t, rng: mrand.New(mrand.NewPCG(seed, seed^0x5eed)), clock: newFakeClock(), baseline: runtime.NumGoroutine()}
	var err error
	if w.ca, err = responder.NewCA(responder.CAOptions{}); err != nil {
		t.Fatal(err)
	}
	rogue, err := responder.NewCA(responder.CAOptions{CommonName: "rogue"})
	if err != nil {
		t.Fatal(err)
	}
	r := responder.New(w.ca)
	r.SetClock(w.clock.Now)
	w.resp = &modelResponder{t: t, r: r, ca: w.ca, rogue: rogue, clock: w.clock,
		replay: map[string][]byte{}, captured: map[string][][]byte{}, requests: map[string]int{}, refusedGET: map[string]bool{}}
	w.srv = httptest.NewServer(w.resp)
	for _, name := range []string{"a.test", "b.test"} {
		leaf, err := w.ca.Issue(responder.LeafOptions{DNSNames: []string{name}, OCSPServer: []string{w.srv.URL}})
		if err != nil {
			t.Fatal(err)
		}
		r.SetStatus(leaf.Cert.SerialNumber, responder.Good())
		w.certs = append(w.certs, &modelCert{name: name, leaf: leaf, id: CertificateID(leaf.Cert.Raw)})
	}
	w.ocspCfg = config.OCSP{OCSPFunctionality: true, QueryFrequency: 3600, RecoveryFrequency: 60, RecoveryMaxTries: 1 + w.rng.IntN(3)}
	for i := range 2 {
		ms := &modelStapler{tag: fmt.Sprintf("stapler%d", i), policy: Policy(w.rng.IntN(3)), dropOnFail: w.rng.IntN(2) == 0}
		if w.rng.IntN(2) == 0 {
			ms.store = cache.DirStore(t.TempDir())
		}
		ms.transport = &http.Transport{}
		ms.client = &http.Client{Transport: taggingTransport{tag: ms.tag, base: ms.transport}, Timeout: hangLimit}
		w.st = append(w.st, ms)
		w.start(ms)
	}
	w.verifierTransport = &http.Transport{}
	w.verifier = &Verifier{FetchTimeout: hangLimit, Time: w.clock.Now,
		Client: &http.Client{Transport: taggingTransport{tag: "verifier", base: w.verifierTransport}}}
	fmt.Fprintf(&w.history, "seed %d: max tries %d; %s policy %s drop %v store %v; %s policy %s drop %v store %v\n", seed, w.ocspCfg.RecoveryMaxTries,
		w.st[0].tag, w.st[0].policy, w.st[0].dropOnFail, w.st[0].store != nil, w.st[1].tag, w.st[1].policy, w.st[1].dropOnFail, w.st[1].store != nil)
	w.settle()
	w.absorb()
	w.check("start")
	return w
}

// start makes ms's Stapler (again, after a restart) and wraps its configs.
func (w *modelWorld) start(ms *modelStapler) {
	opts := []Option{WithClock(w.clock), WithLogger(quietLogger()), WithColdWait(time.Millisecond), WithHTTPClient(ms.client), WithPolicy(ms.policy)}
	if ms.dropOnFail {
		opts = append(opts, WithDropOnFailure())
	}
	if ms.store != nil {
		opts = append(opts, WithStore(ms.store))
	}
	s, err := New(w.ocspCfg, opts...)
	if err != nil {
		w.t.Fatal(err)
	}
	ms.s = s
	var certs []tls.Certificate
	for _, c := range w.certs {
		certs = append(certs, c.leaf.Certificate)
	}
	// A asks for a client certificate and takes any; B requires one and
	// refuses every one. A session begun on A carries a client
	// certificate, so only shared ticket keys would let it resume on B.
	ms.cfgA = s.Wrap(&tls.Config{Certificates: certs, ClientAuth: tls.RequestClientCert})
	ms.cfgB = s.Wrap(&tls.Config{Certificates: certs, ClientAuth: tls.RequireAnyClientCert,
		VerifyPeerCertificate: func([][]byte, [][]*x509.Certificate) error { return errors.New("config B refuses every client") }})
	ms.know = make([]knowledgeModel, len(w.certs))
	ms.sessionCache = tls.NewLRUClientSessionCache(8)
	ms.functional = true
}

func (w *modelWorld) close() {
	for _, ms := range w.st {
		ms.s.Close()
		ms.transport.CloseIdleConnections()
	}
	w.verifierTransport.CloseIdleConnections()
	w.srv.Close()
	if w.t.Failed() {
		return
	}
	eventually(w.t, "goroutines back to their baseline after Close", func() bool {
		return runtime.NumGoroutine() <= w.baseline
	})
}

func (w *modelWorld) logf(format string, args ...any) {
	fmt.Fprintf(&w.history, "  %s: ", w.clock.Now().Format("Jan 2 15:04:05"))
	fmt.Fprintf(&w.history, format, args...)
	w.history.WriteByte('\n')
}

// settle waits until every Stapler has run every query due by now.
func (w *modelWorld) settle() {
	for _, ms := range w.st {
		eventually(w.t, "the Staplers to run every query due", func() bool { return ms.s.sched.Quiet() })
	}
}

// absorb updates the model with the answers sent since the last step:
// a genuine answer, valid now, sent to a Stapler while skip_verify was off
// for its certificate, was verified by it.
func (w *modelWorld) absorb() {
	now := w.clock.Now()
	for _, a := range w.resp.takeSent() {
		ms := w.staplerByTag(a.client)
		if ms == nil || !a.genuine || !ms.functional {
			continue
		}
		ci := w.certBySerial(a.serial)
		k := &ms.know[ci]
		if k.skipVerify {
			continue
		}
		resp, err := ocsp.ParseResponseForCert(a.raw, w.certs[ci].leaf.Cert, w.ca.Cert)
		if err != nil {
			continue
		}
		k.learn(resp, now)
	}
}

// learn takes resp, a genuine answer a Stapler verified at now, as
// knowledge when it was valid then.
func (k *knowledgeModel) learn(resp *ocsp.Response, now time.Time) {
	if resp.Status == ocsp.Unknown || !validUntil(resp).After(now) || resp.ThisUpdate.After(now.Add(5*time.Minute)) {
		return
	}
	if k.newest == nil || newerResponse(resp, k.newest) {
		k.newest = resp
	}
	if resp.Status == ocsp.Revoked && resp.ThisUpdate.After(k.floor) {
		k.floor = resp.ThisUpdate
	}
}

func (w *modelWorld) staplerByTag(tag string) *modelStapler {
	for _, ms := range w.st {
		if ms.tag == tag {
			return ms
		}
	}
	return nil
}

func (w *modelWorld) certBySerial(serial string) int {
	for i, c := range w.certs {
		if c.leaf.Cert.SerialNumber.String() == serial {
			return i
		}
	}
	w.t.Fatalf("answer for an unknown serial %s", serial)
	return -1
}

// step runs one random event, lets the Staplers settle, and checks.
func (w *modelWorld) step(i int) {
	before := w.requestCounts()
	what := w.event()
	w.settle()
	w.absorb()
	w.checkRequests(what, before)
	w.check(what)
}

func (w *modelWorld) requestCounts() map[string]int {
	out := map[string]int{}
	for _, ms := range w.st {
		for _, c := range w.certs {
			out[ms.tag+"/"+c.name] = w.resp.requestsOf(ms.tag, c.leaf.Cert.SerialNumber.String())
		}
	}
	return out
}

// checkRequests checks that a step cost each Stapler at most a few
// requests per certificate: a refresh, a retry planned at once (an
// unverified answer after skip_verify went off), and an event's own (Test,
// SetStapling, a restart, serving again after Remove).
func (w *modelWorld) checkRequests(what string, before map[string]int) {
	const perStep = 4
	for k, n := range w.requestCounts() {
		if d := n - before[k]; d > perStep {
			w.t.Errorf("after %s: %s made %d responder requests in one step (bound %d)", what, k, d, perStep)
		}
	}
}

// event runs one random event and describes it.
func (w *modelWorld) event() string {
	r := w.rng
	ms := w.st[r.IntN(len(w.st))]
	ci := r.IntN(len(w.certs))
	c := w.certs[ci]
	var what string
	switch n := r.IntN(100); {
	case n < 16: // how the responder answers from now on
		weighted := []answerMode{answerFresh, answerFresh, answerFresh, answerReplay, answerReplay, answerReplay,
			answerHTTP500, answerHTTP500, answerHTTP500, answerJunk, answerRogue, answerRogueAhead, answerUndated, answerUndated}
		mode := weighted[r.IntN(len(weighted))]
		w.resp.mu.Lock()
		w.resp.mode = mode
		if mode == answerReplay {
			if caps := w.resp.captured[c.leaf.Cert.SerialNumber.String()]; len(caps) > 0 {
				pick := caps[0] // the oldest, mostly: most likely from before a revocation
				if r.IntN(3) == 0 {
					pick = caps[r.IntN(len(caps))]
				}
				w.resp.replay[c.leaf.Cert.SerialNumber.String()] = pick
			}
		}
		w.resp.mu.Unlock()
		what = "responder answers " + answerNames[mode]
	case n < 22: // an outage past the recovery tries, retries and all
		w.resp.mu.Lock()
		w.resp.mode = answerHTTP500
		w.resp.mu.Unlock()
		for range 5 {
			w.clock.Advance(61 * time.Second)
			w.settle()
		}
		what = "responder down for 5 minutes"
	case n < 30: // the CA's status for a certificate
		switch r.IntN(4) {
		case 0, 1:
			w.resp.r.SetStatus(c.leaf.Cert.SerialNumber, responder.Revoked(w.clock.Now().Add(-time.Minute), ocsp.KeyCompromise))
			what = c.name + " revoked"
		case 2:
			w.resp.r.SetStatus(c.leaf.Cert.SerialNumber, responder.Good())
			what = c.name + " good"
		case 3:
			w.resp.r.Forget(c.leaf.Cert.SerialNumber)
			what = c.name + " unknown"
		}
	case n < 50: // time passes
		steps := []time.Duration{time.Second, 30 * time.Second, time.Minute, 10 * time.Minute, time.Hour, 6 * time.Hour, 13 * time.Hour, 25 * time.Hour}
		d := steps[r.IntN(len(steps))]
		w.clock.Advance(d)
		what = "clock +" + d.String()
	case n < 62:
		st := config.Stapling{Enabled: r.IntN(5) != 0, SkipVerify: r.IntN(2) == 0, CacheTTL: []int{60, 600, 3600, 86400}[r.IntN(4)]}
		k := &ms.know[ci]
		if err := ms.s.SetStapling(c.id, st); err != nil {
			if !errors.Is(err, ErrUnknownCertificate) {
				w.t.Errorf("SetStapling: %v", err)
			}
			return "SetStapling on a removed certificate"
		}
		k.skipVerify = st.SkipVerify
		what = fmt.Sprintf("%s SetStapling %s %+v", ms.tag, c.name, st)
	case n < 66:
		on, tries := r.IntN(4) != 0, 1+r.IntN(3)
		if _, err := ms.s.Update(config.OCSPUpdate{OCSPFunctionality: &on, RecoveryMaxTries: &tries}); err != nil {
			w.t.Errorf("Update: %v", err)
		}
		ms.functional = on
		what = fmt.Sprintf("%s Update functionality %v max tries %d", ms.tag, on, tries)
	case n < 72:
		if err := ms.s.Remove(c.id); err != nil && !errors.Is(err, ErrUnknownCertificate) {
			w.t.Errorf("Remove: %v", err)
		}
		// Removed settings are gone: served again, the defaults apply.
		ms.know[ci].skipVerify = false
		what = fmt.Sprintf("%s Remove %s", ms.tag, c.name)
	case n < 76:
		ms.s.Close()
		w.start(ms) // what was verified is known again only from the store
		what = fmt.Sprintf("%s restarted", ms.tag)
	case n < 80:
		_, err := ms.s.Test(context.Background(), c.id)
		what = fmt.Sprintf("%s Test %s: %v", ms.tag, c.name, err)
	case n < 84: // a sidecar pushes an answer: any genuine one sent so far, or a forgery
		var raw []byte
		w.resp.mu.Lock()
		caps := w.resp.captured[c.leaf.Cert.SerialNumber.String()]
		if len(caps) > 0 && r.IntN(4) != 0 {
			raw = caps[r.IntN(len(caps))]
		}
		w.resp.mu.Unlock()
		kind := "a genuine answer"
		if raw == nil {
			raw, kind = w.resp.forge(c.leaf.Cert.SerialNumber, 0), "a forgery"
		}
		_, err := ms.s.Push(context.Background(), c.id, raw)
		if k := &ms.know[ci]; err == nil && !k.skipVerify {
			if resp, perr := ocsp.ParseResponseForCert(raw, c.leaf.Cert, w.ca.Cert); perr == nil {
				k.learn(resp, w.clock.Now())
			} else {
				w.t.Errorf("%s accepted %s pushed for %s with skip_verify off", ms.tag, kind, c.name)
			}
		}
		what = fmt.Sprintf("%s Push %s for %s: %v", ms.tag, kind, c.name, err)
	case n < 92:
		w.probeResumption(ms, ci)
		what = fmt.Sprintf("%s resumption probe %s", ms.tag, c.name)
	default:
		if r.IntN(2) == 0 {
			w.resp.r.Forget(c.leaf.Cert.SerialNumber)
			what = c.name + " unknown; "
		}
		w.probeVerifier(ci)
		what += "verifier probe " + c.name
	}
	w.logf("%s", what)
	return what
}

// hello is a ClientHello for certificate ci, as crypto/tls makes one.
func (w *modelWorld) hello(ci int) *tls.ClientHelloInfo {
	return &tls.ClientHelloInfo{ServerName: w.certs[ci].name, SupportedVersions: []uint16{tls.VersionTLS13, tls.VersionTLS12},
		CipherSuites:     []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_AES_128_GCM_SHA256},
		SignatureSchemes: []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256, tls.PSSWithSHA256, tls.PKCS1WithSHA256},
		SupportedCurves:  []tls.CurveID{tls.X25519, tls.CurveP256}, SupportedPoints: []uint8{0}}
}

// check asserts the invariants on what each Stapler serves now.
func (w *modelWorld) check(after string) {
	now := w.clock.Now()
	for _, ms := range w.st {
		for ci, c := range w.certs {
			k := ms.know[ci]
			for _, cfg := range []*tls.Config{ms.cfgA, ms.cfgB} {
				cert, err := cfg.GetCertificate(w.hello(ci))
				knownRevoked := k.newest != nil && k.newest.Status == ocsp.Revoked
				if knownRevoked && ms.policy >= Strict && err == nil {
					w.t.Errorf("after %s: %s (%s) served %s, verified revoked at %s (thisUpdate %s)", after, ms.tag, ms.policy, c.name,
						k.newest.RevokedAt.Format(time.RFC3339), k.newest.ThisUpdate.Format(time.RFC3339))
				}
				if err != nil || cert == nil || len(cert.OCSPStaple) == 0 {
					continue
				}
				if !bytes.Equal(cert.Certificate[0], c.leaf.Cert.Raw) {
					w.t.Errorf("after %s: %s served another certificate for %s", after, ms.tag, c.name)
				}
				w.checkStaple(after, ms, ci, cert.OCSPStaple, now)
			}
		}
	}
}

// checkStaple checks one staple served for certificate ci.
func (w *modelWorld) checkStaple(after string, ms *modelStapler, ci int, raw []byte, now time.Time) {
	c, k := w.certs[ci], ms.know[ci]
	resp, err := ocsp.ParseResponseForCert(raw, c.leaf.Cert, w.ca.Cert)
	if err != nil {
		if !k.skipVerify {
			w.t.Errorf("after %s: %s stapled an unverified response for %s with skip_verify off: %v", after, ms.tag, c.name, err)
			return
		}
		if resp, err = ocsp.ParseResponse(raw, nil); err != nil {
			w.t.Errorf("after %s: %s stapled junk for %s: %v", after, ms.tag, c.name, err)
			return
		}
	}
	if resp.SerialNumber.Cmp(c.leaf.Cert.SerialNumber) != 0 {
		w.t.Errorf("after %s: %s stapled a response for serial %x on %s", after, ms.tag, resp.SerialNumber, c.name)
	}
	if !validUntil(resp).After(now) {
		w.t.Errorf("after %s: %s stapled an expired response for %s (nextUpdate %s, thisUpdate %s)", after, ms.tag, c.name, resp.NextUpdate, resp.ThisUpdate)
	}
	if resp.Status != ocsp.Revoked && !k.floor.IsZero() && !resp.ThisUpdate.After(k.floor) {
		w.t.Errorf("after %s: %s stapled %s good as of %s, at or before its verified revocation (thisUpdate %s)", after, ms.tag, c.name,
			resp.ThisUpdate.Format(time.RFC3339), k.floor.Format(time.RFC3339))
	}
}

// probeResumption makes a full handshake with ms's config A, then resumes
// it: on A (allowed unless a certificate is known revoked) and on B, an
// unrelated config that refuses every client certificate (never).
func (w *modelWorld) probeResumption(ms *modelStapler, ci int) {
	clientCert := w.certs[1-ci].leaf.Certificate
	dial := func(cfg *tls.Config, cache tls.ClientSessionCache) (*tls.ConnectionState, error) {
		roots := x509.NewCertPool()
		roots.AddCert(w.ca.Cert)
		version := uint16(tls.VersionTLS13)
		if w.rng.IntN(2) == 0 {
			version = tls.VersionTLS12
		}
		client := &tls.Config{RootCAs: roots, ServerName: w.certs[ci].name, ClientSessionCache: cache, MaxVersion: version,
			Certificates: []tls.Certificate{clientCert}, Time: w.clock.Now}
		return pipeHandshake(client, cfg)
	}
	cache := ms.sessionCache
	if _, err := dial(ms.cfgA, cache); err != nil {
		return // refused (Strict, revoked): nothing to resume
	}
	revoked := false
	for _, k := range ms.know {
		revoked = revoked || k.newest != nil && k.newest.Status == ocsp.Revoked
	}
	if st, err := dial(ms.cfgA, cache); err == nil && st.DidResume && revoked {
		w.t.Errorf("%s resumed a session while a certificate is known revoked", ms.tag)
	}
	if st, err := dial(ms.cfgB, cache); err == nil {
		w.t.Errorf("%s: config B accepted a client it refuses (resumed: %v): a session of config A resumed on it", ms.tag, st.DidResume)
	}
}

// pipeHandshake runs a real TLS handshake between client and server over
// a loopback TCP connection and returns the client's view of it.
func pipeHandshake(client, server *tls.Config) (*tls.ConnectionState, error) {
	cc, sc, err := loopbackPair()
	if err != nil {
		return nil, err
	}
	defer cc.Close()
	defer sc.Close()
	deadline := time.Now().Add(hangLimit)
	cc.SetDeadline(deadline)
	sc.SetDeadline(deadline)
	srv := tls.Server(sc, server)
	done := make(chan error, 1)
	go func() {
		defer sc.Close() // a refusal ends the client's handshake too
		err := srv.Handshake()
		if err == nil {
			// TLS 1.3 tickets and client certificate checks travel after
			// the client's handshake returns: read until the client hangs up.
			buf := make([]byte, 1)
			srv.Read(buf)
		}
		done <- err
	}()
	cl := tls.Client(cc, client)
	err = cl.Handshake()
	if err == nil {
		// One read, to take the session ticket (TLS 1.3) and to learn
		// whether the server refused the client's certificate.
		cl.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		buf := make([]byte, 1)
		if _, rerr := cl.Read(buf); rerr != nil && !isNetTimeout(rerr) {
			err = rerr
		}
	}
	cc.Close()
	if serr := <-done; err == nil && serr != nil {
		err = serr
	}
	if err != nil {
		return nil, err
	}
	st := cl.ConnectionState()
	return &st, nil
}

// loopbackPair is the two ends of a TCP connection on loopback.
func loopbackPair() (net.Conn, net.Conn, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := l.Accept()
		accepted <- c
	}()
	cc, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		l.Close()
		<-accepted
		return nil, nil, err
	}
	sc := <-accepted
	if sc == nil {
		cc.Close()
		return nil, nil, errors.New("accept failed")
	}
	return cc, sc, nil
}

func isNetTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// probeVerifier has the Verifier check three connections whose peer sent
// no staple for certificate ci, with no time passing: it asks the
// responder at most once.
func (w *modelWorld) probeVerifier(ci int) {
	c := w.certs[ci]
	serial := c.leaf.Cert.SerialNumber.String()
	before := w.resp.requestsOf("verifier", serial)
	cs := tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{c.leaf.Cert, w.ca.Cert}}, PeerCertificates: []*x509.Certificate{c.leaf.Cert}}
	for range 3 {
		w.verifier.VerifyConnection(cs)
	}
	if n := w.resp.requestsOf("verifier", serial) - before; n > 1 {
		w.t.Errorf("the Verifier asked the responder %d times about %s for 3 connections with no time passing", n, c.name)
	}
}

// readAllLimited reads a POST body of at most 64 KiB.
func readAllLimited(req *http.Request) ([]byte, error) {
	return io.ReadAll(io.LimitReader(req.Body, 64<<10))
}

// decodeGET decodes an RFC 5019 GET path.
func decodeGET(escaped string) []byte {
	p, err := url.PathUnescape(strings.TrimPrefix(escaped, "/"))
	if err != nil {
		return nil
	}
	der, _ := base64.StdEncoding.DecodeString(p)
	return der
}
