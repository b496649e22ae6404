package stapler

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"
)

func TestVerifierCRLRefusesARevokedCertificateWithItsTimeAndReason(t *testing.T) {
	p := newCRLPKI(t)
	p.serve(p.crl(1, []int64{5}))
	v := p.verifier(true)
	err := v.VerifyConnection(p.state(p.leaf(5, leafOpts{})))
	var revoked *RevokedError
	if !errors.As(err, &revoked) || revoked.Reason != ocsp.KeyCompromise || !revoked.RevokedAt.Equal(p.clock.Now().Add(-time.Hour).Truncate(time.Second)) || revoked.Serial.Int64() != 5 {
		t.Fatalf("revoked certificate: %v", err)
	}
	if err := v.VerifyConnection(p.state(p.leaf(6, leafOpts{}))); err != nil {
		t.Fatalf("good certificate refused: %v", err)
	}
	if n := p.crlHits(); n != 1 {
		t.Fatalf("%d CRL downloads, want 1 (the second check reads the one held)", n)
	}
}

func TestVerifierCRLIsDownloadedOnceForConcurrentHandshakes(t *testing.T) {
	p := newCRLPKI(t)
	p.serve(p.crl(1, []int64{5}))
	release := make(chan struct{})
	p.mu.Lock()
	p.hang = release
	p.mu.Unlock()
	v := p.verifier(true)
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := range 20 {
		wg.Go(func() { errs <- v.VerifyConnection(p.state(p.leaf(int64(100+i), leafOpts{}))) })
	}
	eventually(t, "the download to start", func() bool { return p.crlHits() == 1 })
	p.mu.Lock()
	p.hang = nil
	p.mu.Unlock()
	// The first request hangs until released; its handler then answers
	// nothing, so the download fails: released only once the others have
	// had every chance to ask too.
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err == nil {
			t.Fatal("a handshake accepted with no CRL")
		}
	}
	if n := p.crlHits(); n != 1 {
		t.Fatalf("%d downloads for 20 handshakes, want 1", n)
	}
}

func TestVerifierCRLHeldUntilNextUpdateAndRefreshedBeforeIt(t *testing.T) {
	p := newCRLPKI(t)
	p.serve(p.crl(1, nil))
	v := p.verifier(true)
	leaf := p.leaf(5, leafOpts{})
	if err := v.VerifyConnection(p.state(leaf)); err != nil {
		t.Fatal(err)
	}
	p.serve(p.crl(2, []int64{5}))
	p.clock.Advance(59 * time.Minute)
	if err := v.VerifyConnection(p.state(leaf)); err != nil || p.crlHits() != 1 {
		t.Fatalf("before the refresh: %v, %d downloads", err, p.crlHits())
	}
	p.clock.Advance(2 * time.Minute) // an hour after the download
	// The CRL held answers at once, and a refresh starts behind it (held
	// at the server until the check has answered, so that the check sees
	// the CRL held and not the refreshed one).
	gate := make(chan struct{})
	p.mu.Lock()
	p.gate = gate
	p.mu.Unlock()
	if err := v.VerifyConnection(p.state(leaf)); err != nil {
		t.Fatalf("the CRL held, due for refresh: %v", err)
	}
	p.mu.Lock()
	p.gate = nil
	p.mu.Unlock()
	close(gate)
	var revoked *RevokedError
	eventually(t, "the refreshed CRL", func() bool { return errors.As(v.VerifyConnection(p.state(leaf)), &revoked) })
	if n := p.crlHits(); n != 2 {
		t.Fatalf("%d downloads, want 2", n)
	}
	m := v.CRLMetrics()
	if m.Held != 1 || m.Fetches[CRLFetchOK] != 2 || m.Bytes <= 0 || !m.NextUpdate[p.url].Equal(p.clock.Now().Add(23*time.Hour-time.Minute).Truncate(time.Second)) {
		t.Fatalf("metrics %+v", m)
	}
	// Past its nextUpdate with the server down, nothing is known but the
	// revocation the CRL listed, which is remembered until the
	// certificate's NotAfter, as an OCSP revocation is.
	p.mu.Lock()
	p.status = http.StatusInternalServerError
	p.mu.Unlock()
	p.clock.Advance(24 * time.Hour)
	if err := v.VerifyConnection(p.state(p.leaf(6, leafOpts{}))); !errors.Is(err, ErrHTTPStatus) {
		t.Fatalf("after nextUpdate, server down: %v", err)
	}
	if err := v.VerifyConnection(p.state(leaf)); !errors.As(err, &revoked) {
		t.Fatalf("after nextUpdate, the revocation the CRL listed: %v", err)
	}
	if m := v.CRLMetrics(); m.Held != 0 || m.Bytes != 0 || m.Fetches[CRLFetchHTTPStatus] != 1 {
		t.Fatalf("metrics after expiry %+v", m)
	}
}

