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
