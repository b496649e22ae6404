package admin

import (
	"fmt"
	"sync"
	"testing"

	"github.com/staplerkit/ocsp/stapler"
)

// Held up (under -race): PUT racing PUT on /v1/ocsp and on a certificate,
// POST /v1/ocsp/test and GETs racing DELETE; every answer is a documented
// status, and the end state is one of the values written.
func TestAdminRequestsRacing(t *testing.T) {
	e := newEnv(t, on)
	e.wrap(e.leaf.Certificate)
	e.waitStapled(e.leaf)
	c := newAdmin(t, e)
	id := stapler.CertificateID(e.leaf.Cert.Raw)
	var wg sync.WaitGroup
	bad := make(chan string, 1000)
	for i := range 8 {
		wg.Go(func() {
			for j := range 10 {
				qf := 60 + 10*i + j
				if code, _, _, raw := c.do("PUT", "/v1/ocsp", fmt.Sprintf(`{"query_frequency": %d}`, qf)); code != 200 {
					bad <- fmt.Sprintf("PUT: %d %s", code, raw)
				}
				code, _, _, raw := c.do("PATCH", "/v1/certificates/"+id, fmt.Sprintf(`{"ocsp_stapling": {"cache_ttl": %d}}`, qf))
				if code != 200 && code != 404 {
					bad <- fmt.Sprintf("PATCH: %d %s", code, raw)
				}
				code, _, _, raw = c.do("POST", "/v1/ocsp/test?id="+id, "")
				if code != 200 && code != 404 {
					bad <- fmt.Sprintf("test: %d %s", code, raw)
				}
				if i == 7 && j == 5 {
					if code, _, _, raw := c.do("DELETE", "/v1/certificates/"+id, ""); code != 204 && code != 404 {
						bad <- fmt.Sprintf("DELETE: %d %s", code, raw)
					}
				}
			}
		})
	}
	wg.Wait()
	close(bad)
	for b := range bad {
		t.Error(b)
	}
	if qf := e.s.Get().QueryFrequency; qf < 60 || qf > 60+70+9 {
		t.Fatalf("query_frequency %d was never written", qf)
	}
}
