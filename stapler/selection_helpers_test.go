package stapler

import (
	"crypto/tls"
	"reflect"
	"testing"
	"unsafe"

	"github.com/staplerkit/ocsp/responder"
)

// attack6Certs is a list of ECDSA and RSA certificates for overlapping
// names, exact and wildcard, issued by e's CA.
func attack6Certs(e *env) []tls.Certificate {
	issue := func(kt responder.KeyType, names ...string) tls.Certificate {
		return e.mustIssue(kt, names...).Certificate
	}
	return []tls.Certificate{
		issue(responder.ECDSA, "other.test"),
		issue(responder.RSA, "a.test"),
		issue(responder.ECDSA, "a.test"),
		issue(responder.ECDSA, "*.b.test"),
		issue(responder.RSA, "x.b.test"),
		issue(responder.RSA, "c.test"),
	}
}

// setHelloConfig sets the unexported config of a hello, as crypto/tls does
// for the connection's config (the one SupportsCertificate consults, and
// selection's caches are keyed by).
func setHelloConfig(t testing.TB, h *tls.ClientHelloInfo, cfg *tls.Config) {
	t.Helper()
	f, ok := reflect.TypeFor[tls.ClientHelloInfo]().FieldByName("config")
	if !ok || len(f.Index) != 1 || f.Type != reflect.TypeFor[*tls.Config]() {
		t.Skip("no config field in tls.ClientHelloInfo")
	}
	*(*unsafe.Pointer)(unsafe.Add(unsafe.Pointer(h), f.Offset)) = unsafe.Pointer(cfg)
}
