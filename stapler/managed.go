package stapler

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/staplerkit/ocsp/internal/fleet"
	"github.com/staplerkit/ocsp/internal/record"
	"github.com/staplerkit/ocsp/internal/schedule"
)

// CertificateID is the stable identifier of a certificate: the hex SHA-256
// of its leaf DER.
func CertificateID(leafDER []byte) string {
	sum := sha256.Sum256(leafDER)
	return hex.EncodeToString(sum[:])
}

// view is what the handshake path reads: a ready copy of the certificate,
// swapped atomically whenever the staple changes. One object a view: at
// 100,000 certificates a second object's header and rounding are bytes
// each certificate pays.
type view struct {
	// home is the wrapped config's list entry the view was made for, or
	// nil for a view made from a certificate an application's
	// GetCertificate returned (see listEntry).
	home *listEntry
	// leaf is where the leaf DER was (cert.Certificate[0]'s bytes) when
	// the view was made: the chain's array is the application's, and an
	// application that writes another leaf into it must not get this
	// leaf's staple with that one (see leafMoved).
	leaf *byte
	// tail is the leaf DER's last 8 bytes (its signature's) when the view
	// was made: the DER's bytes are the application's too, and an
	// application that writes another leaf over them must not get this
	// leaf's staple with it either.
	tail      uint64
	expires   int64 // Unix nanoseconds when the staple stops being usable
	hasStaple bool
	revoked   bool
	// cert is what a handshake is served: the certificate as it was
	// wrapped (or as the application's GetCertificate returned it), with
	// the staple when hasStaple and with no staple at all otherwise. Last:
	// a handshake reads the fields above, and crypto/tls this, later.
	cert tls.Certificate
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
	// bare is the last copy made of the certificate without its staple,
	// for the handshakes that must not be stapled while the view holds a
	// staple (see bareOf).
	bare atomic.Pointer[tls.Certificate]

	der []byte // the leaf DER, shared with the application's certificate

	// mu guards the fields below it, up to due, index and urgent (the
	// scheduler's, under its lock); key is set once, at registration.
	mu     sync.Mutex
	issuer *x509.Certificate
	entry  *record.Entry // the response served (good or revoked; unverified under skip_verify)
	latest *record.Entry // the latest answer, as Status shows it (may be unknown)
	// known is what has been verified of the certificate: the newest
	// verified answer that said good or revoked. It outlives what is
	// served (a staple dropped, expired, turned off, or the certificate
	// removed and added again) and every decision reads it: the rollback
	// rule, Strict and MustStaple, the revoked count that stops session
	// resumption, the fleet's adoption. An unverified answer never
	// becomes knowledge.
	known *record.Entry
	// revokedFloor is the thisUpdate of the newest verified revocation
	// (0 when none): no answer but a revocation with a thisUpdate at or
	// before it is ever installed, even once known has moved on to a
	// newer good answer.
	revokedFloor record.Instant
	lastErr      error
	lastAttempt  record.Instant
	lastSuccess  record.Instant
	queries      int32 // queries recorded, successful or not
	tries        int32 // failed attempts in the current recovery
	state        stateCode
	mustStaple   bool
	// issuerChecked: issuer is known to have signed the leaf.
	issuerChecked bool
	restored      bool // the store was read for this certificate
	failed        bool // recovery tries used up since the last success
	expired       bool // the leaf is past its NotAfter: retired
	// ownAttempt: this server has queried the responder about the
	// certificate itself (successfully or not), so that it may adopt a
	// stored response it cannot vouch for (see fleet.Host.Knows).
	ownAttempt bool
	// share is the fleet's bookkeeping of a response waiting to be shared
	// with it (fleet.Host.Sharing): the fleet's alone, guarded by mu.
	share fleet.Share
	// applied is the last query outcome recorded, so that a query shared by
	// two refreshes is counted once.
	applied *outcome

	// task is m's place in the scheduler (owned by it, under its lock):
	// when its next query is due and whether a handshake waits for it.
	task schedule.Task

	// keyPrefix is the first 8 bytes of der's SHA-256 (the ID's first 16
	// hex digits): a lookup by ID compares it before hashing der. The
	// whole hash is not kept: at 100,000 certificates it is 3.2 MB.
	keyPrefix uint64
}

