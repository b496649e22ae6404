package stapler

import (
	"context"
	"crypto/tls"
	"fmt"
	"testing"

	"github.com/staplerkit/ocsp/responder"
)

// TestAttack2BoundRetiresListedCertificatesAtWrap: "Listed certificates
// never retire", but Wrap registers its certificates (addAll, which
// applies the bound) before it marks them listed: wrapping more
// certificates than WithMaxCertificates allows retires some of the very
// certificates being listed. They are then neither fetched at Wrap nor
// protected from retirement, and the first handshakes go unstapled.
func TestAttack2BoundRetiresListedCertificatesAtWrap(t *testing.T) {
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
