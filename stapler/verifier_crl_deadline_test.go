package stapler

// How the deadline of one check is shared between distribution points.
// From an attacker session's findings on issue 29 (CRL checking).

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// One hanging distribution point does not take the whole deadline: each
// point is waited for at most its share of the time left. Found by an
// attack session: a certificate naming two points, the first hanging (an
// attacker's mirror, or one down), never had its second asked before the
// deadline: every handshake of a good client was refused under HardFail,
// and a revoked one accepted without it, although the second point
// answered at once.
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
// hanging responder, whose request ends with FetchTimeout and whose
// failure is remembered. Found by an attack session: a CRL download is
// given at least 30 seconds (crlcache.MinFetchTimeout), and every handshake in
// those 30 seconds joined it and waited its whole FetchTimeout again: with
// a leaf's or an intermediate's point hanging, every client's handshake
// took FetchTimeout, 30 seconds out of every 35, for all clients of the
// CA. The bound is half of a FetchTimeout of seconds: a handshake that
// does not wait takes milliseconds, even on a loaded machine.
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
