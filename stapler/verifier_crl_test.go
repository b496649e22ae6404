package stapler

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http"
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
	// The CRL held answers at once, and a refresh starts behind it.
	if err := v.VerifyConnection(p.state(leaf)); err != nil {
		t.Fatalf("the CRL held, due for refresh: %v", err)
	}
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
