package admin

import (
	"testing"

	"github.com/staplerkit/ocsp/config"
)

// While no response is held (OCSP off: nothing queried yet), the status
// object has no cert_status at all, rather than a value outside the spec's
// enumeration (GOOD, REVOKED, UNKNOWN).
func TestStatusWithNothingHeldHasNoCertStatus(t *testing.T) {
	e := newEnv(t, config.OCSP{})
	e.wrap(e.leaf.Certificate)
	c := newAdmin(t, e)
	code, _, obj, raw := c.do("GET", "/v1/ocsp/status", "")
	if code != 200 {
		t.Fatalf("GET /v1/ocsp/status: %d %s", code, raw)
	}
	if v, ok := obj["cert_status"]; ok {
		t.Fatalf("cert_status %q with nothing held: %s", v, raw)
	}
}
