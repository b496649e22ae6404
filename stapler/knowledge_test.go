package stapler

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/staplerkit/ocsp/cache"
	"github.com/staplerkit/ocsp/config"
	"github.com/staplerkit/ocsp/internal/record"
	"github.com/staplerkit/ocsp/responder"
)

// What a Stapler has verified of a certificate is kept apart from what it
// serves: a staple dropped, withdrawn or forgotten (WithDropOnFailure,
// skip_verify turned off, Remove) does not make a revoked certificate
// good, an older response replayed afterwards is not installed, nothing
// unverified is served once verification is on, and session tickets are
// not shared between unrelated wrapped configs. Every test here goes
// through real handshakes on loopback, real signed responses, and the fake
// clock.

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

// errRefusedClient is B's verdict on the client certificate it refuses.
var errRefusedClient = errors.New("this client certificate is refused here")

// One Stapler wraps two unrelated configs: A asks for a client certificate
// and accepts any, B requires one and refuses a particular client. A
// session that client began on A does not resume on B (crypto/tls calls no
// VerifyPeerCertificate on a resumed session, so resuming would let the
// client in unchecked): B's handshake is a full one, and fails. Copies of
// A (its Clone, and the config its GetConfigForClient returns) resume A's
// sessions.
func TestSessionsDoNotResumeAcrossUnrelatedWrappedConfigs(t *testing.T) {
	for _, v := range tlsVersions {
		t.Run(v.name, func(t *testing.T) {
			e := newEnv(t, on)
			refused := e.mustIssue(responder.ECDSA, "client.test")

			innerA := &tls.Config{Certificates: []tls.Certificate{e.leaf.Certificate}, ClientAuth: tls.RequestClientCert}
			appA := &tls.Config{
				Certificates: []tls.Certificate{e.leaf.Certificate},
				ClientAuth:   tls.RequestClientCert,
				GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
					if h.ServerName == "inner.test" {
						return innerA, nil
					}
					return nil, nil // the config itself
				},
			}
			appB := &tls.Config{
				Certificates: []tls.Certificate{e.leaf.Certificate},
				ClientAuth:   tls.RequireAnyClientCert,
				VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
					if len(raw) > 0 && bytes.Equal(raw[0], refused.Cert.Raw) {
						return errRefusedClient
					}
					return nil
				},
			}
			wrappedA := e.s.Wrap(appA)
			fromA, err := wrappedA.GetConfigForClient(&tls.ClientHelloInfo{ServerName: "inner.test"})
			if err != nil || fromA == nil {
				t.Fatalf("A's GetConfigForClient: %v, %v", fromA, err)
			}
			a := serveReporting(t, wrappedA)
			b := serveReporting(t, e.s.Wrap(appB))
			clone := serveReporting(t, wrappedA.Clone())
			inner := serveReporting(t, fromA)
			e.waitStapled(e.leaf)

			client := e.clientConfig(func(c *tls.Config) {
				c.Certificates = []tls.Certificate{refused.Certificate}
				c.ClientSessionCache = tls.NewLRUClientSessionCache(8)
				c.MinVersion, c.MaxVersion = v.version, v.version
			})
			onA := func() {
				t.Helper()
				if c := a.connect(client); c.client != nil || c.server != nil {
					t.Fatalf("A refused the client: client %v, server %v", c.client, c.server)
				}
			}
			onA()
			if c := clone.connect(client); c.client != nil || c.server != nil || !c.resumed {
				t.Errorf("a Clone of A does not resume A's session: resumed %v, client %v, server %v", c.resumed, c.client, c.server)
			}
			onA()
			if c := inner.connect(client); c.client != nil || c.server != nil || !c.resumed {
				t.Errorf("the config A's GetConfigForClient returns does not resume A's session: resumed %v, client %v, server %v", c.resumed, c.client, c.server)
			}
			onA()
			c := b.connect(client)
			if c.resumed {
				t.Errorf("B resumed a session begun on A, letting in a client it refuses")
			}
			if c.client == nil || !errors.Is(c.server, errRefusedClient) {
				t.Errorf("B's handshake with the refused client: client %v, server %v; want it refused by B's VerifyPeerCertificate", c.client, c.server)
			}
		})
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