func TestVerifierCRLNeverRollsBackToALowerNumber(t *testing.T) {
	p := newCRLPKI(t)
	p.serve(p.crl(5, []int64{5}))
	v := p.verifier(true)
	leaf := p.leaf(5, leafOpts{})
	var revoked *RevokedError
	if !errors.As(v.VerifyConnection(p.state(leaf)), &revoked) {
		t.Fatal("not refused")
	}
	// A stale mirror, then a replay once the CRL held has expired: an
	// older CRL that does not list the certificate is never used.
	p.serve(p.crl(4, nil, func(rl *x509.RevocationList) { rl.NextUpdate = p.clock.Now().Add(72 * time.Hour) }))
	p.clock.Advance(2 * time.Hour)
	if !errors.As(v.VerifyConnection(p.state(leaf)), &revoked) {
		t.Fatal("not refused while the older CRL is fetched")
	}
	eventually(t, "the refresh", func() bool { return v.CRLMetrics().Fetches[CRLFetchRollback] == 1 })
	if !errors.As(v.VerifyConnection(p.state(leaf)), &revoked) {
		t.Fatal("the older CRL replaced the newer")
	}
	p.clock.Advance(24 * time.Hour)
	if err := v.VerifyConnection(p.state(p.leaf(6, leafOpts{}))); !errors.Is(err, ErrCRLRollback) {
		t.Fatalf("the replay after the CRL held expired: %v", err)
	}
	// The revocation CRL 5 listed is remembered past its nextUpdate.
	if !errors.As(v.VerifyConnection(p.state(leaf)), &revoked) {
		t.Fatal("the revocation was forgotten with its CRL")
	}
	if m := v.CRLMetrics(); m.Fetches[CRLFetchRollback] != 2 || m.Held != 0 {
		t.Fatalf("metrics %+v", m)
	}
}

// A CRL held past its nextUpdate decides nothing: under HardFail, with the
// point down, a good client is refused (no current status), and a client
// whose revocation was learnt stays refused.
func TestVerifierCRLHeldPastNextUpdateDecidesNothingButTheRevocationStays(t *testing.T) {
	p := newCRLPKI(t)
	p.serve(p.crl(1, []int64{5}))
	v := p.verifier(true)
	good, bad := p.leaf(6, leafOpts{}), p.leaf(5, leafOpts{})
	var revoked *RevokedError
	if err := v.VerifyConnection(p.state(bad)); !errors.As(err, &revoked) {
		t.Fatal(err)
	}
	if err := v.VerifyConnection(p.state(good)); err != nil {
		t.Fatal(err)
	}
	p.serve(nil)
	p.clock.Advance(24*time.Hour + time.Second)
	if err := v.VerifyConnection(p.state(good)); err == nil {
		t.Fatal("HardFail: a CRL past its nextUpdate let a client in")
	}
	if err := v.VerifyConnection(p.state(bad)); !errors.As(err, &revoked) {
		t.Fatalf("the revocation learnt, after the CRL expired: %v", err)
	}
	if m := v.CRLMetrics(); m.Held != 0 {
		t.Fatalf("an expired CRL still held: %+v", m)
	}
}

