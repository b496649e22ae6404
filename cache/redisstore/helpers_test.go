package redisstore

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/crypto/ocsp"

	"github.com/staplerkit/ocsp/cache/redisstore/redistest"
	"github.com/staplerkit/ocsp/config"
	"github.com/staplerkit/ocsp/internal/record"
	"github.com/staplerkit/ocsp/responder"
	"github.com/staplerkit/ocsp/stapler"
	"github.com/staplerkit/ocsp/stapler/clock"
)

// fleet is n Staplers sharing one Redis and one manual clock, each with
// its own client and Store, serving the same certificates.
type fleet struct {
	t      testing.TB
	redis  *redistest.Server
	clock  *clock.Manual
	ca     *responder.CA
	r      *responder.Responder
	srv    *responder.Server
	leaves []*responder.Leaf
	nodes  []*stapler.Stapler
	cfgs   []*tls.Config
	why    string        // what the last settle condition found missing
	logs   []*logCounter // each node's log messages, counted
}

// logCounter counts the messages a node logs, and passes them on.
type logCounter struct {
	slog.Handler
	mu     *sync.Mutex
	counts map[string]int
}

func newLogCounter(h slog.Handler) *logCounter {
	return &logCounter{Handler: h, mu: new(sync.Mutex), counts: map[string]int{}}
}

func (c *logCounter) Enabled(context.Context, slog.Level) bool { return true }

func (c *logCounter) Handle(ctx context.Context, r slog.Record) error {
	c.mu.Lock()
	c.counts[r.Message]++
	c.mu.Unlock()
	if c.Handler.Enabled(ctx, r.Level) {
		return c.Handler.Handle(ctx, r)
	}
	return nil
}

func (c *logCounter) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &logCounter{Handler: c.Handler.WithAttrs(attrs), mu: c.mu, counts: c.counts}
}

func (c *logCounter) WithGroup(name string) slog.Handler {
	return &logCounter{Handler: c.Handler.WithGroup(name), mu: c.mu, counts: c.counts}
}

// count is how many times a message starting with prefix was logged.
func (c *logCounter) count(prefix string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for msg, k := range c.counts {
		if strings.HasPrefix(msg, prefix) {
			n += k
		}
	}
	return n
}

// fleetConfig is the nodes' configuration. Its response_timeout (10 s)
// makes a lease live 22 s (2 × response_timeout + 2 s) in Redis's real time: a lease holder
// on a machine so busy that it runs past its lease lets a second server
// query, as designed, and the tests that count requests would fail on the
// machine's speed, not the code's.
var fleetConfig = config.OCSP{OCSPFunctionality: true, QueryFrequency: 3600, ResponseTimeout: 10, RecoveryFrequency: 60, RecoveryMaxTries: 3}

// refreshDue is how far to move the clock for every certificate's regular
// refresh to be due (query_frequency: jitter only brings it earlier). The
// tests then settle in small steps, so that however slowly a machine runs
// them, the clock does not reach the refresh after.
const refreshDue = time.Hour

// storeRetryInterval is how long a server that failed to reach a
// certificate's keys goes on alone for it before it tries the store again
// (the stapler's, unexported).
const storeRetryInterval = time.Second

// hangLimit ends a wait that would otherwise hang; it is no budget.
const hangLimit = time.Minute

func newFleet(t testing.TB, nodes, certs int) *fleet {
	t.Helper()
	f := &fleet{t: t, redis: redistest.Start(t), clock: clock.NewManual(time.Now().Truncate(time.Second))}
	var err error
	if f.ca, err = responder.NewCA(responder.CAOptions{}); err != nil {
		t.Fatal(err)
	}
	f.r = responder.New(f.ca)
	f.r.SetClock(f.clock.Now)
	f.srv = responder.NewServer(f.r)
	t.Cleanup(f.srv.Close)
	for i := range certs {
		leaf, err := f.srv.Issue(responder.LeafOptions{DNSNames: []string{fmt.Sprintf("c%d.test", i)}})
		if err != nil {
			t.Fatal(err)
		}
		f.leaves = append(f.leaves, leaf)
	}
	for range nodes {
		f.addNode()
	}
	return f
}

