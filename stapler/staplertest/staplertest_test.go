package staplertest_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/staplerkit/ocsp/responder"
	"github.com/staplerkit/ocsp/stapler"
	"github.com/staplerkit/ocsp/stapler/staplertest"
)

func TestHelpers(t *testing.T) {
	pki := staplertest.NewPKI()
	defer pki.Close()
	good := pki.Issue("good.test")
	down := pki.Issue("down.test")
	pki.Responder.SetSerialFault(down.Cert.SerialNumber, responder.Fault{Kind: responder.FaultHTTP500})
	must := pki.IssueMustStaple("must.test")
	s := pki.NewStapler()
	defer s.Close()
	srv := staplertest.NewTLSServer(s.Wrap(&tls.Config{Certificates: []tls.Certificate{good.Certificate, down.Certificate, must.Certificate}}), http.NotFoundHandler())
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"good.test": "GOOD", "down.test": "NONE", "": "GOOD"} {
		st, err := pki.Check(srv, name)
		if err != nil || st.Status != want {
			t.Errorf("%q: %v %v, want %s", name, st, err, want)
		}
	}
	// RefreshNow reports the responder's failure, and still staples the rest.
	pki.Revoke(good, staplertest.CessationOfOperation)
	pki.Revoke(must, staplertest.KeyCompromise)
	if err := staplertest.RefreshNow(ctx, s); err == nil {
		t.Error("RefreshNow hid the failing responder")
	}
	if st, err := pki.Check(srv, "good.test"); err != nil || st.Status != "REVOKED" || st.Response.RevocationReason != int(staplertest.CessationOfOperation) {
		t.Fatalf("good.test after the revocation: %v %v", st, err)
	}
	for _, name := range []string{"good.test", ""} {
		if _, err := pki.Dial(srv, name, &stapler.Verifier{}); !errors.As(err, new(*stapler.RevokedError)) {
			t.Fatalf("%q: a Verifier client connected to a revoked server: %v", name, err)
		}
	}
	// A revoked must-staple leaf is refused by the server itself.
	if st, err := pki.Check(srv, "must.test"); err == nil {
		t.Fatalf("must.test revoked, yet the handshake succeeded: %v", st)
	}
}
