package stapler

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/ocsp"

	"github.com/staplerkit/ocsp/config"
	"github.com/staplerkit/ocsp/responder"
)

// hostileIDs are certificate IDs from outside that name no certificate.
func hostileIDs(valid string) []string {
	return []string{
		valid + "a",                        // 65 hex digits
		valid + valid,                      // 128
		strings.Repeat("f", 10_000),        // very long
		strings.ToUpper(valid),             // upper case: not the canonical form
		valid[:63],                         // too short
		valid[:63] + "g",                   // not hex
		valid[:62] + "\x00\x00",            // NULs
		"../" + valid[3:],                  // a path
		valid + "/",                        // a trailing slash
		"",                                 // none, with two certificates
		strings.Repeat("\xff", 64),         // not UTF-8
		valid[:32] + "\u00e9" + valid[34:], // a non-ASCII rune in 64 bytes
	}
}

func TestHostileIDsNeverPanic(t *testing.T) {
	e := newEnv(t, on)
	second, err := e.srv.Issue(responder.LeafOptions{DNSNames: []string{"second.test"}})
	if err != nil {
		t.Fatal(err)
	}
	e.wrapAndServe(e.leaf.Certificate, second.Certificate)
	e.waitStapled(e.leaf)
	valid := CertificateID(e.leaf.Cert.Raw)
	for _, id := range hostileIDs(valid) {
		calls := map[string]error{}
		_, calls["StatusOf"] = e.s.StatusOf(id)
		_, calls["Test"] = e.s.Test(t.Context(), id)
		_, calls["Stapling"] = e.s.Stapling(id)
		calls["SetStapling"] = e.s.SetStapling(id, config.Stapling{Enabled: true})
		_, calls["UpdateStapling"] = e.s.UpdateStapling(id, config.StaplingUpdate{Set: true, Remove: true})
		calls["SetPolicy"] = e.s.SetPolicy(id, Strict)
		calls["Remove"] = e.s.Remove(id)
		for name, err := range calls {
			if !errors.Is(err, ErrUnknownCertificate) {
				t.Errorf("%s(%q): got %v, want ErrUnknownCertificate", name, brief(id), err)
			}
		}
	}
	if !e.status(e.leaf).Stapled || len(e.s.Status()) != 2 {
		t.Fatal("hostile IDs changed the managed certificates")
	}
}

func brief(id string) string {
	if len(id) > 70 {
		return id[:70] + "..."
	}
	return id
}