// Handshakes of three CAs' clients while refreshes replace their CRLs,
// expiries drop them and MaxCRLMemory (room for one) evicts them (run with
// -race): a good client is never refused under HardFail, a revoked one
// never accepted.
func TestVerifierCRLHandshakesDuringRefreshesAndEvictions(t *testing.T) {
	ps := []*crlPKI{newCRLPKI(t), newCRLPKI(t), newCRLPKI(t)}
	clk := ps[0].clock
	for _, p := range ps {
		p.clock = clk
		p.serve(p.crl(1, []int64{5}))
	}
	v := &Verifier{HardFail: true, FetchTimeout: 10 * time.Second, Time: clk.Now, MaxCRLMemory: 300}
	type pair struct{ good, bad tls.ConnectionState }
	var pairs []pair
	for _, p := range ps {
		pairs = append(pairs, pair{p.state(p.leaf(6, leafOpts{})), p.state(p.leaf(5, leafOpts{}))})
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	errs := make(chan error, 64)
	for i := range 6 {
		wg.Go(func() {
			pr := pairs[i%len(pairs)]
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := v.VerifyConnection(pr.good); err != nil {
					errs <- err
					return
				}
				var revoked *RevokedError
				if err := v.VerifyConnection(pr.bad); !errors.As(err, &revoked) {
					errs <- err
					return
				}
			}
		})
	}
	for n := int64(2); n < 12; n++ {
		time.Sleep(20 * time.Millisecond)
		for _, p := range ps {
			p.serve(p.crl(n, []int64{5}))
		}
		clk.Advance(61 * time.Minute)
	}
	time.Sleep(50 * time.Millisecond)
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// The soft/hard-fail matrix, checked against a reference model: every
// combination of what the responder says, what the CRL says, HardFail
// and must-staple.
func TestVerifierRevocationSourcesMatrix(t *testing.T) {
	type source int
	const (
		none source = iota // not named by the certificate
		good
		revoked
		down
	)
	names := [...]string{"none", "good", "revoked", "down"}
	// model is the documented rule: a must-staple certificate without a
	// staple is refused; else the responder decides when it answers, then
	// the CRL; a revocation is always refused; with neither, HardFail
	// decides.
	model := func(ocspSrc, crlSrc source, hard, mustStaple bool) string {
		switch {
		case mustStaple:
			return "refused"
		case ocspSrc == revoked:
			return "revoked"
		case ocspSrc == good:
			return "accepted"
		case crlSrc == revoked:
			return "revoked"
		case crlSrc == good:
			return "accepted"
		case hard:
			return "refused"
		}
		return "accepted"
	}
	for _, ocspSrc := range []source{none, good, revoked, down} {
		for _, crlSrc := range []source{none, good, revoked, down} {
			for _, hard := range []bool{false, true} {
				for _, mustStaple := range []bool{false, true} {
					name := fmt.Sprintf("ocsp=%s/crl=%s/hard=%v/muststaple=%v", names[ocspSrc], names[crlSrc], hard, mustStaple)
					t.Run(name, func(t *testing.T) {
						p := newCRLPKI(t)
						p.mu.Lock()
						p.ocspState = map[source]int{good: 0, revoked: 1, down: -1, none: -1}[ocspSrc]
						switch crlSrc {
						case good:
							p.body = p.crl(1, nil)
						case revoked:
							p.body = p.crl(1, []int64{5})
						case down:
							p.status = http.StatusBadGateway
						}
						p.mu.Unlock()
						o := leafOpts{ocsp: ocspSrc != none, mustStaple: mustStaple}
						if crlSrc == none {
							o.points = []string{}
						}
						err := p.verifier(hard).VerifyConnection(p.state(p.leaf(5, o)))
						var rev *RevokedError
						var se *StapleError
						got := "accepted"
						switch {
						case errors.As(err, &rev):
							got = "revoked"
						case errors.As(err, &se):
							got = "refused"
						case err != nil:
							t.Fatalf("unexpected error %v", err)
						}
						if want := model(ocspSrc, crlSrc, hard, mustStaple); got != want {
							t.Fatalf("%s, want %s (%v)", got, want, err)
						}
					})
				}
			}
		}
	}
}

// How CRL downloads are counted in CRLMetrics.

// A distribution point whose TLS handshake fails (an https CRL server with
// a certificate the Verifier does not trust) is counted as
// CRLFetchConnection, as its doc says ("DNS, refused, reset, a TLS
// failure"). Found when it was counted as "other".
func TestVerifierCRLTLSFailureIsCountedAsAConnectionFailure(t *testing.T) {
	p := newCRLPKI(t)
	tlsSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(p.crl(1, nil)) }))
	t.Cleanup(tlsSrv.Close)
	v := p.verifier(true)
	if err := v.VerifyConnection(p.state(p.leaf(5, leafOpts{points: []string{tlsSrv.URL + "/ca.crl"}}))); err == nil {
		t.Fatal("accepted with no CRL")
	}
	if m := v.CRLMetrics(); m.Fetches[CRLFetchConnection] != 1 {
		t.Fatalf("a TLS failure counted as %+v", m.Fetches)
	}
}

