package stapler

import (
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/staplerkit/ocsp/config"
	"github.com/staplerkit/ocsp/internal/record"
	"github.com/staplerkit/ocsp/responder"
	"golang.org/x/crypto/ocsp"
)

func TestSupersedes(t *testing.T) {
	at := func(this, produced int64, st record.Status) *record.Entry {
		return &record.Entry{ThisUpdate: record.Instant(this), ProducedAt: record.Instant(produced), Status: st, Expires: 1 << 62}
	}
	expired := func(e *record.Entry) *record.Entry { e.Expires = 1; return e }
	good, revoked := record.Good, record.Revoked
	for _, tc := range []struct {
		name     string
		e, held  *record.Entry
		replaces bool
	}{
		{"nothing held", at(1, 1, good), nil, true},
		{"newer thisUpdate", at(2, 2, good), at(1, 1, good), true},
		{"older thisUpdate", at(1, 3, good), at(2, 2, good), false},
		{"older good over newer revoked", at(1, 1, good), at(2, 2, revoked), false},
		{"same thisUpdate, later producedAt", at(1, 2, good), at(1, 1, good), true},
		{"same thisUpdate, earlier producedAt", at(1, 1, good), at(1, 2, good), false},
		{"same times, same answer", at(1, 1, good), at(1, 1, good), true},
		{"same times, good over revoked", at(1, 1, good), at(1, 1, revoked), false},
		{"same times, revoked over good", at(1, 1, revoked), at(1, 1, good), true},
		{"newer good over revoked", at(2, 2, good), at(1, 1, revoked), true},
		{"older good over a good that can no longer be served", at(1, 1, good), expired(at(2, 2, good)), true},
		{"older good over a revoked that can no longer be served", at(1, 1, good), expired(at(2, 2, revoked)), false},
	} {
		if got := supersedes(tc.e, tc.held, time.Unix(0, 100)); got != tc.replaces {
			t.Errorf("%s: supersedes = %v, want %v", tc.name, got, tc.replaces)
		}
	}
}

