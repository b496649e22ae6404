package stapler

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/staplerkit/ocsp/config"
	"golang.org/x/crypto/ocsp"
)

func TestCacheTTLBelow60IsRejected(t *testing.T) {
	e := newEnv(t, on)
	e.wrapAndServe(e.leaf.Certificate)
	id := CertificateID(e.leaf.Cert.Raw)
	before, _ := e.s.Stapling(id)
	if err := e.s.SetStapling(id, config.Stapling{Enabled: true, CacheTTL: 59}); !errors.Is(err, config.ErrInvalidSchema) {
		t.Fatalf("got %v", err)
	}
	if after, _ := e.s.Stapling(id); after != before {
		t.Fatalf("settings changed to %+v", after)
	}
}

func TestUpdateIsAtomicUnderConcurrentHandshakes(t *testing.T) {
	e := newEnv(t, on)
	addr := e.wrapAndServe(e.leaf.Certificate)
	e.mustGetStaple(addr, e.leaf, ocsp.Good)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var handshakes atomic.Int64
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, _, err := e.handshake(addr); err != nil {
					t.Error(err)
					return
				}
				handshakes.Add(1)
			}
		}()
	}
	for i := 0; i < 50 || handshakes.Load() < 20; i++ {
		i := i % 1000
		before := e.s.Get()
		bad := config.OCSPUpdate{QueryFrequency: ptr(120 + i), RecoveryMaxTries: ptr(1000)}
		got, err := e.s.Update(bad)
		if !errors.Is(err, config.ErrInvalidSchema) || got != before || e.s.Get() != before {
			t.Fatalf("rejected update changed the config: %+v -> %+v (%v)", before, got, err)
		}
		got, err = e.s.Update(config.OCSPUpdate{QueryFrequency: ptr(120 + i), ResponseTimeout: ptr(1 + i%5)})
		if err != nil || got.QueryFrequency != 120+i || got.ResponseTimeout != 1+i%5 || e.s.Get() != got {
			t.Fatalf("accepted update: %+v %v", got, err)
		}
	}
	close(stop)
	wg.Wait()
	if handshakes.Load() == 0 {
		t.Fatal("no handshakes ran")
	}
}

func TestUpdateTakesEffectAtOnce(t *testing.T) {
	e := newEnv(t, config.OCSP{OCSPFunctionality: false})
	addr := e.wrapAndServe(e.leaf.Certificate)
	e.mustGetNoStaple(addr)
	if e.r.RequestCount() != 0 {
		t.Fatal("fetched while off")
	}
	got, err := e.s.Update(config.OCSPUpdate{OCSPFunctionality: ptr(true)})
	if err != nil || !got.OCSPFunctionality || got.ResponderURL != e.srv.URL {
		t.Fatalf("%+v %v", got, err)
	}
	e.mustGetStaple(addr, e.leaf, ocsp.Good)
	st := e.waitQueries(e.leaf, 1)
	if d := st.NextRefresh.Sub(e.clock.Now()); d < 50*time.Minute {
		t.Fatalf("next refresh in %v", d)
	}
	// A shorter query_frequency moves the refresh earlier.
	if _, err := e.s.Update(config.OCSPUpdate{QueryFrequency: ptr(300)}); err != nil {
		t.Fatal(err)
	}
	if d := e.status(e.leaf).NextRefresh.Sub(e.clock.Now()); d > 300*time.Second {
		t.Fatalf("next refresh in %v after query_frequency 300", d)
	}
	e.clock.Advance(300 * time.Second)
	e.waitQueries(e.leaf, 2)
	// Off: no staple and no fetching.
	if _, err := e.s.Update(config.OCSPUpdate{OCSPFunctionality: ptr(false)}); err != nil {
		t.Fatal(err)
	}
	e.mustGetNoStaple(addr)
	n := e.r.RequestCount()
	e.clock.Advance(2 * time.Hour)
	time.Sleep(50 * time.Millisecond)
	if e.r.RequestCount() != n {
		t.Fatal("fetched while off")
	}
	if st := e.status(e.leaf); st.State != StateDisabled {
		t.Fatalf("state %s", st.State)
	}
}

func TestDefaultStaplingIsValidated(t *testing.T) {
	for _, st := range []config.Stapling{{Enabled: true, CacheTTL: 30}, {Enabled: true, CacheTTL: -1}} {
		_, err := New(on, WithDefaultStapling(st), WithLogger(quietLogger()))
		var cerr *config.Error
		if !errors.As(err, &cerr) || cerr.Code != config.CodeInvalidSchema {
			t.Errorf("WithDefaultStapling(%+v): got %v, want invalid_schema", st, err)
		}
	}
}

// WithClockSkew follows the convention of the Verifier's and VerifyOptions'
// ClockSkew (issue 16's "one option convention": zero means 5 minutes; a
// negative value allows none): with WithClockSkew(-1), a response whose
// thisUpdate is a minute in the future is not stapled, as VerifyResponse
// with ClockSkew -1 refuses it (ErrNotYetValid). Found when the Stapler
// ignored a negative value (keeping 5 minutes) and took zero as none.
func TestWithClockSkewNegativeMeansNoneAsOnTheVerifier(t *testing.T) {
	e := newEnv(t, on, WithClockSkew(-1))
	// The responder's clock runs two minutes ahead: thisUpdate (backdated a
	// minute) is a minute ahead of ours.
	e.r.SetClock(func() time.Time { return e.clock.Now().Add(2 * time.Minute) })
	raw := mustFetchRaw(t, e, e.leaf)
	if _, err := VerifyResponse(raw, e.leaf.Cert, e.ca.Cert, VerifyOptions{CurrentTime: e.clock.Now(), ClockSkew: -1}); !errors.Is(err, ErrNotYetValid) {
		t.Fatalf("VerifyResponse with ClockSkew -1: %v, want ErrNotYetValid", err)
	}
	e.wrapAndServe(e.leaf.Certificate)
	st := e.waitQueries(e.leaf, 1)
	if st.Stapled {
		t.Fatalf("WithClockSkew(-1) stapled a response whose thisUpdate is a minute ahead (5 minutes of skew allowed), while ClockSkew: -1 on VerifyOptions and the Verifier allows none")
	}
}
