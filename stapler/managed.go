package stapler

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"sync"
	"sync/atomic"
	"time"

	"github.com/staplerkit/ocsp/cache"
	"github.com/staplerkit/ocsp/config"
)

// CertificateID is the stable identifier of a certificate: the hex SHA-256
// of its leaf DER.
func CertificateID(leafDER []byte) string {
	sum := sha256.Sum256(leafDER)
	return hex.EncodeToString(sum[:])
}

// settings are a certificate's per-certificate knobs, swapped whole.
type settings struct {
	stapling  config.Stapling
	policy    Policy
	policySet bool
}

// view is what the handshake path reads: ready copies of the certificate,
// swapped atomically whenever the staple changes.
type view struct {
	orig    *tls.Certificate // the certificate the copies were made from
	stapled *tls.Certificate // orig with the staple; nil when there is none
	bare    *tls.Certificate // orig without any staple
	expires int64            // Unix nanoseconds when the staple stops being usable
	revoked bool
}

// managed is one certificate the Stapler looks after. The handshake path
// touches only the atomics; the rest is guarded by mu.
type managed struct {
	id         string
	der        []byte            // the leaf DER, shared with the application's certificate
	leaf       *x509.Certificate // nil when the leaf does not parse
	url        string            // AIA OCSP URL, may be empty
	mustStaple bool

	settings atomic.Pointer[settings]
	view     atomic.Pointer[view]

	// pending is set while a fetch is due or in flight for a certificate
	// that has no staple; it is closed when that fetch ends, so that a cold
	// handshake can wait for it.
	pending atomic.Pointer[chan struct{}]

	mu            sync.Mutex
	issuer        *x509.Certificate
	issuerChecked bool // issuer is known to have signed the leaf
	orig          *tls.Certificate
	entry         *cache.Entry // the response stapled (good or revoked)
	latest        *cache.Entry // the latest verified answer (may be unknown)
	lastErr       error
	lastAttempt   time.Time
	lastSuccess   time.Time
	restored      bool // the store was read for this certificate
	queries       int  // queries recorded, successful or not
	tries         int  // failed attempts in the current recovery
	failed        bool // recovery tries used up since the last success
	state         State

	// Owned by the scheduler, under its lock.
	due   time.Time
	index int
}

// arm tells cold handshakes that a fetch is coming.
func (m *managed) arm() {
	ch := make(chan struct{})
	m.pending.CompareAndSwap(nil, &ch)
}

// disarm releases the handshakes waiting for a fetch.
func (m *managed) disarm() {
	if p := m.pending.Swap(nil); p != nil {
		close(*p)
	}
}

// publishLocked makes a new view from orig and entry.
func (m *managed) publishLocked() {
	v := &view{orig: m.orig, bare: m.orig}
	if m.orig.OCSPStaple != nil {
		bare := *m.orig
		bare.OCSPStaple = nil
		v.bare = &bare
	}
	if m.entry != nil {
		stapled := *m.orig
		stapled.OCSPStaple = m.entry.Raw
		v.stapled = &stapled
		v.expires = m.entry.Expires.UnixNano()
		v.revoked = m.entry.Status == cache.Revoked
	}
	m.view.Store(v)
}

// rebase makes c the certificate the copies are made from (an application's
// GetCertificate may return a new pointer for the same leaf).
func (m *managed) rebase(c *tls.Certificate) *view {
	m.mu.Lock()
	defer m.mu.Unlock()
	if v := m.view.Load(); v.orig == c {
		return v
	}
	m.orig = c
	m.publishLocked()
	return m.view.Load()
}

// policy is the certificate's effective policy.
func (m *managed) policy(def Policy) Policy {
	st := m.settings.Load()
	p := def
	if st.policySet {
		p = st.policy
	}
	if m.mustStaple {
		p = MustStaple
	}
	return p
}

// stateLocked is the certificate's state from its latest answer.
func (m *managed) stateLocked() State {
	switch {
	case m.failed:
		return StateFailed
	case m.latest == nil:
		return StateNone
	case m.latest.Status == cache.Good:
		return StateGood
	case m.latest.Status == cache.Revoked:
		return StateRevoked
	}
	return StateUnknown
}
