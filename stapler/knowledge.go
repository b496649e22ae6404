package stapler

import "github.com/staplerkit/ocsp/internal/record"

// What is known of a certificate (managed.known, managed.revokedFloor)
// outlives its management: a certificate removed (Remove) or retired, and
// served or added again in the same process, starts from what was verified
// of it, so that a replayed older response cannot undo a revocation that
// Remove made the Stapler forget. The memory is bounded: the knowledge of
// the rememberedLimit certificates removed last, oldest forgotten first.

// rememberedLimit bounds the knowledge kept of removed certificates.
const rememberedLimit = 4096

// knowledge is what was verified of a certificate that is no longer managed.
type knowledge struct {
	known        *record.Entry
	revokedFloor record.Instant
}

// remembered is the knowledge of removed certificates, by leaf SHA-256,
// in the order they were removed. Guarded by the Stapler's mu.
type remembered struct {
	byKey map[[32]byte]knowledge
	order [][32]byte
}

// keep remembers m's knowledge, if it has any. m.mu is held.
func (r *remembered) keep(m *managed) {
	if m.known == nil && m.revokedFloor == 0 {
		return
	}
	if r.byKey == nil {
		r.byKey = map[[32]byte]knowledge{}
	}
	key := m.key()
	if _, ok := r.byKey[key]; !ok {
		r.order = append(r.order, key)
	}
	r.byKey[key] = knowledge{known: m.known, revokedFloor: m.revokedFloor}
	for len(r.order) > rememberedLimit {
		delete(r.byKey, r.order[0])
		r.order = r.order[1:]
	}
}

// restore gives m, a certificate registered again, the knowledge kept of
// it, and forgets it here (m holds it now). m is not yet visible to others.
func (r *remembered) restore(m *managed, key [32]byte) {
	k, ok := r.byKey[key]
	if !ok {
		return
	}
	delete(r.byKey, key)
	for i, x := range r.order {
		if x == key {
			r.order = append(r.order[:i], r.order[i+1:]...)
			break
		}
	}
	m.known, m.revokedFloor = k.known, k.revokedFloor
	if m.known != nil {
		m.latest = m.known
	}
}