// How the deadline of one check is shared between distribution points.

// One hanging distribution point does not take the whole deadline: each
// point is waited for at most its share of the time left, so a certificate
// naming two points, the first hanging (an attacker's mirror, or one down),
// is decided by the second. Found when the second was never asked before
// the deadline: a good client refused under HardFail, a revoked one
// accepted under soft fail.
func TestVerifierCRLHangingFirstPointLeavesTimeForTheNext(t *testing.T) {
	p := newCRLPKI(t)
	s := newPointServer(t)
	s.hang("/hang.crl")
	s.serve("/good.crl", p.crl(1, []int64{5}))
	points := []string{s.url("/hang.crl"), s.url("/good.crl")}
	t.Run("HardFail, a good client", func(t *testing.T) {
		v := &Verifier{HardFail: true, FetchTimeout: 2 * time.Second, Time: p.clock.Now}
		if err := v.VerifyConnection(p.state(p.leaf(6, leafOpts{points: points}))); err != nil {
			t.Errorf("good by its second CRL: %v", err)
		}
	})
	t.Run("soft fail, a revoked client", func(t *testing.T) {
		v := &Verifier{FetchTimeout: 2 * time.Second, Time: p.clock.Now}
		var revoked *RevokedError
		if err := v.VerifyConnection(p.state(p.leaf(5, leafOpts{points: points}))); !errors.As(err, &revoked) {
			t.Errorf("revoked by its second CRL: %v", err)
		}
	})
}

// A hanging distribution point costs one handshake its wait, then the
// handshakes after go on without it (soft fail: allowed), as after a
// hanging responder, whose request ends with FetchTimeout and whose failure
// is remembered. The bound is half of a FetchTimeout of seconds: a
// handshake that does not wait takes milliseconds, even on a loaded
// machine. Found when every handshake during a download's 30 seconds
// (crlcache.MinFetchTimeout) joined it and waited its whole FetchTimeout
// again: 30 seconds out of every 35 for all clients of the CA.
func TestVerifierCRLHangingPointIsNotWaitedForByEveryHandshakeAfter(t *testing.T) {
	const timeout = 3 * time.Second
	// The reference: a hanging responder.
	p := newCRLPKI(t)
	p.mu.Lock()
	p.ocspState = -2
	p.mu.Unlock()
	ocspLeaf := p.leaf(6, leafOpts{ocsp: true, points: []string{}})
	v := &Verifier{FetchTimeout: timeout, Time: p.clock.Now}
	v.VerifyConnection(p.state(ocspLeaf))
	start := time.Now()
	v.VerifyConnection(p.state(ocspLeaf))
	if d := time.Since(start); d > timeout/2 {
		t.Fatalf("reference: the second handshake after a hanging responder took %v", d)
	}
	// A hanging CRL point.
	s := newPointServer(t)
	s.hang("/hang.crl")
	leaf := p.leaf(5, leafOpts{points: []string{s.url("/hang.crl")}})
	v = &Verifier{FetchTimeout: timeout, Time: p.clock.Now}
	v.VerifyConnection(p.state(leaf))
	var took []time.Duration
	for range 3 {
		start := time.Now()
		v.VerifyConnection(p.state(leaf))
		took = append(took, time.Since(start))
	}
	for _, d := range took {
		if d > timeout/2 {
			t.Fatalf("after one handshake waited %v for a hanging CRL point, the handshakes after took %v each (FetchTimeout each, for 30 s)", timeout, took)
		}
	}
}

// While a download that a handshake gave up on runs, its point is a
// remembered failure: under HardFail a good client is refused at once,
// not after its whole share of FetchTimeout; once the download ends with
// a CRL, that CRL decides.
func TestVerifierCRLHangingDownloadIsARememberedFailureUntilItEnds(t *testing.T) {
	const timeout = 3 * time.Second
	p := newCRLPKI(t)
	der := p.crl(1, []int64{5})
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		w.Write(der)
	}))
	t.Cleanup(srv.Close)
	points := []string{srv.URL + "/ca.crl"}
	v := &Verifier{HardFail: true, FetchTimeout: timeout, Time: p.clock.Now}
	good, bad := p.state(p.leaf(6, leafOpts{points: points})), p.state(p.leaf(5, leafOpts{points: points}))
	if err := v.VerifyConnection(good); err == nil {
		t.Fatal("HardFail, the CRL's download hanging: a client accepted")
	}
	start := time.Now()
	err := v.VerifyConnection(good)
	if d := time.Since(start); err == nil || d > timeout/2 {
		t.Fatalf("the handshake after one gave up on the download: %v after %v, want a refusal well under %v", err, d, timeout)
	}
	close(release)
	eventually(t, "the download", func() bool { return v.CRLMetrics().Fetches[CRLFetchOK] == 1 })
	if err := v.VerifyConnection(good); err != nil {
		t.Fatalf("the download is in: %v", err)
	}
	var revoked *RevokedError
	if err := v.VerifyConnection(bad); !errors.As(err, &revoked) {
		t.Fatalf("the download is in, the revoked client: %v", err)
	}
}