// After a revoked answer, a good response produced two days earlier and
// still valid (a stale CDN edge, a replay on the plain-HTTP path) is
// refused, and Strict keeps refusing the leaf.
func TestOlderGoodNeverReplacesRevoked(t *testing.T) {
	e := newEnv(t, on, WithPolicy(Strict))
	srv, tamper := tamperingResponder(t, e.r)
	e.s.opts.responderURL = srv.URL
	// A good response from two days ago, valid for a week.
	e.r.SetWindow(responder.Window{Backdate: 2 * 24 * time.Hour, Lifetime: 7 * 24 * time.Hour})
	old := mustFetchRaw(t, e, e.leaf)
	e.r.SetWindow(responder.Window{})

	addr := e.wrapAndServe(e.leaf.Certificate)
	e.waitStapled(e.leaf)
	e.r.SetStatus(e.leaf.Cert.SerialNumber, responder.Revoked(e.clock.Now(), ocsp.KeyCompromise))
	id := CertificateID(e.leaf.Cert.Raw)
	if _, err := e.s.Test(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	if st := e.status(e.leaf); st.State != StateRevoked {
		t.Fatalf("state %s after the revocation, want revoked", st.State)
	}
	replay := func([]byte) []byte { return old }
	tamper.Store(&replay)
	// The test call never reports an answer it refused to cache
	// (TestTestReportsAnOlderAnswerItDidNotCache).
	if _, err := e.s.Test(t.Context(), id); !errors.Is(err, ErrOlderResponse) {
		t.Fatalf("Test with the replay: %v, want ErrOlderResponse", err)
	}
	st := e.status(e.leaf)
	if st.State != StateRevoked || !strings.Contains(st.LastError, "older") {
		t.Fatalf("after the replay: state %s, last error %q; want revoked, and the older response named", st.State, st.LastError)
	}
	if _, _, err := e.handshake(addr); err == nil {
		t.Fatal("Strict served the revoked leaf after an older good response was replayed")
	}
	// A scheduled refresh that gets the replay keeps revoked too.
	e.advanceToNextRefresh(e.leaf)
	e.waitQueries(e.leaf, st.Queries+1)
	if st := e.status(e.leaf); st.State != StateRevoked {
		t.Fatalf("after a refresh with the replay: state %s", st.State)
	}
}

func TestRevokedReplacesGoodAtOnce(t *testing.T) {
	e := newEnv(t, on)
	addr := e.wrapAndServe(e.leaf.Certificate)
	e.mustGetStaple(addr, e.leaf, ocsp.Good)
	e.waitQueries(e.leaf, 1)
	e.expectEvent(e.leaf, StateNone, StateGood)
	revokedAt := e.clock.Now().Add(-time.Minute)
	e.r.SetStatus(e.leaf.Cert.SerialNumber, responder.Revoked(revokedAt, ocsp.KeyCompromise))
	st, err := e.s.Test(context.Background(), CertificateID(e.leaf.Cert.Raw))
	if err != nil {
		t.Fatal(err)
	}
	if st.CertStatus != config.CertRevoked || !st.RevocationTime.Equal(revokedAt) {
		t.Fatalf("test returned %+v", st)
	}
	e.expectEvent(e.leaf, StateGood, StateRevoked)
	e.mustGetStaple(addr, e.leaf, ocsp.Revoked)
}

func TestUnknownIsNotStapled(t *testing.T) {
	e := newEnv(t, on)
	stranger, err := e.ca.Issue(responder.LeafOptions{OCSPServer: []string{e.srv.URL}})
	if err != nil {
		t.Fatal(err)
	}
	addr := e.wrapAndServe(stranger.Certificate)
	e.mustGetNoStaple(addr)
	st := e.status(stranger)
	if st.CertStatus != config.CertUnknown || st.State != StateUnknown || st.Stapled || !strings.Contains(st.LastError, "does not know") {
		t.Fatalf("status %+v", st)
	}
}

func TestSkipVerifyAcceptsUnauthorizedSignerButNotAnotherCertificate(t *testing.T) {
	e := newEnv(t, on, WithDefaultStapling(config.Stapling{Enabled: true, SkipVerify: true}))
	e.r.SetFault(responder.Fault{Kind: responder.FaultUnauthorizedSigner})
	addr := e.wrapAndServe(e.leaf.Certificate)
	staple, _, err := e.handshake(addr)
	if err != nil || staple == nil {
		t.Fatalf("no staple with skip_verify: %v", err)
	}
	e.waitQueries(e.leaf, 1)
	for i, kind := range []responder.FaultKind{responder.FaultWrongSerial, responder.FaultWrongIssuerHash, responder.FaultNextUpdateInPast, responder.FaultTryLater} {
		e.r.SetFault(responder.Fault{Kind: kind})
		e.clock.Advance(2 * time.Hour)
		st := e.waitQueries(e.leaf, 2+i)
		if st.LastError == "" {
			t.Fatalf("%v accepted with skip_verify", kind)
		}
	}
	// Without skip_verify the unauthorized signer is refused.
	id := CertificateID(e.leaf.Cert.Raw)
	if err := e.s.SetStapling(id, config.Stapling{Enabled: true}); err != nil {
		t.Fatal(err)
	}
	e.r.SetFault(responder.Fault{Kind: responder.FaultUnauthorizedSigner})
	var fe *FetchError
	if _, err := e.s.Test(context.Background(), id); !errors.Is(err, ErrUnauthorizedSigner) || !errors.As(err, &fe) || fe.ID != id {
		t.Fatalf("got %v", err)
	}
}

// isRogue reports whether staple is a response for leaf that e's CA did
// not authorize: it fails verification against the CA, and verifies with
// the certificate it embeds (FaultUnauthorizedSigner's).
func (e *env) isRogue(staple []byte, leaf *responder.Leaf) bool {
	if len(staple) == 0 {
		return false
	}
	if _, err := ocsp.ParseResponseForCert(staple, leaf.Cert, e.ca.Cert); err == nil {
		return false
	}
	r, err := ocsp.ParseResponse(staple, nil)
	return err == nil && r.Certificate != nil && r.Certificate.Subject.CommonName == "rogue OCSP responder"
}

// dropFixture is a certificate stapled good (see knowledgeFixture), on a
// server with WithDropOnFailure and one recovery try.
type dropFixture struct{ *knowledgeFixture }

func newDropFixture(t *testing.T, policy Policy) dropFixture {
	t.Helper()
	return dropFixture{newKnowledgeFixtureWith(t, config.OCSP{OCSPFunctionality: true, RecoveryFrequency: 60, RecoveryMaxTries: 1},
		WithDropOnFailure(), WithPolicy(policy))}
}

// revokeAndDrop has the responder revoke the certificate (the revocation
// installed and stapled by a test query), then fail with HTTP 500 until
// the recovery tries are used up and the staple is dropped.
func (f dropFixture) revokeAndDrop(t *testing.T) {
	t.Helper()
	e := f.e
	f.revoke(t)
	if st := e.status(f.leaf); st.State != StateRevoked || !st.Stapled {
		t.Fatalf("after the revocation: state %s, stapled %v", st.State, st.Stapled)
	}
	e.r.SetFault(responder.Fault{Kind: responder.FaultHTTP500})
	for i := 0; e.status(f.leaf).State != StateFailed; i++ {
		if i == 10 {
			t.Fatalf("the recovery tries never ran out: %+v", e.status(f.leaf))
		}
		n := e.advanceToNextRefresh(f.leaf)
		e.waitQueries(f.leaf, n+1)
	}
	if st := e.status(f.leaf); st.Stapled {
		t.Fatalf("WithDropOnFailure kept the staple past the recovery tries: %+v", st)
	}
	e.r.SetFault(responder.Fault{})
}

// The staple of a certificate stapled revoked is dropped when the
// responder then fails past recovery_max_tries (WithDropOnFailure): Strict
// still refuses the certificate, Status still says REVOKED, and a session
// begun before the revocation is not resumed.
func TestStrictRefusesAKnownRevokedCertificateAfterItsStapleIsDropped(t *testing.T) {
	for _, v := range tlsVersions {
		t.Run(v.name, func(t *testing.T) {
			f := newDropFixture(t, Strict)
			e := f.e
			// A session begun while the certificate was good, and resumable.
			client := e.clientConfig(func(c *tls.Config) {
				c.ClientSessionCache = tls.NewLRUClientSessionCache(8)
				c.MinVersion, c.MaxVersion = v.version, v.version
			})
			if c := f.srv.connect(client); c.client != nil || c.server != nil || c.resumed {
				t.Fatalf("first connection: %+v", c)
			}
			if c := f.srv.connect(client); c.client != nil || !c.resumed {
				t.Fatalf("control: the session does not resume while the certificate is good: %+v", c)
			}

			f.revokeAndDrop(t)

			if st := e.status(f.leaf); st.CertStatus != config.CertRevoked || st.State != StateFailed {
				t.Errorf("after the drop: cert_status %q, state %s; want %s and failed", st.CertStatus, st.State, config.CertRevoked)
			}
			if c := f.srv.connect(e.clientConfig()); c.client == nil || !errors.Is(c.server, ErrRevoked) {
				t.Errorf("Strict served a certificate known revoked once its staple was dropped: client %v, server %v, staple %d bytes", c.client, c.server, len(c.staple))
			}
			if c := f.srv.connect(client); c.client == nil && c.resumed {
				t.Errorf("a session begun before the revocation resumed after the staple was dropped")
			} else if c.client == nil || !errors.Is(c.server, ErrRevoked) {
				t.Errorf("the client with a session: client %v, server %v; want the handshake refused as revoked", c.client, c.server)
			}
		})
	}
}

// After a revoked staple is dropped (WithDropOnFailure), a good response
// signed before the revocation, replayed by whatever stands between the
// server and the responder, is refused: by a test query (ErrOlderResponse)
// and by the scheduled refreshes, and nothing good is stapled.
func TestAnOlderGoodReplayIsRefusedAfterARevokedStapleIsDropped(t *testing.T) {
	for _, policy := range []Policy{Lenient, Strict} {
		t.Run(policy.String(), func(t *testing.T) {
			f := newDropFixture(t, policy)
			e := f.e
			f.revokeAndDrop(t)
			f.front.replay(f.good)

			check := func(when string) {
				t.Helper()
				if st := e.status(f.leaf); st.Stapled || st.CertStatus != config.CertRevoked {
					t.Errorf("%s: stapled %v, cert_status %q; want no staple and %s", when, st.Stapled, st.CertStatus, config.CertRevoked)
				}
				c := f.srv.connect(e.clientConfig())
				if len(c.staple) > 0 {
					if r, err := ocsp.ParseResponseForCert(c.staple, f.leaf.Cert, e.ca.Cert); err == nil && r.Status == ocsp.Good {
						t.Errorf("%s: the replayed good response is stapled", when)
					}
				}
				switch policy {
				case Strict:
					if c.client == nil || !errors.Is(c.server, ErrRevoked) {
						t.Errorf("%s: Strict handshake: client %v, server %v; want refused as revoked", when, c.client, c.server)
					}
				default:
					if c.client != nil || c.server != nil || len(c.staple) > 0 {
						t.Errorf("%s: Lenient handshake: client %v, server %v, staple %d bytes; want served without a staple", when, c.client, c.server, len(c.staple))
					}
				}
			}

			if _, err := e.s.Test(t.Context(), f.id); !errors.Is(err, ErrOlderResponse) {
				t.Errorf("a test query answered with the replay: %v, want ErrOlderResponse", err)
			}
			check("after a test query got the replay")
			n := e.advanceToNextRefresh(f.leaf)
			e.waitQueries(f.leaf, n+1)
			check("after a scheduled refresh got the replay")
		})
	}
}

// A response signed by a key the CA never authorized, stapled while
// skip_verify was on, is no longer served from the moment SetStapling
// turns skip_verify off, and never again while the responder goes on
// answering with it.
func TestTurningSkipVerifyOffStopsServingAnUnverifiedStapleAtOnce(t *testing.T) {
	e := newEnv(t, config.OCSP{OCSPFunctionality: true, RecoveryMaxTries: 3})
	addr := e.wrapAndServe(e.leaf.Certificate)
	e.mustGetStaple(addr, e.leaf, ocsp.Good)
	id := CertificateID(e.leaf.Cert.Raw)

	e.clock.Advance(10 * time.Minute) // the rogue answer is newer than the verified one
	e.r.SetFault(responder.Fault{Kind: responder.FaultUnauthorizedSigner})
	n := e.status(e.leaf).Queries
	if err := e.s.SetStapling(id, config.Stapling{Enabled: true, SkipVerify: true, CacheTTL: 3600}); err != nil {
		t.Fatal(err)
	}
	e.waitQueries(e.leaf, n+1)
	staple, _, err := e.handshake(addr)
	if err != nil || !e.isRogue(staple, e.leaf) {
		t.Fatalf("with skip_verify on, the rogue-signed response is not stapled (%v)", err)
	}

	if err := e.s.SetStapling(id, config.Stapling{Enabled: true, SkipVerify: false, CacheTTL: 3600}); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		staple, _, err := e.handshake(addr)
		if err != nil {
			t.Fatal(err)
		}
		if e.isRogue(staple, e.leaf) {
			t.Fatalf("handshake %d after skip_verify was turned off got the rogue-signed staple", i+1)
		}
	}
	// The responder keeps answering rogue-signed: the refetch that turning
	// skip_verify off asked for, and the retries after it, refuse it.
	for i := range 3 {
		n := e.advanceToNextRefresh(e.leaf)
		e.waitQueries(e.leaf, n+1)
		staple, _, err := e.handshake(addr)
		if err != nil {
			t.Fatal(err)
		}
		if e.isRogue(staple, e.leaf) {
			t.Fatalf("refresh %d with skip_verify off stapled the rogue-signed response", i+1)
		}
	}
}

