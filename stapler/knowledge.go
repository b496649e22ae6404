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

// remembered is the knowledge of removed certificates, by leaf SHA-256,
// in the order they were removed. Guarded by the Stapler's mu.
type remembered struct {
	byKey map[[32]byte]knowledge
	order [][32]byte
}

// keep remembers m's knowledge, if it has any, replacing what was kept of
// it, and keeps count (the Stapler's revoked count) of the remembered
// revocations. m.mu is held.
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
	k := knowledge{known: m.known, revokedFloor: m.revokedFloor}
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

// revoked reports whether a removed certificate whose leaf hashes to key
// is known revoked.
func (r *remembered) revoked(key [32]byte) bool {
	return r.byKey[key].revoked()
}