// A certificate naming many distribution points, all hanging but the last:
// each gets its share, and the last one still decides within FetchTimeout.
func TestVerifierCRLManyHangingPointsLeaveTimeForTheLast(t *testing.T) {
	p := newCRLPKI(t)
	s := newPointServer(t)
	var points []string
	for i := range 20 {
		path := "/hang" + string(rune('a'+i)) + ".crl"
		s.hang(path)
		points = append(points, s.url(path))
	}
	p.serve(p.crl(1, []int64{5}))
	points = append(points, p.url)
	v := &Verifier{FetchTimeout: 4 * time.Second, Time: p.clock.Now}
	start := time.Now()
	var revoked *RevokedError
	if err := v.VerifyConnection(p.state(p.leaf(5, leafOpts{points: points}))); !errors.As(err, &revoked) {
		t.Fatalf("20 hanging points then the CA's: %v (after %v)", err, time.Since(start))
	}
	if d := time.Since(start); d > 4*time.Second+hangSlack {
		t.Fatalf("took %v", d)
	}
}

// hangSlack is what a check may take past its FetchTimeout on a loaded
// machine.
const hangSlack = 2 * time.Second

// CRLs of different scopes (all, user or CA certificates) at one point: a CRL
// that does not cover the kind of certificate checked is neither held nor
// remembered, and the scopes are held apart.

// A CRL that does not cover the kinds of certificates the CRL held covers
// does not displace it (ErrCRLScope): when an attacker at the distribution
// point replays the CA's authority revocation list
// (issuingDistributionPoint with onlyContainsCACerts and no name, so no URL
// to mismatch; a higher CRL number than the user CRL when the CA numbers
// all its CRLs from one counter), the clients the user CRL held lists stay
// refused. Found when a refresh took the ARL in place of the user CRL held,
// and then refused the user CRL as a rollback.
func TestVerifierCRLOfAnotherScopeDoesNotDisplaceTheUserCRLHeld(t *testing.T) {
	p := newCRLPKI(t)
	p.serve(p.crl(5, []int64{5, 7}))
	v := p.verifier(false)
	leaf := p.leaf(5, leafOpts{})
	var revoked *RevokedError
	if err := v.VerifyConnection(p.state(leaf)); !errors.As(err, &revoked) {
		t.Fatalf("the user CRL: %v", err)
	}
	p.serve(p.crl(6, nil, func(rl *x509.RevocationList) { rl.ExtraExtensions = []pkix.Extension{idpCAOnly()} }))
	p.clock.Advance(61 * time.Minute) // due for the background refresh
	v.VerifyConnection(p.state(leaf))
	eventually(t, "the refresh", func() bool { return p.crlHits() == 2 && !v.crlRefreshing(p.url) })
	// Client 7, listed by the user CRL held and never seen before (so not
	// a revocation already learnt), is refused on that CRL.
	if err := v.VerifyConnection(p.state(p.leaf(7, leafOpts{}))); !errors.As(err, &revoked) {
		t.Fatalf("after the ARL was served at the user CRL's URL, the revoked client: %v (metrics %+v)", err, v.CRLMetrics())
	}
	if n := v.CRLMetrics().Fetches[CRLFetchInvalid]; n != 1 {
		t.Fatalf("the ARL counted as invalid %d times, want 1", n)
	}
}