// TestDisabledThenRemovedIsManagedAfresh: Remove always means "managed
// afresh when served again", even for a certificate whose stapling was off.
func TestDisabledThenRemovedIsManagedAfresh(t *testing.T) {
	e := newEnv(t, on)
	addr := e.wrapAndServe(e.leaf.Certificate)
	e.waitStapled(e.leaf)
	id := CertificateID(e.leaf.Cert.Raw)
	if err := e.s.SetStapling(id, config.Stapling{Enabled: false}); err != nil {
		t.Fatal(err)
	}
	e.mustGetNoStaple(addr)
	if err := e.s.Remove(id); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.handshake(addr); err != nil { // served again: managed afresh
		t.Fatal(err)
	}
	e.waitStapled(e.leaf)
	if st, _ := e.s.Stapling(id); !st.Enabled {
		t.Fatalf("managed afresh with %+v, want the defaults (enabled)", st)
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

// lockedBuffer is a log sink safe for the Stapler's goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestOCSPOffIsLoggedOnce(t *testing.T) {
	var logs lockedBuffer
	s, err := New(config.OCSP{}, WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ca, _ := responder.NewCA(responder.CAOptions{})
	leaf, _ := ca.Issue(responder.LeafOptions{OCSPServer: []string{"http://127.0.0.1:1/"}})
	cfg := s.Wrap(tlsConfigFor(leaf))
	for range 3 {
		cfg.GetCertificate(helloFor())
	}
	out := logs.String()
	if n := strings.Count(out, "OCSP is off"); n != 1 || !strings.Contains(out, "level=INFO") || !strings.Contains(out, "ocsp_functionality") {
		t.Fatalf("want one Info line naming ocsp_functionality, got:\n%s", out)
	}
}

// TestOneLeafInTwoConfigsAllocatesNothing: handshakes alternating between
// two wrapped configs that list the same leaf take no lock and allocate
// nothing, and both see a new staple at once.
func TestOneLeafInTwoConfigsAllocatesNothing(t *testing.T) {
	e := newEnv(t, on)
	a := e.s.Wrap(&tls.Config{Certificates: []tls.Certificate{e.leaf.Certificate}})
	b := e.s.Wrap(&tls.Config{Certificates: []tls.Certificate{e.leaf.Certificate}})
	hello := &tls.ClientHelloInfo{ServerName: "localhost"}
	for _, cfg := range []*tls.Config{a, b} {
		if c, err := cfg.GetCertificate(hello); err != nil || c.OCSPStaple == nil {
			t.Fatalf("not stapled: %v", err)
		}
	}
	if n := testing.AllocsPerRun(1000, func() { a.GetCertificate(hello); b.GetCertificate(hello) }); n != 0 {
		t.Fatalf("%v allocations per pair of handshakes, want 0", n)
	}
	e.r.SetStatus(e.leaf.Cert.SerialNumber, responder.Revoked(e.clock.Now(), 1))
	if _, err := e.s.Test(t.Context(), CertificateID(e.leaf.Cert.Raw)); err != nil {
		t.Fatal(err)
	}
	for name, cfg := range map[string]*tls.Config{"first": a, "second": b} {
		c, err := cfg.GetCertificate(hello)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := ocsp.ParseResponseForCert(c.OCSPStaple, e.leaf.Cert, e.ca.Cert)
		if err != nil || resp.Status != ocsp.Revoked {
			t.Fatalf("the %s config staples %v (%v), want the revocation", name, resp, err)
		}
	}
}

// TestReadyWaitsForEveryFirstAttempt: after Ready, every certificate known
// has been stapled or has failed with a reason; a hanging responder holds
// Ready up until its context ends.
func TestReadyWaitsForEveryFirstAttempt(t *testing.T) {
	e := newEnv(t, on)
	down, err := e.srv.Issue(responder.LeafOptions{DNSNames: []string{"down.test"}})
	if err != nil {
		t.Fatal(err)
	}
	e.r.SetSerialFault(down.Cert.SerialNumber, responder.Fault{Kind: responder.FaultHTTP500})
	var certs []tls.Certificate
	certs = append(certs, e.leaf.Certificate, down.Certificate)
	for i := range 20 {
		l, err := e.srv.Issue(responder.LeafOptions{DNSNames: []string{fmt.Sprintf("r%d.test", i)}})
		if err != nil {
			t.Fatal(err)
		}
		certs = append(certs, l.Certificate)
	}
	e.s.Wrap(&tls.Config{Certificates: certs})
	if err := e.s.Ready(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, st := range e.s.Status() {
		switch {
		case st.SNIs[0] == "down.test":
			if st.Stapled || st.LastError == "" {
				t.Fatalf("down.test after Ready: %+v", st)
			}
		case !st.Stapled:
			t.Fatalf("%s not stapled after Ready: %+v", st.SNIs[0], st)
		}
	}

	hang, err := e.srv.Issue(responder.LeafOptions{DNSNames: []string{"hang.test"}})
	if err != nil {
		t.Fatal(err)
	}
	e.r.SetSerialFault(hang.Cert.SerialNumber, responder.Fault{Kind: responder.FaultHang})
	e.s.Wrap(tlsConfigFor(hang))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := e.s.Ready(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Ready with a hanging responder and a done context: %v", err)
	}
}
