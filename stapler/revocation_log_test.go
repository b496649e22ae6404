package stapler

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/staplerkit/ocsp/responder"
)

// A revocation is logged at WARN, naming the certificate's subject, serial
// and ID: the line an operator's alerting must not miss.
func TestARevocationIsLoggedAtWarnNamingTheCertificate(t *testing.T) {
	var logs syncBuffer
	e := newEnv(t, on, WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	addr := e.wrapAndServe(e.leaf.Certificate)
	e.mustGetStaple(addr, e.leaf, ocsp.Good)
	e.r.SetStatus(e.leaf.Cert.SerialNumber, responder.Revoked(e.clock.Now().Add(-time.Minute), ocsp.KeyCompromise))
	if _, err := e.s.Test(t.Context(), CertificateID(e.leaf.Cert.Raw)); err != nil {
		t.Fatal(err)
	}
	want := []string{"level=WARN", `msg="ocsp: certificate revoked"`, "id=" + CertificateID(e.leaf.Cert.Raw),
		"serial=" + fmt.Sprintf("%x", e.leaf.Cert.SerialNumber), "subject="}
	eventually(t, "the revocation's log line", func() bool {
		for _, line := range strings.Split(logs.String(), "\n") {
			ok := true
			for _, w := range want {
				ok = ok && strings.Contains(line, w)
			}
			if ok {
				return true
			}
		}
		return false
	})
}