// ID is the certificate's ID, the hex SHA-256 of its leaf DER.
func (m *managed) ID() string {
	key := m.key()
	return hex.EncodeToString(key[:])
}

// key is the SHA-256 of the leaf DER.
func (m *managed) key() [32]byte { return sha256.Sum256(m.der) }

// prefixOf is the keyPrefix of a certificate whose leaf DER hashes to key.
func prefixOf(key [32]byte) uint64 { return binary.BigEndian.Uint64(key[:8]) }

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

// publishLocked makes a new view with the current staple, from the
// certificate the current view was made from, keeps s's count of
// certificates known to be revoked, and tells the staple hook when the
// staple changed.
func (m *managed) publishLocked(s *Stapler) {
	old := m.view.Load()
	v := m.restapleLocked(old, old.home)
	if !m.removed.Load() {
		switch {
		case v.revoked && !old.revoked:
			s.revokedCount.Add(1)
		case !v.revoked && old.revoked:
			s.revokedCount.Add(-1)
		}
	}
	m.view.Store(v)
	if s.staples != nil && !sameBytes(old.cert.OCSPStaple, v.cert.OCSPStaple) {
		s.staples.changed(m)
	}
}

// viewFromLocked makes a view of c, for home, with the current staple (c's
// own staple, if it has one, is never served: the Stapler staples what it
// verified, or nothing).
func (m *managed) viewFromLocked(c *tls.Certificate, home *listEntry) *view {
	v := &view{cert: *c, home: home}
	if v.cert.Leaf == nil {
		// crypto/tls parses a certificate without Leaf on every
		// SupportsCertificate, and selection reads its names: ours is
		// parsed already.
		v.cert.Leaf = m.leaf
	}
	if len(c.Certificate) > 0 {
		v.leaf, v.tail = unsafe.SliceData(c.Certificate[0]), derTail(c.Certificate[0])
	}
	v.cert.OCSPStaple = nil
	if m.entry != nil {
		v.cert.OCSPStaple = m.entry.Raw
		v.hasStaple = true
		v.expires = int64(m.entry.Expires)
	}
	v.revoked = m.revokedLocked()
	return v
}

// revokedLocked reports whether the certificate is known to be revoked:
// its newest verified answer says so, or the response served does. A
// staple dropped or expired does not change what is known.
func (m *managed) revokedLocked() bool {
	return m.known != nil && m.known.Status == record.Revoked ||
		m.entry != nil && m.entry.Status == record.Revoked
}

// admitsLocked reports whether e, a response with a good or revoked
// status, may be installed at now: it rolls back nothing verified (see
// supersedes), and it is no answer from at or before the newest verified
// revocation but another revocation. An unverified e must also supersede
// the unverified response served, so that replays under skip_verify do not
// take turns; a verified one replaces anything unverified.
func (m *managed) admitsLocked(e *record.Entry, now time.Time) bool {
	if e.Status != record.Revoked && m.revokedFloor != 0 && e.ThisUpdate <= m.revokedFloor {
		return false
	}
	if !supersedes(e, m.known, now) {
		return false
	}
	if e.Unverified && m.entry != nil && m.entry.Unverified && !supersedes(e, m.entry, now) {
		return false
	}
	return true
}

// learnLocked takes e, an installed response, as knowledge when it was
// verified.
func (m *managed) learnLocked(e *record.Entry) {
	if e.Unverified || e.Status == record.Unknown {
		return
	}
	m.known = e
	m.noteRevocationLocked(e)
}