// Under skip_verify, an unverified response whose thisUpdate is a few
// minutes ahead (within the allowed clock skew) is installed; once
// skip_verify is off, it does not outrank the genuine responder: its
// revocation, signed now and so with an earlier thisUpdate, is installed,
// and Strict refuses the certificate.
func TestAFutureDatedUnverifiedStapleDoesNotOutrankAGenuineRevocation(t *testing.T) {
	e := newEnv(t, on, WithPolicy(Strict))
	srv := serveReporting(t, e.s.Wrap(tlsConfigFor(e.leaf)))
	e.waitStapled(e.leaf)
	id := CertificateID(e.leaf.Cert.Raw)

	// A rogue-signed good answer dated 4 minutes ahead (the skew allows 5).
	e.r.SetWindow(responder.Window{Backdate: -4 * time.Minute, Lifetime: 24 * time.Hour})
	e.r.SetFault(responder.Fault{Kind: responder.FaultUnauthorizedSigner})
	n := e.status(e.leaf).Queries
	if err := e.s.SetStapling(id, config.Stapling{Enabled: true, SkipVerify: true, CacheTTL: 3600}); err != nil {
		t.Fatal(err)
	}
	e.waitQueries(e.leaf, n+1)
	c := srv.connect(e.clientConfig())
	if c.client != nil || !e.isRogue(c.staple, e.leaf) {
		t.Fatalf("with skip_verify on, the future-dated rogue answer is not stapled: %v", c.client)
	}
	if r, err := ocsp.ParseResponse(c.staple, nil); err != nil || !r.ThisUpdate.After(e.clock.Now()) {
		t.Fatalf("the staple's thisUpdate is not ahead of the clock: %v", err)
	}

	// Two minutes on the genuine responder revokes the certificate: its
	// answer's thisUpdate (a minute ago) is before the rogue one's.
	e.clock.Advance(2 * time.Minute)
	e.r.SetFault(responder.Fault{})
	e.r.SetWindow(responder.Window{})
	e.r.SetStatus(e.leaf.Cert.SerialNumber, responder.Revoked(e.clock.Now().Add(-time.Minute), ocsp.KeyCompromise))
	n = e.status(e.leaf).Queries
	if err := e.s.SetStapling(id, config.Stapling{Enabled: true, SkipVerify: false, CacheTTL: 3600}); err != nil {
		t.Fatal(err)
	}
	// The refetch that turning skip_verify off asks for is applied first:
	// a test query racing it may have its answer installed and then
	// replaced by the refetch's equal one before Test looks, and Test
	// then reports ErrOlderResponse (a misreport; what is installed is
	// right either way).
	e.waitQueries(e.leaf, n+1)
	st, err := e.s.Test(t.Context(), id)
	if err != nil || st.CertStatus != config.CertRevoked {
		t.Fatalf("the genuine revocation after skip_verify was turned off: %v, cert_status %q", err, st.CertStatus)
	}
	if c := srv.connect(e.clientConfig()); c.client == nil || !errors.Is(c.server, ErrRevoked) {
		t.Fatalf("Strict handshake after the revocation: client %v, server %v, rogue staple %v", c.client, c.server, e.isRogue(c.staple, e.leaf))
	}
	if st := e.status(e.leaf); st.CertStatus != config.CertRevoked || st.State != StateRevoked {
		t.Fatalf("status after the revocation: cert_status %q, state %s", st.CertStatus, st.State)
	}
}