// An authority revocation list (onlyContainsCACerts, no name in its issuing
// distribution point) served at the user CRL's URL to a leaf's check is
// refused (ErrCRLScope) and neither held nor remembered as the point's
// newest CRL: the CA's user CRL, served after it, decides. Found when an
// ARL served once first (a Verifier just started, or the point's CRL
// expired or dropped by MaxCRLMemory; an on-path attacker at the plain-HTTP
// point, or a misconfigured mirror) was recorded as the point's newest
// version, and every user CRL numbered below it was refused as a rollback
// for as long as the Verifier lived.
func TestVerifierCRLAuthorityListServedFirstDoesNotLockOutTheUserCRL(t *testing.T) {
	p := newCRLPKI(t)
	p.serve(p.crl(500, nil, func(rl *x509.RevocationList) { rl.ExtraExtensions = []pkix.Extension{idpCAOnly()} }))
	v := p.verifier(false)
	leaf := p.leaf(5, leafOpts{})
	if err := v.VerifyConnection(p.state(leaf)); err != nil { // soft fail: the ARL does not cover a leaf
		t.Fatalf("the ARL at the user CRL's URL, soft fail: %v", err)
	}
	// Two days later the ARL has long expired; the point serves the CA's
	// user CRL (its own counter: number 10), which lists client 5.
	p.clock.Advance(48 * time.Hour)
	p.serve(p.crl(10, []int64{5}))
	var revoked *RevokedError
	if err := v.VerifyConnection(p.state(leaf)); !errors.As(err, &revoked) {
		t.Fatalf("the user CRL (the ARL served once, two days ago, long expired) lists the client, who is accepted: %v (metrics %+v)", err, v.CRLMetrics())
	}
}

// The same (an ARL does not keep the user CRL out), without CRL numbers in
// play: the CA's user CRL carries an issuing distribution point with
// onlyContainsUserCerts (as ADCS and EJBCA can be set to) and a higher
// number than the ARL, and the ARL held does not refuse it, since the ARL
// never covered the leaf. Found when it was refused (ErrCRLScope: "fewer
// kinds than the CRL held"), leaving the leaf without a CRL until the ARL's
// nextUpdate (an offline root's: months).
func TestVerifierCRLAuthorityListHeldDoesNotRefuseTheUserOnlyCRLOfThePoint(t *testing.T) {
	p := newCRLPKI(t)
	p.serve(p.crl(5, nil, func(rl *x509.RevocationList) { rl.ExtraExtensions = []pkix.Extension{idpCAOnly()} }))
	v := p.verifier(false)
	leaf := p.leaf(5, leafOpts{})
	if err := v.VerifyConnection(p.state(leaf)); err != nil {
		t.Fatalf("the ARL at the user CRL's URL, soft fail: %v", err)
	}
	p.serve(p.crl(6, []int64{5}, func(rl *x509.RevocationList) { rl.ExtraExtensions = []pkix.Extension{crlIDP(p.url, true, false)} }))
	p.clock.Advance(61 * time.Minute) // the ARL is due for its refresh
	v.VerifyConnection(p.state(leaf))
	eventually(t, "the refresh", func() bool { return p.crlHits() == 2 && !v.crlRefreshing(p.url) })
	var revoked *RevokedError
	if err := v.VerifyConnection(p.state(leaf)); !errors.As(err, &revoked) {
		t.Fatalf("the CA's user CRL (onlyContainsUserCerts, number 6) lists the client, who is accepted: %v (metrics %+v)", err, v.CRLMetrics())
	}
}

// A CA that serves its user CRL and its authority revocation list at one
// URL (the one its client and CA certificates both name; or an attacker
// who alternates them): each is held in its own scope, for the kind of
// certificate it covers, and neither displaces, outnumbers or refuses the
// other. Under HardFail, the intermediate is checked on the ARL and the
// clients on the user CRL, and neither CRL is fetched again.
func TestVerifierCRLUserCRLAndAuthorityListOfOnePointAreHeldApart(t *testing.T) {
	p := newCRLPKI(t)
	cs := intermediateChain(t, p, newPointServer(t))
	p.serve(p.crl(500, nil, func(rl *x509.RevocationList) { rl.ExtraExtensions = []pkix.Extension{idpCAOnly()} }))
	v := p.verifier(true)
	if err := v.VerifyConnection(cs); err != nil {
		t.Fatalf("the intermediate, on the ARL: %v", err)
	}
	p.serve(p.crl(10, []int64{5}, func(rl *x509.RevocationList) { rl.ExtraExtensions = []pkix.Extension{crlIDP(p.url, true, false)} }))
	var revoked *RevokedError
	if err := v.VerifyConnection(p.state(p.leaf(5, leafOpts{}))); !errors.As(err, &revoked) {
		t.Fatalf("the revoked client, on the user CRL (number 10, below the ARL's 500): %v (metrics %+v)", err, v.CRLMetrics())
	}
	if err := v.VerifyConnection(p.state(p.leaf(6, leafOpts{}))); err != nil {
		t.Fatalf("a good client, HardFail: %v", err)
	}
	if err := v.VerifyConnection(cs); err != nil {
		t.Fatalf("the intermediate, after the user CRL was fetched at the ARL's URL: %v", err)
	}
	if m := v.CRLMetrics(); m.Held != 3 || p.crlHits() != 2 || m.Fetches[CRLFetchOK] != 3 {
		t.Fatalf("want the ARL, the user CRL and the intermediate's CRL held, the root's URL fetched twice: %d hits, %+v", p.crlHits(), m)
	}
}

