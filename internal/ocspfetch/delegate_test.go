package ocspfetch

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/staplerkit/ocsp/internal/ocspcheck"

	"golang.org/x/crypto/ocsp"

	"github.com/staplerkit/ocsp/responder"
)

// TestACancelledCallerDoesNotDecideTheDelegateCheck: a caller that gives up
// on a delegate check while its request is in flight stops waiting, but the
// request goes on and its answer (revoked) is what every later caller gets,
// not an undetermined status cached for DelegateRecheck.
func TestACancelledCallerDoesNotDecideTheDelegateCheck(t *testing.T) {
	ca, err := responder.NewCA(responder.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	delegate, err := ca.NewDelegate(responder.DelegateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r := responder.New(ca)
	r.SetStatus(delegate.Cert.SerialNumber, responder.Revoked(time.Now().Add(-time.Hour), ocsp.KeyCompromise))
	arrived, release := make(chan struct{}, 1), make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		select {
		case arrived <- struct{}{}:
			<-release // the first request is held until the impatient caller has left
		default:
		}
		r.ServeHTTP(w, req)
	}))
	defer srv.Close()
	f := New(Config{Client: srv.Client(), Verify: ocspcheck.Options{Skew: 5 * time.Minute}, Base: context.Background(),
		Timeout: func() time.Duration { return hangLimit }})

	impatient, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.checkDelegate(impatient, delegate.Cert, ca.Cert, srv.URL, time.Now()) }()
	select {
	case <-arrived:
	case <-time.After(hangLimit):
		t.Fatal("the delegate check never reached the responder")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("the impatient caller: %v, want nil (undetermined for it)", err)
		}
	case <-time.After(hangLimit):
		t.Fatal("the impatient caller kept waiting after its context ended")
	}
	close(release)

	ctx, cancel2 := context.WithTimeout(context.Background(), hangLimit)
	defer cancel2()
	if err := f.checkDelegate(ctx, delegate.Cert, ca.Cert, srv.URL, time.Now()); !errors.Is(err, ocspcheck.ErrUnauthorizedSigner) {
		t.Fatalf("the next caller: %v, want the delegate's revocation (the cancelled attempt was cached)", err)
	}
}

// hangLimit is how long a test waits for what must happen: only a hang
// reaches it.
const hangLimit = time.Minute