// A certificate known revoked, removed with Remove and then served again
// by a handshake (which registers it again), is still known revoked:
// Strict refuses it, and a good response signed before the revocation,
// replayed to the new registration's first query, is not installed.
func TestARemovedRevokedCertificateIsStillRevokedWhenServedAgain(t *testing.T) {
	e := newEnv(t, on, WithPolicy(Strict))
	front, tamper := tamperingResponder(t, e.r)
	leaf, err := e.ca.Issue(responder.LeafOptions{OCSPServer: []string{front.URL}})
	if err != nil {
		t.Fatal(err)
	}
	e.r.SetStatus(leaf.Cert.SerialNumber, responder.Good())
	id := CertificateID(leaf.Cert.Raw)
	srv := serveReporting(t, e.s.Wrap(tlsConfigFor(leaf)))
	e.waitStapled(leaf)
	good, err := e.r.Respond(leaf.Cert)
	if err != nil {
		t.Fatal(err)
	}

	e.clock.Advance(10 * time.Minute)
	e.r.SetStatus(leaf.Cert.SerialNumber, responder.Revoked(e.clock.Now().Add(-time.Minute), ocsp.KeyCompromise))
	if st, err := e.s.Test(t.Context(), id); err != nil || st.CertStatus != config.CertRevoked {
		t.Fatalf("the revocation: %v, %+v", err, st.Status)
	}
	if c := srv.connect(e.clientConfig()); c.client == nil || !errors.Is(c.server, ErrRevoked) {
		t.Fatalf("before Remove: client %v, server %v; want refused as revoked", c.client, c.server)
	}

	replay := func([]byte) []byte { return good }
	tamper.Store(&replay)
	if err := e.s.Remove(id); err != nil {
		t.Fatal(err)
	}
	c := srv.connect(e.clientConfig())
	if c.client == nil || !errors.Is(c.server, ErrRevoked) {
		good := false
		if r, err := ocsp.ParseResponseForCert(c.staple, leaf.Cert, e.ca.Cert); err == nil && r.Status == ocsp.Good {
			good = true
		}
		t.Fatalf("served again after Remove: client %v, server %v, stapled good %v; want refused as revoked", c.client, c.server, good)
	}
	if st := e.status(leaf); st.Stapled || st.CertStatus != config.CertRevoked {
		t.Errorf("served again after Remove: stapled %v, cert_status %q; want no staple and %s", st.Stapled, st.CertStatus, config.CertRevoked)
	}
	if _, err := e.s.Test(t.Context(), id); !errors.Is(err, ErrOlderResponse) {
		t.Errorf("a test query answered with the replay after Remove: %v, want ErrOlderResponse", err)
	}
	if c := srv.connect(e.clientConfig()); c.client == nil || !errors.Is(c.server, ErrRevoked) {
		t.Errorf("after the replay: client %v, server %v; want refused as revoked", c.client, c.server)
	}
}

// A response installed under skip_verify is never written to the store:
// after a restart, only what was verified is there to restore.
func TestAnUnverifiedStapleIsNeverStored(t *testing.T) {
	store := cache.DirStore(t.TempDir())
	e := newEnv(t, on, WithStore(store))
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
	if staple, _, err := e.handshake(addr); err != nil || !e.isRogue(staple, e.leaf) {
		t.Fatalf("with skip_verify on, the rogue-signed response is not stapled (%v)", err)
	}
	e.s.Close() // every pending write done
	value, err := store.Get(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	raw, _, err := record.Decode(value)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ocsp.ParseResponseForCert(raw, e.leaf.Cert, e.ca.Cert); err != nil {
		t.Fatalf("the store holds a response that does not verify: %v", err)
	}
}

// The knowledge of removed certificates is bounded (rememberedLimit, the
// oldest forgotten first), and a remembered revocation counts in the
// revoked count exactly while it is remembered.
func TestRemovedKnowledgeIsBoundedAndCountedWhileRemembered(t *testing.T) {
	var r remembered
	var count atomic.Int64
	revoked := &record.Entry{Status: record.Revoked, ThisUpdate: 1}
	good := &record.Entry{Status: record.Good, ThisUpdate: 2}
	certs := make([]*managed, rememberedLimit+1)
	for i := range certs {
		m := &managed{der: []byte(fmt.Sprint("certificate ", i)), known: good}
		if i == 0 {
			m.known, m.revokedFloor = revoked, revoked.ThisUpdate
		}
		certs[i] = m
		r.keep(m, &count)
	}
	if len(r.byKey) != rememberedLimit || len(r.order) != rememberedLimit {
		t.Fatalf("%d remembered (%d in order), bound %d", len(r.byKey), len(r.order), rememberedLimit)
	}
	if _, kept := r.byKey[certs[0].key()]; kept {
		t.Fatal("the oldest certificate removed is still remembered past the bound")
	}
	if n := count.Load(); n != 0 {
		t.Fatalf("revoked count %d once the only revocation was forgotten, want 0", n)
	}
	// Remembered revoked, then served again: the count moves to the
	// certificate's own state (restore), and back when it is forgotten.
	last := certs[rememberedLimit]
	later := &record.Entry{Status: record.Revoked, ThisUpdate: 3} // newer than its good answer
	last.known, last.revokedFloor = later, later.ThisUpdate
	r.keep(last, &count)
	if n := count.Load(); n != 1 || !r.of(last.key()).revoked() {
		t.Fatalf("revoked count %d with one revocation remembered, want 1", n)
	}
	// What is kept again is merged with what is remembered: an older
	// answer learnt late does not replace the newer revocation.
	r.keep(&managed{der: last.der, known: good}, &count)
	if n := count.Load(); n != 1 || !r.of(last.key()).revoked() {
		t.Fatalf("an older answer kept late replaced a remembered revocation (count %d)", n)
	}
	again := &managed{der: last.der}
	r.restore(again, last.key(), &count)
	if n := count.Load(); n != 0 || again.known != later || r.of(last.key()).revoked() {
		t.Fatalf("after restore: count %d, known %v", n, again.known)
	}
}