func (f *fleet) addNode() *stapler.Stapler {
	f.t.Helper()
	return f.addNodeWith(fleetConfig)
}

// addNodeWith adds a node with its own cluster configuration.
func (f *fleet) addNodeWith(cfg config.OCSP) *stapler.Stapler {
	f.t.Helper()
	return f.addNodeOn(cfg, f.redis.Client())
}

// addNodeOn adds a node on a Redis client of its own (a Cluster's or a
// Sentinel's, say).
func (f *fleet) addNodeOn(cfg config.OCSP, client redis.UniversalClient) *stapler.Stapler {
	f.t.Helper()
	logs := newLogCounter(testLogger().Handler())
	f.logs = append(f.logs, logs)
	s, err := stapler.New(cfg,
		stapler.WithClock(f.clock),
		stapler.WithLogger(slog.New(logs)),
		stapler.WithStore(New(client, "fleet:")),
		stapler.WithColdWait(10*time.Millisecond),
		stapler.WithRateLimit(0, 0))
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { s.Close() })
	var certs []tls.Certificate
	for _, l := range f.leaves {
		certs = append(certs, l.Certificate)
	}
	f.nodes = append(f.nodes, s)
	f.cfgs = append(f.cfgs, s.Wrap(&tls.Config{Certificates: certs}))
	return s
}

// staple is what node i staples for leaf j right now.
func (f *fleet) staple(i, j int) []byte {
	c, err := f.cfgs[i].GetCertificate(&tls.ClientHelloInfo{
		ServerName:        fmt.Sprintf("c%d.test", j),
		SupportedVersions: []uint16{tls.VersionTLS13},
		SignatureSchemes:  []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256},
		SupportedCurves:   []tls.CurveID{tls.CurveP256},
	})
	if err != nil {
		f.t.Fatalf("node %d refused c%d: %v", i, j, err)
	}
	return c.OCSPStaple
}

// settle advances the clock in small steps until cond holds (real time
// bounds it: leases and notifications run on Redis's own clock).
func (f *fleet) settle(what string, step time.Duration, cond func() bool) {
	f.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			for i, s := range f.nodes {
				n := 0
				for _, st := range s.Status() {
					if st.Stapled {
						n++
					}
				}
				f.t.Logf("node %d: %d of %d stapled; first: %+v", i, n, len(f.leaves), s.Status()[0])
				if os.Getenv("FLEET_DEBUG") != "" {
					for j, l := range f.leaves {
						st, _ := s.StatusOf(stapler.CertificateID(l.Cert.Raw))
						var served time.Time
						if resp, err := ocsp.ParseResponse(f.staple(i, j), nil); err == nil {
							served = resp.ThisUpdate
						}
						f.t.Logf("node %d c%d: thisUpdate %v, served %v, next %v, last %v, queries %d, store_error %q, last_error %q", i, j, st.ThisUpdate, served, st.NextRefresh, st.LastAttempt, st.Queries, st.StoreError, st.LastError)
					}
				}
			}
			f.t.Fatalf("timed out waiting for %s (%s)", what, f.why)
		}
		f.clock.Advance(step)
		time.Sleep(20 * time.Millisecond)
	}
}

