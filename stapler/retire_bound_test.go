package stapler

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"os/exec"
	"runtime/debug"
	"testing"

	"github.com/staplerkit/ocsp/responder"
)

// TestTheBoundNeverRetiresListedCertificatesAtWrap: "Listed certificates
// never retire", but Wrap registers its certificates (addAll, which
// applies the bound) before it marks them listed: wrapping more
// certificates than WithMaxCertificates allows retires some of the very
// certificates being listed. They are then neither fetched at Wrap nor
// protected from retirement, and the first handshakes go unstapled.
func TestTheBoundNeverRetiresListedCertificatesAtWrap(t *testing.T) {
	e := newEnv(t, on, WithMaxCertificates(2))
	var certs []tls.Certificate
	for i := range 4 {
		l, err := e.srv.Issue(responder.LeafOptions{DNSNames: []string{fmt.Sprintf("c%d.test", i)}})
		if err != nil {
			t.Fatal(err)
		}
		certs = append(certs, l.Certificate)
	}
	e.s.Wrap(&tls.Config{Certificates: certs})
	if n := e.s.Metrics().Retired; n != 0 {
		t.Errorf("%d listed certificates retired at Wrap, want 0", n)
	}
	if n := len(e.s.Status()); n != len(certs) {
		t.Errorf("%d certificates managed after wrapping %d listed ones", n, len(certs))
	}
	ctx, cancel := context.WithTimeout(context.Background(), hangLimit)
	defer cancel()
	if err := e.s.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	stapled := 0
	for _, st := range e.s.Status() {
		if st.Stapled {
			stapled++
		}
	}
	if stapled != len(certs) {
		t.Fatalf("%d of %d listed certificates stapled after Ready", stapled, len(certs))
	}
}

// TestTheBoundNeverRecursesWhenListedCertificatesFillIt: with as many listed
// certificates as WithMaxCertificates allows, a certificate found on its
// own (the application's GetCertificate) is retired by the bound in the
// very add that registers it; serveManaged sees it removed and serves it
// "afresh": add, retired again, and so on, without end — a stack overflow,
// fatal to the process, on one handshake for the name. Run in a child
// process so that the crash fails this test alone.
func TestTheBoundNeverRecursesWhenListedCertificatesFillIt(t *testing.T) {
	if os.Getenv("ATTACK2_CHILD") != "1" {
		cmd := exec.Command(os.Args[0], "-test.run=^TestTheBoundNeverRecursesWhenListedCertificatesFillIt$", "-test.timeout=2m")
		cmd.Env = append(os.Environ(), "ATTACK2_CHILD=1")
		out, err := cmd.CombinedOutput()
		if err != nil {
			if i := bytes.Index(out, []byte("stack overflow")); i >= 0 {
				out = out[max(0, i-200):min(len(out), i+100)]
			} else if len(out) > 1000 {
				out = out[:1000]
			}
			t.Fatalf("one handshake for a certificate from GetCertificate, with the bound reached by listed certificates: %v\n%s", err, out)
		}
		return
	}
	debug.SetMaxStack(64 << 20) // the recursion overflows in seconds, not minutes
	e := newEnv(t, on, WithMaxCertificates(1))
	other, err := e.srv.Issue(responder.LeafOptions{DNSNames: []string{"other.test"}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := tlsConfigFor(e.leaf) // one listed certificate: the bound
	cfg.GetCertificate = func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
		if h.ServerName == "other.test" {
			return &other.Certificate, nil
		}
		return nil, nil
	}
	addr := e.serve(e.s.Wrap(cfg))
	if _, _, err := e.handshake(addr, func(c *tls.Config) { c.ServerName = "other.test" }); err != nil {
		t.Fatal(err)
	}
}
