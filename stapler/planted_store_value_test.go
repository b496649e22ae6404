package stapler

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/staplerkit/ocsp/cache"
	"github.com/staplerkit/ocsp/internal/record"
	"github.com/staplerkit/ocsp/responder"
	"golang.org/x/crypto/ocsp"
)

// AttackRevokedServedGoodFromAPlantedStoreValue: OCSP responses are public;
// anyone can fetch a good one before a certificate is revoked. With a
// DirStore in a directory writable by others (one DirStore documents it
// refuses: Put does, Get does not), a local user plants that good response
// under the certificate's ID. After the revocation the server starts: the
// Stapler restores the planted response, makes no query, and staples
// "good" for a revoked certificate until its next refresh. Expected: the
// value is refused, the responder is asked, and the staple says revoked.
func TestAPlantedStoreValueNeverServesARevokedCertificateGood(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, on, WithStore(cache.DirStore(dir)), WithPolicy(Strict))
	good := mustFetchRaw(t, e, e.leaf) // public: anyone may ask
	id := CertificateID(e.leaf.Cert.Raw)
	if err := os.WriteFile(filepath.Join(dir, id), record.Encode(good, e.clock.Now()), 0o644); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Minute)
	e.r.SetStatus(e.leaf.Cert.SerialNumber, responder.Revoked(e.clock.Now(), ocsp.KeyCompromise))
	e.clock.Advance(time.Second)

	addr := e.wrapAndServe(e.leaf.Certificate)
	eventually(t, "a first answer", func() bool { st := e.status(e.leaf); return st.Stapled || st.Queries > 0 })
	staple, _, err := e.handshake(addr)
	if err == nil {
		resp, perr := ocsp.ParseResponseForCert(staple, e.leaf.Cert, e.ca.Cert)
		if perr == nil && resp.Status == ocsp.Good {
			t.Fatalf("a revoked certificate is stapled good (from the value planted in a world-writable store directory; responder queries: %d)", e.r.CountFor(e.leaf.Cert.SerialNumber))
		}
	}
}
