package cli

import (
	"log/slog"
	"testing"
	"time"

	"github.com/staplerkit/ocsp/config"
)

func TestSplitOverrideTakesURLsWithQueries(t *testing.T) {
	for in, want := range map[string][2]string{
		"http://ocsp.internal/ca=1=http://proxy.test/":       {"http://ocsp.internal/ca=1", "http://proxy.test/"},
		"http://ocsp.internal/?ca=1=https://proxy.test/?q=2": {"http://ocsp.internal/?ca=1", "https://proxy.test/?q=2"},
		"http://ocsp.internal/?ca=1=":                        {"http://ocsp.internal/?ca=1", ""},
		"http://a.test/=http://b.test/":                      {"http://a.test/", "http://b.test/"},
	} {
		from, to, ok := splitOverride(in)
		if !ok || from != want[0] || to != want[1] {
			t.Errorf("%q: got %q, %q, %v; want %q, %q", in, from, to, ok, want[0], want[1])
		}
	}
	for _, bad := range []string{"no-equals-sign", "http://a.test/=ftp://b.test/", "=http://b.test/"} {
		if _, _, ok := splitOverride(bad); ok {
			t.Errorf("%q accepted", bad)
		}
	}
}

// POST /v1/ocsp/test waits for the responder for up to response_timeout,
// which may be raised to its maximum at any time: the admin listener must
// still be writing its answer then.
func TestAdminListenerOutlastsTheLongestTestQuery(t *testing.T) {
	srv := newAdminServer(nil, slog.Default())
	if longest := config.MaxResponseTimeout * time.Second; srv.WriteTimeout <= longest+10*time.Second {
		t.Fatalf("the admin listener's write timeout (%v) does not outlast a test query of response_timeout %v", srv.WriteTimeout, longest)
	}
}
