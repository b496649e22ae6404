package stapler

import (
	"hash/maphash"
	"sync/atomic"
)

// indexShards splits the certificate index so that registering a
// certificate copies one small shard, not the whole index.
const indexShards = 64

// certIndex maps leaf DER to its managed state for the handshake path:
// lock-free reads of copy-on-write shards, keyed by a 64-bit hash so that no
// copy of the DER is kept. Leaves whose hashes collide are chained.
type certIndex struct {
	seed   maphash.Seed
	shards [indexShards]atomic.Pointer[map[uint64]*managed]
}

func newCertIndex() *certIndex {
	return &certIndex{seed: maphash.MakeSeed()}
}

// get returns the managed state of der, or nil.
func (ix *certIndex) get(der []byte) *managed {
	h := maphash.Bytes(ix.seed, der)
	shard := ix.shards[h%indexShards].Load()
	if shard == nil {
		return nil
	}
	for m := (*shard)[h]; m != nil; m = m.sameHash {
		if sameBytes(m.der, der) && !m.removed.Load() {
			return m
		}
	}
	return nil
}

// putAll adds ms, copying each shard they touch once. Callers serialize
// puts, and never put a leaf that is already there.
func (ix *certIndex) putAll(ms []*managed) {
	byShard := map[uint64][]*managed{}
	for _, m := range ms {
		m.hash = maphash.Bytes(ix.seed, m.der)
		byShard[m.hash%indexShards] = append(byShard[m.hash%indexShards], m)
	}
	for shard, add := range byShard {
		slot := &ix.shards[shard]
		next := map[uint64]*managed{}
		if old := slot.Load(); old != nil {
			next = make(map[uint64]*managed, len(*old)+len(add))
			for k, v := range *old {
				next[k] = v
			}
		}
		for _, m := range add {
			m.sameHash = next[m.hash]
			next[m.hash] = m
		}
		slot.Store(&next)
	}
}

// remove takes m, already marked removed, out of the index. A leaf whose
// hash collides with another's stays chained, skipped by get. Callers
// serialize it with putAll.
func (ix *certIndex) remove(m *managed) {
	slot := &ix.shards[m.hash%indexShards]
	old := slot.Load()
	if old == nil || (*old)[m.hash] != m || m.sameHash != nil {
		return
	}
	next := make(map[uint64]*managed, len(*old))
	for k, v := range *old {
		if v != m {
			next[k] = v
		}
	}
	slot.Store(&next)
}

// sameBytes is bytes.Equal with a shortcut for two views of one array, the
// usual case (tls.Certificate.Leaf.Raw aliases Certificate[0]).
func sameBytes(a, b []byte) bool {
	if len(a) != len(b) {
		return false
	}
	if len(a) == 0 || &a[0] == &b[0] {
		return true
	}
	return string(a) == string(b)
}
