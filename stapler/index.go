package stapler

import (
	"hash/maphash"
	"sync/atomic"
)

// certIndex maps leaf DER to its managed state for the handshake path: a
// hash table whose buckets are immutable chains with atomic heads, so that
// reads take no lock, and a registration adds one node (the table doubles
// when it fills, copying once: amortized constant time, where copying a
// shard per registration made registering certificates one by one
// quadratic). Keys are 64-bit hashes of the DER, so no copy of the DER is
// kept; the DER itself is compared on a match.
type certIndex struct {
	seed  maphash.Seed
	table atomic.Pointer[indexTable]
}

// indexTable is one generation of the table. Writers (serialized by the
// Stapler's registration lock) replace bucket heads or the whole table;
// readers see either.
type indexTable struct {
	buckets []atomic.Pointer[indexNode]
	mask    uint64
	count   int // nodes, for the writers only
}

// indexNode is immutable once published.
type indexNode struct {
	hash uint64
	m    *managed
	next *indexNode
}

func newCertIndex() *certIndex {
	ix := &certIndex{seed: maphash.MakeSeed()}
	ix.table.Store(newIndexTable(64))
	return ix
}

func newIndexTable(size int) *indexTable {
	return &indexTable{buckets: make([]atomic.Pointer[indexNode], size), mask: uint64(size - 1)}
}

// hash is der's place in the table: a keyed hash of its length and its
// last 64 bytes, which fall in the signature, unique to the certificate.
// Hashing the whole DER (half a kilobyte or more) would read a dozen cache
// lines per handshake; a lookup then compares the DER itself (usually a
// pointer comparison: the application hands back the same bytes).
func (ix *certIndex) hash(der []byte) uint64 {
	tail := der
	if len(tail) > 64 {
		tail = tail[len(tail)-64:]
	}
	return maphash.Bytes(ix.seed, tail) ^ uint64(len(der))*0x9e3779b97f4a7c15
}

// get returns the managed state of der, or nil.
func (ix *certIndex) get(der []byte) *managed {
	h := ix.hash(der)
	t := ix.table.Load()
	for n := t.buckets[h&t.mask].Load(); n != nil; n = n.next {
		if n.hash == h && sameBytes(n.m.der, der) && !n.m.removed.Load() {
			return n.m
		}
	}
	return nil
}

// putAll adds ms. Callers serialize puts and removes, and never put a leaf
// that is already there.
func (ix *certIndex) putAll(ms []*managed) {
	t := ix.table.Load()
	if need := t.count + len(ms); need > len(t.buckets) {
		size := len(t.buckets)
		for size < need {
			size *= 2
		}
		t = ix.grow(t, size)
	}
	for _, m := range ms {
		h := ix.hash(m.der)
		b := &t.buckets[h&t.mask]
		b.Store(&indexNode{hash: h, m: m, next: b.Load()})
		t.count++
	}
}

// grow moves every live node of t to a new table of size buckets and
// publishes it.
func (ix *certIndex) grow(t *indexTable, size int) *indexTable {
	next := newIndexTable(size)
	for i := range t.buckets {
		for n := t.buckets[i].Load(); n != nil; n = n.next {
			if n.m.removed.Load() {
				continue
			}
			b := &next.buckets[n.hash&next.mask]
			b.Store(&indexNode{hash: n.hash, m: n.m, next: b.Load()})
			next.count++
		}
	}
	ix.table.Store(next)
	return next
}

// remove takes m, already marked removed, out of the index: its bucket's
// chain is rebuilt without it. Callers serialize it with putAll.
func (ix *certIndex) remove(m *managed) {
	t := ix.table.Load()
	b := &t.buckets[ix.hash(m.der)&t.mask]
	var kept []*indexNode
	found := false
	for n := b.Load(); n != nil; n = n.next {
		if n.m == m {
			found = true
			continue
		}
		kept = append(kept, n)
	}
	if !found {
		return
	}
	var head *indexNode
	for i := len(kept) - 1; i >= 0; i-- {
		head = &indexNode{hash: kept[i].hash, m: kept[i].m, next: head}
	}
	b.Store(head)
	t.count--
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