// noteRevocationLocked raises the revocation floor to e's thisUpdate when
// e, a verified answer, says revoked: even one not installed (older than a
// good answer known) proves that nothing good from before it may be
// stapled again.
func (m *managed) noteRevocationLocked(e *record.Entry) {
	if !e.Unverified && e.Status == record.Revoked && e.ThisUpdate > m.revokedFloor {
		m.revokedFloor = e.ThisUpdate
	}
}

// restapleLocked is old's certificate with the current staple, a view
// for home. It keeps where old's leaf was, not where the chain's is now:
// an application that wrote another leaf into its chain since old was made
// must not have this certificate's staple served with it (see leafMoved).
func (m *managed) restapleLocked(old *view, home *listEntry) *view {
	v := m.viewFromLocked(&old.cert, home)
	v.leaf, v.tail = old.leaf, old.tail
	return v
}

// listEntry is a wrapped config's entry for one certificate of its list.
// The certificate as it was wrapped is kept in views only, not in a copy
// of the list: m's view is made for the entry that wrapped the certificate
// last, and every other entry listing the same leaf keeps a view of its
// own (two configs may hold different chains or keys for one leaf, and each
// serves what it held when it was wrapped).
type listEntry struct {
	// m is the certificate's state (nil for an entry with no
	// certificate): set at Wrap, and again when the certificate, removed,
	// is served again (wrapper.readd).
	m atomic.Pointer[managed]
	// own is the entry's view while m's view is made for another entry
	// or certificate. It is set before m's view moves away from the entry
	// (moveLocked), so that a handshake which finds m's view made for
	// another finds own set.
	own atomic.Pointer[view]
	// bare is the entry's certificate without a staple, made on first
	// need (see bareOf).
	bare atomic.Pointer[tls.Certificate]
}

// viewWith is the entry's view, with the certificate's current staple, for
// m, the entry's state (l.m, known to the caller: on the handshake path the
// entry itself is not read when m's view is its own).
func (l *listEntry) viewWith(m *managed) *view {
	if v := m.view.Load(); v.home == l {
		return v
	}
	return l.ownView(m)
}

// ownView is the entry's own view, made anew when the certificate's staple
// (m's) changed since it was made.
func (l *listEntry) ownView(m *managed) *view {
	if sv := l.own.Load(); sv != nil && sameStaple(sv, m.view.Load()) {
		return sv
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	cur := m.view.Load()
	if cur.home == l {
		return cur
	}
	sv := l.own.Load()
	if sv == nil { // never: own is set before m's view moves away from l
		return cur
	}
	if sameStaple(sv, cur) {
		return sv
	}
	sv = m.restapleLocked(sv, l)
	l.own.Store(sv)
	return sv
}

// base is the certificate as the entry wrapped it, with whatever staple
// its view holds: what selection reads of it (never the staple).
func (l *listEntry) base() *tls.Certificate {
	if m := l.m.Load(); m != nil {
		if v := m.view.Load(); v.home == l {
			return &v.cert
		}
	}
	return &l.own.Load().cert
}

// sameStaple reports whether two views of one certificate hold the same
// staple: a view of another entry made before a staple change does not.
func sameStaple(a, b *view) bool {
	return a.hasStaple == b.hasStaple && a.expires == b.expires && a.revoked == b.revoked &&
		len(a.cert.OCSPStaple) == len(b.cert.OCSPStaple) &&
		unsafe.SliceData(a.cert.OCSPStaple) == unsafe.SliceData(b.cert.OCSPStaple)
}

// adopt makes c, as list entry l wrapped it, the certificate m's view is
// made from; the entry the view was made for keeps it as its own.
func (m *managed) adopt(l *listEntry, c *tls.Certificate) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.moveLocked(c, l)
}

// moveLocked makes m's view one of c for home, with the same staple.
func (m *managed) moveLocked(c *tls.Certificate, home *listEntry) {
	cur := m.view.Load()
	if cur.home != nil && cur.home != home {
		cur.home.own.Store(cur) // before the view moves: see listEntry.own
	}
	m.view.Store(m.viewFromLocked(c, home))
}

