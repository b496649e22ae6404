package stapler

import (
	"errors"
	"strings"
	"testing"

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
