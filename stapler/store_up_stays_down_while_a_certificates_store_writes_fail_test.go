package stapler

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/staplerkit/ocsp/cache"
	"github.com/staplerkit/ocsp/responder"
)

// Metrics().Store.Up (store_up) is documented as 1 only while the store
// answered "for every certificate's keys". With a DirStore whose file for
// one certificate cannot be written (here a directory stands where the
// file goes; in production a file left by a tool run as another user,
// refused with ErrInsecureDir), the other certificates' writes succeeding
// must not report the store up: an alert on store_up == 0 would clear
// while that certificate's response is never persisted, and a restart
// queries the responder for it.
func TestStoreUpStaysDownWhileACertificatesStoreWritesFail(t *testing.T) {
	dir := t.TempDir()
	e := newEnv(t, on, WithStore(cache.DirStore(dir)))
	a := CertificateID(e.leaf.Cert.Raw)
	if err := os.MkdirAll(filepath.Join(dir, a, "in-the-way"), 0o700); err != nil {
		t.Fatal(err)
	}
	e.wrapAndServe(e.leaf.Certificate)
	e.waitStapled(e.leaf)
	eventually(t, "the failed write of the first certificate", func() bool {
		m := e.s.Metrics()
		return !m.Store.Up && m.Store.Errors[StoreWrite] >= 1
	})

	b := e.mustIssue(responder.ECDSA, "localhost")
	e.wrapAndServe(b.Certificate)
	e.waitStapled(b)
	eventually(t, "the second certificate's response written", func() bool {
		_, err := os.Stat(filepath.Join(dir, CertificateID(b.Cert.Raw)))
		return err == nil
	})
	e.s.Close() // the writer has reported every write it made

	m := e.s.Metrics()
	if _, err := os.Stat(filepath.Join(dir, a, "in-the-way")); err != nil {
		t.Fatal(err)
	}
	if m.Store.Up {
		t.Fatalf("store_up says 1 while certificate %s's response has never been stored (write errors %d)", a, m.Store.Errors[StoreWrite])
	}
}
