package stapler

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/staplerkit/ocsp/responder"
)

// Staple "returns the DER response the certificate is stapled with now,
// and when it stops being served", and the staple hook's Expires is "when
// Staple stops being served". With the system clock, handshakes withdraw a
// staple coarseMargin (a second) before its expiry (wrap.go, usable and
// hitView); Staple and the hook read the exact clock and report the staple
// as served, with the later expiry, through that last second. A consumer
// that relies on Staple (an admin GET of ocsp_response, a sidecar holding a
// copy "not used past Expires") keeps serving a staple the Stapler's own
// handshakes no longer carry. Staple and a handshake made at the same
// moment must agree.
func TestStapleAgreesWithAHandshakeInTheStaplesLastSecond(t *testing.T) {
	ca, err := responder.NewCA(responder.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r := responder.New(ca) // the system clock, as the Stapler's
	// The responder refuses every query: the pushed staple stays, and no
	// refresh replaces it.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	leaf, err := ca.Issue(responder.LeafOptions{OCSPServer: []string{srv.URL}})
	if err != nil {
		t.Fatal(err)
	}
	r.SetStatus(leaf.Cert.SerialNumber, responder.Good())
	// Lifetime 2s from a thisUpdate truncated to the second: nextUpdate
	// falls 1 to 2 seconds from now.
	r.SetWindow(responder.Window{Lifetime: 2 * time.Second})

	e := &env{t: t, ca: ca, r: r}
	s, err := New(on, WithLogger(quietLogger()), WithColdWait(0))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	e.s = s
	addr := e.wrapAndServe(leaf.Certificate)
	id := CertificateID(leaf.Cert.Raw)

	for attempt := 0; attempt < 20; attempt++ {
		raw, err := r.Respond(leaf.Cert)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Push(t.Context(), id, raw); err != nil {
			continue // already expired (a slow machine): another
		}
		_, expires, err := s.Staple(id)
		if err != nil {
			continue
		}
		// Into the staple's last second, by the wall clock.
		time.Sleep(time.Until(expires.Add(-coarseMargin / 2)))
		staple, expiresNow, staErr := s.Staple(id)
		served, _, hsErr := e.handshake(addr)
		if hsErr != nil {
			t.Fatalf("handshake: %v", hsErr)
		}
		if !time.Now().Before(expires) {
			continue // the machine was too slow to look within the second: again
		}
		if staErr == nil && !bytes.Equal(served, staple) {
			t.Fatalf("Staple reports a staple served until %s, but a handshake at %s, before that, carried %d bytes (the handshake path withdraws it %s early)",
				expiresNow.Format(time.StampMilli), time.Now().Format(time.StampMilli), len(served), coarseMargin)
		}
		return
	}
	t.Skip("could not look at the staple within its last second")
}