// viewFor is the view to serve c from, a certificate an application's
// GetCertificate returned: m's view when it was made from the same
// certificate (the same chain, key and leaf: the pointer may differ), or
// else a new one made from c.
func (m *managed) viewFor(c *tls.Certificate) *view {
	if v := m.view.Load(); sameCertificate(&v.cert, c) {
		return v
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if v := m.view.Load(); sameCertificate(&v.cert, c) {
		return v
	}
	m.moveLocked(c, nil)
	return m.view.Load()
}

// sameCertificate reports whether c is the certificate v was made from
// (by the identity of what it holds, not its contents: the same chain,
// key, leaf, algorithms and timestamps), its staple aside. A c without a
// Leaf matches v's parsed one.
func sameCertificate(v, c *tls.Certificate) bool {
	return sameSlice(v.Certificate, c.Certificate) && sameInterface(v.PrivateKey, c.PrivateKey) &&
		(v.Leaf == c.Leaf || c.Leaf == nil) &&
		sameSlice(v.SupportedSignatureAlgorithms, c.SupportedSignatureAlgorithms) &&
		sameSlice(v.SignedCertificateTimestamps, c.SignedCertificateTimestamps)
}

func sameSlice[T any](a, b []T) bool {
	return len(a) == len(b) && unsafe.SliceData(a) == unsafe.SliceData(b)
}

// sameInterface reports whether a and b are the same value: the same type
// and the same data word. (== would panic for a key of an uncomparable
// type, such as ed25519.PrivateKey.)
func sameInterface(a, b any) bool {
	return *(*[2]unsafe.Pointer)(unsafe.Pointer(&a)) == *(*[2]unsafe.Pointer)(unsafe.Pointer(&b))
}

// bareOf is v's certificate without a staple: for a handshake that must
// not be stapled while v holds a staple (OCSP turned off, an expired
// staple). The copy is kept for the next such handshake: by the list entry
// the view was made for (each entry has its own certificate), or by m for
// a certificate from the application's GetCertificate.
func (m *managed) bareOf(v *view) *tls.Certificate {
	if !v.hasStaple {
		return &v.cert
	}
	slot := &m.bare
	if v.home != nil {
		slot = &v.home.bare
	}
	if b := slot.Load(); b != nil && sameCertificate(b, &v.cert) && b.Leaf == v.cert.Leaf {
		return b
	}
	b := v.cert
	b.OCSPStaple = nil
	slot.Store(&b)
	return &b
}

// leafMoved reports whether the application wrote another leaf into the
// chain array v's certificate shares with it, or over the leaf DER's own
// bytes, since v was made: v's staple is not that leaf's.
func (v *view) leafMoved() bool {
	if len(v.cert.Certificate) == 0 {
		return true
	}
	der := v.cert.Certificate[0]
	return unsafe.SliceData(der) != v.leaf || derTail(der) != v.tail
}

// derTail is the last 8 bytes of der (fewer for a shorter one): the end
// of a certificate's signature, another certificate's in all but name.
func derTail(der []byte) uint64 {
	if len(der) >= 8 {
		return binary.BigEndian.Uint64(der[len(der)-8:])
	}
	var t uint64
	for _, b := range der {
		t = t<<8 | uint64(b)
	}
	return t
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
	case m.failed, m.latest == nil && m.lastErr != nil:
		// Recovery used up; or no answer yet and the last query failed:
		// nothing is stapled, and an alert on failed must not wait for
		// the recovery tries to say so.
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

// Task is m's place in the scheduler (schedule.Item).
func (m *managed) Task() *schedule.Task { return &m.task }

// Removed reports whether m was removed or retired (schedule.Item,
// fleet.Cert): it is never scheduled again.
func (m *managed) Removed() bool { return m.removed.Load() }
