package stapler

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"sync"
	"sync/atomic"
	"time"

	"github.com/staplerkit/ocsp/internal/record"
)

// CertificateID is the stable identifier of a certificate: the hex SHA-256
// of its leaf DER.
func CertificateID(leafDER []byte) string {
	sum := sha256.Sum256(leafDER)
	return hex.EncodeToString(sum[:])
}

// view is what the handshake path reads: ready copies of the certificate,
// swapped atomically whenever the staple changes.
type view struct {
	orig *tls.Certificate // the certificate the copies were made from
	bare *tls.Certificate // orig without any staple
	// stapled is orig with the staple, when hasStaple; kept in the view
	// itself (one allocation per view, not two: at 100,000 certificates
	// the header and the rounding of a second object are 16 bytes each).
	stapled   tls.Certificate
	expires   int64  // Unix nanoseconds when the staple stops being usable
	gen       uint64 // the certificate's generation it was made at
	hasStaple bool
	revoked   bool
}

// managed is one certificate the Stapler looks after. The handshake path
// touches only the atomics; the rest is guarded by mu. Fields are packed:
// at 100,000 certificates every word counts.
type managed struct {
	// The handshake path's fields come first, to share as few cache
	// lines as they can.
	leaf *x509.Certificate // nil when the leaf does not parse

	settings atomic.Pointer[settings]
	view     atomic.Pointer[view]
	// pending is set while a fetch is due or in flight for a certificate
	// that has no staple; it is closed when that fetch ends, so that a cold
	// handshake can wait for it.
	pending atomic.Pointer[coldGate]
	// removed is set by Remove: the certificate is no longer managed.
	removed atomic.Bool
	// listed is set for a certificate in a wrapped config's Certificates:
	// it never retires for want of handshakes.
	listed atomic.Bool
	// lastServed is when a handshake last served the certificate (Unix
	// seconds), written only when that second has passed, so that
	// handshakes on many cores rarely write the same cache line.
	lastServed atomic.Int64

	der []byte // the leaf DER, shared with the application's certificate

	// mu guards the fields below it, up to due, index and urgent (the
	// scheduler's, under its lock); key is set once, at registration.
	mu          sync.Mutex
	issuer      *x509.Certificate
	orig        *tls.Certificate
	entry       *record.Entry // the response stapled (good or revoked)
	latest      *record.Entry // the latest verified answer (may be unknown)
	lastErr     error
	lastAttempt record.Instant
	lastSuccess record.Instant
	queries     int32 // queries recorded, successful or not
	tries       int32 // failed attempts in the current recovery
	state       stateCode
	mustStaple  bool
	// issuerChecked: issuer is known to have signed the leaf.
	issuerChecked bool
	restored      bool // the store was read for this certificate
	failed        bool // recovery tries used up since the last success
	expired       bool // the leaf is past its NotAfter: retired
	// revoked is the Stapler's count of certificates stapled revoked.
	revoked *atomic.Int64
	// applied is the last query outcome recorded, so that a query shared by
	// two refreshes is counted once.
	applied *outcome

	// Owned by the scheduler, under its lock: when the next query is due
	// (Unix nanoseconds; 0 when none is planned), and m's place in the heap.
	due   int64
	index int32
	// urgent: a handshake is waiting for this certificate's first staple;
	// it is taken before the certificates merely due.
	urgent bool

	key [32]byte // SHA-256 of der; ID() is its hex; never changes
}

// url is the leaf's AIA OCSP URL, or "" (derived, not kept: at 100,000
// certificates a string header each is 1.6 MB).
func (m *managed) url() string {
	if m.leaf == nil {
		return ""
	}
	return responderURL(m.leaf)
}

// ID is the certificate's ID, the hex SHA-256 of its leaf DER.
func (m *managed) ID() string { return hex.EncodeToString(m.key[:]) }

// coldGate is where cold handshakes wait for a certificate's first staple.
type coldGate struct {
	done chan struct{} // closed when the attempt ends
	// until is, while the attempt's query to the responder is under way,
	// its deadline (Unix nanoseconds, real time): a handshake keeps waiting
	// past its cold wait for a query that has started, which ends by then;
	// 0 before the query starts. It is left set when the query ends, so
	// that its outcome, applied just after, still reaches the handshakes
	// that waited for it; a gate outlives at most one attempt.
	until atomic.Int64
}