// waitFor polls cond in real time, without moving the clock, until it
// holds, failing the test at the hang limit.
func (f *fleet) waitFor(what string, cond func() bool) {
	f.t.Helper()
	deadline := time.Now().Add(hangLimit)
	for !cond() {
		if time.Now().After(deadline) {
			f.t.Fatalf("timed out waiting for %s (%s)", what, f.why)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitFor waits, in real time, for cond (bounded by hangLimit).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(hangLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// allStapledWith reports whether every node staples, for every leaf, a
// response that verifies with the wanted thisUpdate-or-later, and the same
// bytes on every node.
func (f *fleet) allStapledSince(since time.Time) bool {
	for j, leaf := range f.leaves {
		var first []byte
		for i := range f.nodes {
			st := f.staple(i, j)
			if st == nil {
				f.why = fmt.Sprintf("node %d staples nothing for c%d", i, j)
				return false
			}
			resp, err := ocsp.ParseResponseForCert(st, leaf.Cert, f.ca.Cert)
			if err != nil {
				f.t.Fatalf("node %d staples an invalid response for c%d: %v", i, j, err)
			}
			if resp.ThisUpdate.Before(since) {
				f.why = fmt.Sprintf("node %d staples c%d from %v, before %v", i, j, resp.ThisUpdate, since)
				return false
			}
			if first == nil {
				first = st
			} else if !bytes.Equal(first, st) {
				f.why = fmt.Sprintf("node %d staples another response for c%d than node 0", i, j)
				return false
			}
		}
	}
	return true
}

func (f *fleet) requestsPerLeaf() map[string]int {
	counts := map[string]int{}
	for _, req := range f.r.Requests() {
		if req.Serial != nil {
			counts[req.Serial.String()]++
		}
	}
	return counts
}

func (f *fleet) expectRequestsPerLeaf(want int) {
	f.t.Helper()
	counts := f.requestsPerLeaf()
	for j, l := range f.leaves {
		if got := counts[l.Cert.SerialNumber.String()]; got != want {
			f.t.Fatalf("c%d: %d responder requests across the fleet, want %d", j, got, want)
		}
	}
}

// storeErrors maps node i's certificate IDs to their store_error.
func (f *fleet) storeErrors(i int) map[string]string {
	errs := map[string]string{}
	for _, st := range f.nodes[i].Status() {
		errs[st.ID] = st.StoreError
	}
	return errs
}

// revokedEverywhere reports whether every node staples leaf j revoked.
func (f *fleet) revokedEverywhere(j int) bool {
	for i := range f.nodes {
		resp, err := ocsp.ParseResponseForCert(f.staple(i, j), f.leaves[j].Cert, f.ca.Cert)
		if err != nil || resp.Status != ocsp.Revoked {
			f.why = fmt.Sprintf("node %d does not staple c%d revoked", i, j)
			return false
		}
	}
	return true
}

// leafKey is where leaf j's response lives in Redis.
func (f *fleet) leafKey(j int) string {
	return "fleet:{" + stapler.CertificateID(f.leaves[j].Cert.Raw) + "}"
}

// storedStatus is the status of leaf j's response in Redis (-1: none that
// verifies).
func (f *fleet) storedStatus(j int) (int, time.Time) {
	v, err := New(f.redis.Client(), "fleet:").Get(context.Background(), stapler.CertificateID(f.leaves[j].Cert.Raw))
	if err != nil {
		return -1, time.Time{}
	}
	raw, _, err := record.Decode(v)
	if err != nil {
		return -1, time.Time{}
	}
	r, err := ocsp.ParseResponseForCert(raw, f.leaves[j].Cert, f.ca.Cert)
	if err != nil {
		return -1, time.Time{}
	}
	return r.Status, r.ThisUpdate
}

// fetchDirect asks the responder about leaf outside any Stapler.
func fetchDirect(f *fleet, leaf *responder.Leaf) ([]byte, *big.Int, error) {
	req, err := ocsp.CreateRequest(leaf.Cert, f.ca.Cert, nil)
	if err != nil {
		return nil, nil, err
	}
	resp, err := postOCSP(f.srv.URL, req)
	return resp, leaf.Cert.SerialNumber, err
}

func postOCSP(url string, req []byte) ([]byte, error) {
	resp, err := http.Post(url, "application/ocsp-request", bytes.NewReader(req))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(resp.Body)
}

func testLogger() *slog.Logger {
	if os.Getenv("FLEET_DEBUG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}
