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
// copy of the DER is kept. It is a cache over Stapler.byID: a hash collision
// (vanishingly rare) only sends a handshake down the slow, locked path.
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
	m := (*shard)[h]
	if m == nil || !sameBytes(m.der, der) {
		return nil
	}
	return m
}

// put adds m under der. Callers serialize puts.
func (ix *certIndex) put(der []byte, m *managed) {
	h := maphash.Bytes(ix.seed, der)
	slot := &ix.shards[h%indexShards]
	var next map[uint64]*managed
	if old := slot.Load(); old != nil {
		next = make(map[uint64]*managed, len(*old)+1)
		for k, v := range *old {
			next[k] = v
		}
	} else {
		next = map[uint64]*managed{}
	}
	next[h] = m
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