// arm tells cold handshakes that a fetch is coming.
func (m *managed) arm() {
	m.pending.CompareAndSwap(nil, &coldGate{done: make(chan struct{})})
}

// disarm releases the handshakes waiting for a fetch.
func (m *managed) disarm() {
	if g := m.pending.Swap(nil); g != nil {
		close(g.done)
	}
}

// querying tells the handshakes waiting for m's first staple that its query
// is under way and ends by deadline.
func (m *managed) querying(deadline time.Time) {
	if g := m.pending.Load(); g != nil {
		g.until.Store(deadline.UnixNano())
	}
}

// publishLocked makes a new view from orig and entry, and keeps the
// Stapler's count of revoked certificates.
func (m *managed) publishLocked() {
	v := m.viewForLocked(m.orig)
	v.gen++ // a new generation: views made for other certificate pointers are stale
	if old := m.view.Load(); m.revoked != nil && !m.removed.Load() {
		switch {
		case v.revoked && (old == nil || !old.revoked):
			m.revoked.Add(1)
		case !v.revoked && old != nil && old.revoked:
			m.revoked.Add(-1)
		}
	}
	m.view.Store(v)
}

// viewForLocked makes the copies of c with the current staple.
func (m *managed) viewForLocked(c *tls.Certificate) *view {
	v := &view{orig: c, bare: c}
	if cur := m.view.Load(); cur != nil {
		v.gen = cur.gen // the generation of the staple (views count the staple changes)
	}
	if c.OCSPStaple != nil {
		bare := *c
		bare.OCSPStaple = nil
		v.bare = &bare
	}
	if m.entry != nil {
		v.stapled = *c
		v.stapled.OCSPStaple = m.entry.Raw
		v.hasStaple = true
		v.expires = int64(m.entry.Expires)
		v.revoked = m.entry.Status == record.Revoked
	}
	return v
}

// viewSlots is where a wrapped config keeps, for each certificate of its
// list, the view of its own copy when that copy is not the one the
// certificate's state serves (the same leaf listed in two configs). Made
// on first need: most configs never need it.
type viewSlots struct {
	p atomic.Pointer[[]atomic.Pointer[view]]
	n int
}

// at returns slot i, making the slots on first use.
func (vs *viewSlots) at(i int) *atomic.Pointer[view] {
	p := vs.p.Load()
	if p == nil {
		fresh := make([]atomic.Pointer[view], vs.n)
		if !vs.p.CompareAndSwap(nil, &fresh) {
			p = vs.p.Load()
		} else {
			p = &fresh
		}
	}
	return &(*p)[i]
}

// viewOf returns the view to serve c from. slots, when not nil, are where a
// wrapped config keeps the views of its own copies, c's at slots.at(i): a
// view made for c and still current (no staple change since) is served
// from it, so that configs listing the same leaf do not take turns
// rebuilding the certificate's view (a lock and allocations per
// handshake).
func (m *managed) viewOf(c *tls.Certificate, slots *viewSlots, i int) *view {
	v := m.view.Load()
	if v.orig == c {
		return v
	}
	if slots == nil {
		return m.rebase(c)
	}
	slot := slots.at(i)
	if sv := slot.Load(); sv != nil && sv.gen == v.gen && sv.orig == c {
		return sv
	}
	m.mu.Lock()
	sv := m.viewForLocked(c)
	m.mu.Unlock()
	slot.Store(sv)
	return sv
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

// stateCode is a State in a byte.
type stateCode uint8

const (
	codeNone stateCode = iota
	codeGood
	codeRevoked
	codeUnknown
	codeFailed
	codeExpired
)

var stateNames = [...]State{codeNone: StateNone, codeGood: StateGood, codeRevoked: StateRevoked, codeUnknown: StateUnknown, codeFailed: StateFailed, codeExpired: StateExpired}

// State names the code.
func (c stateCode) State() State { return stateNames[c] }

// stateLocked is the certificate's state from its latest answer.
func (m *managed) stateLocked() stateCode {
	switch {
	case m.expired:
		return codeExpired
	case m.failed:
		return codeFailed
	case m.latest == nil:
		return codeNone
	case m.latest.Status == record.Good:
		return codeGood
	case m.latest.Status == record.Revoked:
		return codeRevoked
	}
	return codeUnknown
}