// A query started while skip_verify was on (signature and signer unchecked)
// ends after SetStapling turned skip_verify off; its answer, signed by a
// key the CA never authorized, is installed and stapled all the same (and
// the refetch that SetStapling promises fails without removing it).
// Expected: once skip_verify is off, no response whose signer was not
// checked is stapled.
func TestSkipVerifyTurnedOffMidQuery(t *testing.T) {
	e := newEnv(t, on)
	e.r.SetFault(responder.Fault{Kind: responder.FaultUnauthorizedSigner})
	arrived := make(chan struct{}, 16)
	release := make(chan struct{})
	var once sync.Once
	gate := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-release
		e.r.ServeHTTP(w, r)
	}))
	t.Cleanup(gate.Close)
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	s, err := New(on, WithClock(e.clock), WithLogger(quietLogger()), WithResponderURL(gate.URL),
		WithDefaultStapling(config.Stapling{Enabled: true, SkipVerify: true, CacheTTL: 3600}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	leaf, err := e.ca.Issue(responder.LeafOptions{OCSPServer: []string{gate.URL}})
	if err != nil {
		t.Fatal(err)
	}
	e.r.SetStatus(leaf.Cert.SerialNumber, responder.Good())
	id, err := s.Add(&leaf.Certificate)
	if err != nil {
		t.Fatal(err)
	}
	<-arrived // the first query, made with skip_verify on, is in flight
	if err := s.SetStapling(id, config.Stapling{Enabled: true, SkipVerify: false, CacheTTL: 3600}); err != nil {
		t.Fatal(err)
	}
	once.Do(func() { close(release) })
	// The refetch SetStapling asked for shares the query in flight (one
	// outcome, counted once), so one query is all there is to wait for.
	eventually(t, "the query", func() bool {
		st, err := s.StatusOf(id)
		return err == nil && st.Queries >= 1
	})
	if st, _ := s.StatusOf(id); st.Stapled {
		t.Fatalf("with skip_verify off, a response from an unauthorized signer is stapled: %+v", st)
	}
}

// Once the held staple's cache_ttl has run out, an older but valid good
// answer is stapled again within a few recovery periods: with a responder
// behind a CDN whose edges disagree (one edge answers with a response
// produced earlier, still valid for a day) and cache_ttl 60 s, accepting an
// older good answer is no rollback when the held good one can no longer be
// served. Found when rollback protection refused every such answer and the
// certificate went unstapled (must-staple and Strict handshakes refused)
// for half an hour at a time.
func TestOlderGoodAnswerIsStapledAfterCacheTTL(t *testing.T) {
	e := newEnv(t, on, WithDefaultStapling(config.Stapling{Enabled: true, CacheTTL: 60}))
	srv, tamper := tamperingResponder(t, e.r)
	e.s.opts.responderURL = srv.URL

	older := mustFetchRaw(t, e, e.leaf) // what the stale edge keeps serving
	e.clock.Advance(10 * time.Second)
	addr := e.wrapAndServe(e.leaf.Certificate)
	e.waitStapled(e.leaf)
	e.mustGetStaple(addr, e.leaf, ocsp.Good)
	heldFetched := e.clock.Now()

	stale := func([]byte) []byte { return older }
	tamper.Store(&stale)

	// Follow the Stapler's own plan, on the injected clock, up to three
	// recovery periods after the held staple's cache_ttl ran out.
	bound := heldFetched.Add(60*time.Second + 3*time.Duration(config.DefaultRecoveryFrequency)*time.Second)
	m, err := e.s.lookup(CertificateID(e.leaf.Cert.Raw))
	if err != nil {
		t.Fatal(err)
	}
	for {
		var due time.Time
		eventually(t, "a planned query", func() bool {
			due = e.s.sched.DueAt(m)
			return !due.IsZero()
		})
		if due.After(bound) {
			break
		}
		q := e.status(e.leaf).Queries
		e.clock.Advance(max(0, due.Sub(e.clock.Now())))
		e.waitQueries(e.leaf, q+1)
	}
	e.clock.Advance(max(0, bound.Sub(e.clock.Now())))
	st := e.status(e.leaf)
	staple, _, err := e.handshake(addr)
	if err != nil {
		t.Fatal(err)
	}
	if staple == nil {
		t.Fatalf("%v after the held staple's cache_ttl ran out, with the responder answering every query with a valid good response: no staple (state %s, queries %d, last error %q, next query %s from now)",
			e.clock.Now().Sub(heldFetched.Add(60*time.Second)), st.State, st.Queries, st.LastError, e.s.sched.DueAt(m).Sub(e.clock.Now()).Round(time.Second))
	}
	if resp, err := ocsp.ParseResponseForCert(staple, e.leaf.Cert, e.ca.Cert); err != nil || resp.Status != ocsp.Good {
		t.Fatalf("staple does not verify as good: %v", err)
	}
}
