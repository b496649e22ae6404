package stapler

import (
	"errors"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/staplerkit/ocsp/config"
)

// waitStapleChange waits for the hook's next call about id.
func waitStapleChange(t *testing.T, changes chan StapleChange, id string) StapleChange {
	t.Helper()
	deadline := time.After(hangLimit)
	for {
		select {
		case c := <-changes:
			if c.ID == id {
				return c
			}
		case <-deadline:
			t.Fatal("the staple hook was not called")
		}
	}
}

// Staple(id) and the staple hook say what handshakes are stapled with.
// Turning OCSP off (Update, PUT /v1/ocsp) or stapling off for one
// certificate (SetStapling, PATCH /v1/certificates/{id}) stops the stapling
// of handshakes at once: Staple must then say ErrNoStaple, and the hook
// must report the staple withdrawn, or whatever feeds other servers from
// them (examples/ocspfiles: nginx and HAProxy, the admin API's GET
// .../ocsp_response) keeps stapling what the operator turned off.
func TestStapleAndHookFollowOCSPTurnedOff(t *testing.T) {
	changes := make(chan StapleChange, 100)
	e := newEnv(t, on, WithStapleHook(func(c StapleChange) { changes <- c }))
	addr := e.wrapAndServe(e.leaf.Certificate)
	id := CertificateID(e.leaf.Cert.Raw)
	e.mustGetStaple(addr, e.leaf, ocsp.Good)
	if c := waitStapleChange(t, changes, id); c.Staple == nil {
		t.Fatal("the hook reported no staple once stapled")
	}

	off := false
	if _, err := e.s.Update(config.OCSPUpdate{OCSPFunctionality: &off}); err != nil {
		t.Fatal(err)
	}
	e.mustGetNoStaple(addr)
	if st := e.status(e.leaf); st.Stapled {
		t.Fatalf("Status says stapled with OCSP off: %+v", st)
	}
	if der, _, err := e.s.Staple(id); !errors.Is(err, ErrNoStaple) {
		t.Errorf("with OCSP off, handshakes get no staple, but Staple returns %d bytes (err %v)", len(der), err)
	}
	if c := waitStapleChange(t, changes, id); c.Staple != nil {
		t.Errorf("with OCSP off, the hook reported a staple of %d bytes", len(c.Staple))
	}
}

func TestStapleAndHookFollowStaplingDisabledForTheCertificate(t *testing.T) {
	changes := make(chan StapleChange, 100)
	e := newEnv(t, on, WithStapleHook(func(c StapleChange) { changes <- c }))
	addr := e.wrapAndServe(e.leaf.Certificate)
	id := CertificateID(e.leaf.Cert.Raw)
	e.mustGetStaple(addr, e.leaf, ocsp.Good)
	if c := waitStapleChange(t, changes, id); c.Staple == nil {
		t.Fatal("the hook reported no staple once stapled")
	}

	if err := e.s.SetStapling(id, config.Stapling{Enabled: false}); err != nil {
		t.Fatal(err)
	}
	e.mustGetNoStaple(addr)
	if der, _, err := e.s.Staple(id); !errors.Is(err, ErrNoStaple) {
		t.Errorf("with stapling disabled, handshakes get no staple, but Staple returns %d bytes (err %v)", len(der), err)
	}
	if c := waitStapleChange(t, changes, id); c.Staple != nil {
		t.Errorf("with stapling disabled, the hook reported a staple of %d bytes", len(c.Staple))
	}
}

// A pushed response that will not be stapled (OCSP off) is not reported
// as accepted and stapled: Push says so, and Staple does not return it.
func TestPushWithOCSPOffIsNotReportedAsStapled(t *testing.T) {
	e := newEnv(t, on)
	addr := e.wrapAndServe(e.leaf.Certificate)
	id := CertificateID(e.leaf.Cert.Raw)
	e.mustGetStaple(addr, e.leaf, ocsp.Good)
	off := false
	if _, err := e.s.Update(config.OCSPUpdate{OCSPFunctionality: &off}); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Minute)
	st, err := e.s.Push(t.Context(), id, mustFetchRaw(t, e, e.leaf))
	e.mustGetNoStaple(addr)
	if err == nil {
		if der, _, serr := e.s.Staple(id); serr == nil {
			t.Fatalf("Push with OCSP off returned no error (state %s, stapled %v) and Staple returns its %d bytes, yet handshakes get no staple", st.State, st.Stapled, len(der))
		}
	}
}
