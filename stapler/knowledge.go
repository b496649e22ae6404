package stapler

import (
	"sync/atomic"

	"github.com/staplerkit/ocsp/internal/record"
)

// What is known of a certificate (managed.known, managed.revokedFloor)
// outlives its management: a certificate removed (Remove) or retired, and
// served or added again in the same process, starts from what was verified
// of it, so that a replayed older response cannot undo a revocation that
// Remove made the Stapler forget. The memory is bounded: the knowledge of
// the rememberedLimit certificates removed last, oldest forgotten first.
//
// A removed certificate known revoked still counts in the Stapler's
// revoked count while it is remembered: a TLS 1.3 session resumes without
// asking for a certificate, so a session begun on it before the revocation
// would otherwise resume once it was removed or retired.

// rememberedLimit bounds the knowledge kept of removed certificates.
const rememberedLimit = 4096

// knowledge is what was verified of a certificate that is no longer managed.
type knowledge struct {
	known        *record.Entry
	revokedFloor record.Instant
}

func (k knowledge) revoked() bool { return k.known != nil && k.known.Status == record.Revoked }

// merge is what k and o, two things learnt of one certificate (by two of
// its registrations, or one remembered and one learnt late), know
// together: the newer known answer (a revocation wins a tie), and the
// higher revocation floor. Nothing is forgotten by a merge.
func (k knowledge) merge(o knowledge) knowledge {
	if o.known != nil && (k.known == nil || newer(o.known, k.known) ||
		!newer(k.known, o.known) && o.known.Status == record.Revoked) {
		k.known = o.known
	}
	k.revokedFloor = max(k.revokedFloor, o.revokedFloor)
	return k
}

// knowledgeLocked is what m knows. m.mu is held.
func (m *managed) knowledgeLocked() knowledge {
	return knowledge{known: m.known, revokedFloor: m.revokedFloor}
}

// absorbLocked adds k, learnt of m's certificate by another registration
// of it, to what m knows; a staple that m then would not admit (good, from
// at or before a verified revocation) is no longer served. The caller
// publishes m's view. m.mu is held.
func (m *managed) absorbLocked(k knowledge) {
	merged := m.knowledgeLocked().merge(k)
	m.known, m.revokedFloor = merged.known, merged.revokedFloor
	if m.entry != nil && m.entry.Status != record.Revoked && m.entry.ThisUpdate <= m.revokedFloor {
		m.entry = nil
	}
	if m.known != nil && (m.latest == nil || newer(m.known, m.latest)) {
		m.latest = m.known
	}
}

// remembered is the knowledge of removed certificates, by leaf SHA-256,
// in the order they were removed. Guarded by the Stapler's mu.
type remembered struct {
	byKey map[[32]byte]knowledge
	order [][32]byte
}

// keep remembers m's knowledge, if it has any, merged with what was kept
// of it already, and keeps count (the Stapler's revoked count) of the
// remembered revocations. m.mu is held.
func (r *remembered) keep(m *managed, count *atomic.Int64) {
	if m.known == nil && m.revokedFloor == 0 {
		return
	}
	if r.byKey == nil {
		r.byKey = map[[32]byte]knowledge{}
	}
	key := m.key()
	prev, ok := r.byKey[key]
	if !ok {
		r.order = append(r.order, key)
	}
	k := prev.merge(m.knowledgeLocked())
	r.byKey[key] = k
	switch {
	case k.revoked() && !prev.revoked():
		count.Add(1)
	case !k.revoked() && prev.revoked():
		count.Add(-1)
	}
	for len(r.order) > rememberedLimit {
		r.forget(r.order[0], count)
	}
}

// forget drops what is kept of key.
func (r *remembered) forget(key [32]byte, count *atomic.Int64) (knowledge, bool) {
	k, ok := r.byKey[key]
	if !ok {
		return k, false
	}
	delete(r.byKey, key)
	for i, x := range r.order {
		if x == key {
			r.order = append(r.order[:i], r.order[i+1:]...)
			break
		}
	}
	if k.revoked() {
		count.Add(-1)
	}
	return k, true
}

// restore gives m, a certificate registered again, the knowledge kept of
// it, and forgets it here (m holds it now, and counts in its stead). m is
// not yet visible to others.
func (r *remembered) restore(m *managed, key [32]byte, count *atomic.Int64) {
	k, ok := r.forget(key, count)
	if !ok {
		return
	}
	m.known, m.revokedFloor = k.known, k.revokedFloor
	if m.known != nil {
		m.latest = m.known
	}
}

// of returns what is remembered of the removed certificate whose leaf
// hashes to key.
func (r *remembered) of(key [32]byte) knowledge { return r.byKey[key] }