// The CA certificates of a client's chain are checked against their CRLs.

// intermediateChain is the connection state of a client (serial 5) whose
// certificate an intermediate (serial 77, whose CRL distribution point is
// the root's CRL) issued; the intermediate's own CRL, at s, lists nothing.
func intermediateChain(t *testing.T, p *crlPKI, s *pointServer) tls.ConnectionState {
	inter, interKey := issueIntermediate(t, p, 77, []string{p.url})
	// The intermediate's own CRL, listing nothing.
	rl := &x509.RevocationList{Number: big.NewInt(1), ThisUpdate: p.clock.Now().Add(-time.Minute), NextUpdate: p.clock.Now().Add(24 * time.Hour)}
	interCRL, err := x509.CreateRevocationList(rand.Reader, rl, inter, interKey)
	if err != nil {
		t.Fatal(err)
	}
	s.serve("/int.crl", interCRL)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := p.clock.Now()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(5), Subject: pkix.Name{CommonName: "client of a revoked intermediate"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(30 * 24 * time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		CRLDistributionPoints: []string{s.url("/int.crl")}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, inter, key.Public(), interKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	cs := tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf, inter}, VerifiedChains: [][]*x509.Certificate{{leaf, inter, p.ca}}}
	return cs
}

// Each CA certificate below the root is checked against the CRL of its own
// distribution points, as nginx (ssl_crl: X509_V_FLAG_CRL_CHECK_ALL) and
// Envoy (unless only_verify_leaf_cert_crl) do: a client whose certificate
// was issued by an intermediate CA that the root has revoked (listed on the
// root's CRL, at the intermediate's CRL distribution point) is refused,
// under soft fail too (a revocation is refused whatever the policy). Found
// when only the leaf was checked.
func TestVerifierCRLRevokedIntermediateIsRefused(t *testing.T) {
	p := newCRLPKI(t)
	cs := intermediateChain(t, p, newPointServer(t))
	p.serve(p.crl(1, []int64{77})) // the root's CRL: the intermediate is revoked
	var revoked *RevokedError
	for _, hard := range []bool{true, false} {
		if err := p.verifier(hard).VerifyConnection(cs); !errors.As(err, &revoked) || revoked.Serial.Int64() != 77 {
			t.Fatalf("a client under an intermediate the root's CRL revokes, HardFail %v: %v (root CRL downloads %d)", hard, err, p.crlHits())
		}
	}
}

// An intermediate the root's CRL does not list is allowed; one whose CRL
// cannot be had is refused under HardFail, allowed under soft fail, as a
// leaf's is.
func TestVerifierCRLIntermediateSoftAndHardFail(t *testing.T) {
	p := newCRLPKI(t)
	cs := intermediateChain(t, p, newPointServer(t))
	if err := p.verifier(true).VerifyConnection(cs); err == nil {
		t.Fatal("HardFail, the root's CRL not to be had: accepted")
	} else if se := (*StapleError)(nil); !errors.As(err, &se) || !errors.Is(err, ErrHTTPStatus) {
		t.Fatalf("HardFail, the root's CRL not to be had: %v", err)
	}
	if err := p.verifier(false).VerifyConnection(cs); err != nil {
		t.Fatalf("soft fail, the root's CRL not to be had: %v", err)
	}
	p.serve(p.crl(1, []int64{78}))
	if err := p.verifier(true).VerifyConnection(cs); err != nil {
		t.Fatalf("HardFail, the root's CRL does not list the intermediate: %v", err)
	}
}
