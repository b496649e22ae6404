package certselect

import (
	"crypto/x509"
	"hash/maphash"
	"math"
	"math/bits"
	"unsafe"
)

// The exact-name part of an Index (Index.exact) is read on every
// handshake and holds one entry per certificate name: at 100,000
// certificates a Go map[string]nameEntry costs about 84 bytes a name, and
// its lookup is a third of a selection. nameTable is the same mapping,
// built once and then only read, in a layout made for that:
//
//   - the entries (nameSlot, 32 bytes when V is a pointer) are kept densely, in insertion
//     order, with no slice header: a name's further candidates live in one
//     array shared by the whole table;
//   - an open-addressing index of 4-byte slots (linear probing, power-of-two
//     capacity, load at most 1/2) points into them; each slot also holds
//     as many bits of the name's hash as the entry number leaves free, so
//     that a probe compares strings only when those bits match, and a miss
//     reads only the index (a run of 4-byte slots: a cache line or two);
//   - the key is a pointer and a 32-bit length into the name string of the
//     certificate's own leaf, which is kept alive anyway: no copy.
//
// The hash is maphash with a seed made for each table at random: a client
// that chooses server names cannot know which of them collide, so it
// cannot make lookups walk long probe runs.

// nameSlot is what the handshake path needs of the certificates valid for
// one exact name: the first of them (in list order), with the caller's
// value for it and its key class kept here so that a hit costs no further
// cache misses; and where the others, if any, are listed (see
// nameTable.further).
type nameSlot[V any] struct {
	key  *byte  // the name's bytes (the leaf's own string)
	val  V      // the caller's value for certs[first]
	klen uint32 // the name's length
	// first is the position of the first certificate valid for the name;
	// -1 until the builder sets it.
	first int32
	class uint32 // certs[first]'s key class
	// more locates the further candidates: -1 for none. While the table is
	// being built it is an index in nameTable.pending; once frozen, an
	// index in nameTable.overflow, where the count comes first and then
	// the positions, ascending.
	more int32
}

// name is the slot's key as a string (no copy).
func (s *nameSlot[V]) name() string {
	return unsafe.String(s.key, int(s.klen))
}

// nameTable maps lower-case names to nameSlots. It is built by put and
// addMore, then frozen; after freeze it is never written, so any number of
// handshakes may read it at once without a lock.
type nameTable[V any] struct {
	seed     maphash.Seed
	slots    []uint32 // 0: empty; else tag<<idxBits | (entry number + 1)
	mask     uint64   // len(slots) - 1
	idxBits  uint     // log2(len(slots)): bits of a slot holding the entry number
	tagShift uint     // a hash shifted right by it is the slot's tag
	entries  []nameSlot[V]
	// overflow holds every name's further candidates, once frozen: at
	// entries[i].more the count, then the positions.
	overflow []int32
	// pending holds the further candidates while building (only names
	// with more than one certificate have a list); freeze moves them into
	// overflow and drops it.
	pending [][]int32
}

// nameTableLoadNum/nameTableLoadDen is the highest load (entries per
// slot) the index is allowed. Linear probing reads on average about 1.5
// slots for a hit and 2.5 for a miss at load 1/2, against 3 and 13 at 0.8:
// measured, misses (a name only a wildcard covers, a scanner's name) took
// 13 ns at 1/2 against 19-23 ns at 0.8, hits about the same. At 4 bytes a
// slot the lower load costs 4 to 8 bytes a name more (42.5 bytes a name
// in all at 100,000 names instead of 37.3; the Go map takes 84).
// nameTableMinCap is the smallest index.
const (
	nameTableLoadNum = 1
	nameTableLoadDen = 2
	nameTableMinCap  = 8
)

// newNameTable makes an empty table sized for capacityHint names, so that
// building it with at most that many names never rehashes. The table gets
// its own random hash seed.
func newNameTable[V any](capacityHint int) *nameTable[V] {
	capacityHint = max(capacityHint, 0)
	t := &nameTable[V]{seed: maphash.MakeSeed()}
	t.entries = make([]nameSlot[V], 0, capacityHint)
	t.resize(nameTableCap(capacityHint))
	return t
}

// nameTableCap is the smallest index capacity (a power of two, at least
// nameTableMinCap) whose load with n entries is at most the maximum.
func nameTableCap(n int) int {
	c := nameTableMinCap
	for uint64(n)*nameTableLoadDen > uint64(c)*nameTableLoadNum {
		if c >= 1<<31 {
			panic("certselect: name table too large")
		}
		c <<= 1
	}
	return c
}

// resize makes an index of capacity c (a power of two) and enters every
// entry into it again: used when the table grows past its hint, and by
// freeze to shrink an index sized for a generous hint.
func (t *nameTable[V]) resize(c int) {
	t.slots = make([]uint32, c)
	t.mask = uint64(c - 1)
	t.idxBits = uint(bits.TrailingZeros(uint(c)))
	t.tagShift = 32 + t.idxBits
	for i := range t.entries {
		t.link(maphash.String(t.seed, t.entries[i].name()), i)
	}
}

// link enters entry i, whose name hashes to h, in the index, at the end of
// its probe run. The name must not be there already.
func (t *nameTable[V]) link(h uint64, i int) {
	v := uint32(h>>t.tagShift)<<t.idxBits | uint32(i+1)
	for p := h & t.mask; ; p = (p + 1) & t.mask {
		if t.slots[p] == 0 {
			t.slots[p] = v
			return
		}
	}
}

// get finds name's slot. It allocates nothing and takes no lock: it is on
// the handshake path. The slot it returns must not be written.
func (t *nameTable[V]) get(name string) (*nameSlot[V], bool) {
	h := maphash.String(t.seed, name)
	// The shifts are masked so that the compiler need not handle counts
	// of 64 or more; the slice headers are read once.
	ib, slots, entries := t.idxBits&31, t.slots, t.entries
	tag := uint32(h >> (t.tagShift & 63))
	for p := h & t.mask; ; p = (p + 1) & t.mask {
		v := slots[p]
		if v == 0 {
			return nil, false
		}
		if v>>ib == tag {
			e := &entries[v&(1<<ib-1)-1]
			if int(e.klen) == len(name) && e.name() == name {
				return e, true
			}
		}
	}
}

// put finds name's slot, adding one if the name is new (added is true;
// then first and more are -1, val is the zero V and class 0, for the caller to
// set). The slot stays valid only until the next put or freeze: entries
// move when the table grows. The table keeps a pointer into name's bytes,
// not a copy. A name longer than 4 GiB (none can come from a certificate)
// panics.
func (t *nameTable[V]) put(name string) (s *nameSlot[V], added bool) {
	if uint64(len(name)) > math.MaxUint32 {
		panic("certselect: name too long for the name table")
	}
	h := maphash.String(t.seed, name)
	tag := uint32(h >> t.tagShift)
	for p := h & t.mask; ; p = (p + 1) & t.mask {
		v := t.slots[p]
		if v == 0 {
			break
		}
		if v>>t.idxBits == tag {
			e := &t.entries[v&(1<<t.idxBits-1)-1]
			if int(e.klen) == len(name) && e.name() == name {
				return e, false
			}
		}
	}
	i := len(t.entries)
	t.entries = append(t.entries, nameSlot[V]{key: unsafe.StringData(name), klen: uint32(len(name)), first: -1, more: -1})
	if c := nameTableCap(len(t.entries)); c > len(t.slots) {
		t.resize(c) // enters the new entry too
	} else {
		t.link(h, i)
	}
	return &t.entries[i], true
}

// addMore adds position pos to s's further candidates, unless it is the
// first candidate or already the last further one: a certificate listing
// a name twice is one candidate. Positions are added ascending (list
// order), so the candidates stay sorted. Only before freeze.
func (t *nameTable[V]) addMore(s *nameSlot[V], pos int32) {
	if s.first == pos {
		return
	}
	if s.more < 0 {
		if len(t.pending) >= math.MaxInt32 {
			panic("certselect: too many names with several certificates")
		}
		s.more = int32(len(t.pending))
		t.pending = append(t.pending, []int32{pos})
		return
	}
	list := t.pending[s.more]
	if list[len(list)-1] != pos {
		t.pending[s.more] = append(list, pos)
	}
}

// freeze ends the build: the further candidates move into the shared
// overflow array, the entries and the index shrink to what they hold if a
// generous hint left them larger, and the table is read-only from then on
// (slots from put are no longer valid; get's are).
func (t *nameTable[V]) freeze() {
	if len(t.pending) > 0 {
		n := 0
		for _, l := range t.pending {
			n += 1 + len(l)
		}
		if n > math.MaxInt32 {
			panic("certselect: too many further candidates for the name table")
		}
		t.overflow = make([]int32, 0, n)
		for i := range t.entries {
			e := &t.entries[i]
			if e.more < 0 {
				continue
			}
			l := t.pending[e.more]
			e.more = int32(len(t.overflow))
			t.overflow = append(t.overflow, int32(len(l)))
			t.overflow = append(t.overflow, l...)
		}
	}
	t.pending = nil
	// Shrink what a generous hint left unused: an eighth spare is kept
	// rather than copying 100,000 entries for a few.
	if n := len(t.entries); cap(t.entries)-n > n/8 {
		t.entries = append([]nameSlot[V](nil), t.entries...)
	}
	if c := nameTableCap(len(t.entries)); c < len(t.slots) {
		t.resize(c)
	}
}

// further is the positions, ascending, of s's candidates after the first:
// a view into the table's shared array (nil for none), read-only, made
// without allocating. Only once frozen.
func (t *nameTable[V]) further(s *nameSlot[V]) []int32 {
	if s.more < 0 {
		return nil
	}
	n := t.overflow[s.more]
	return t.overflow[s.more+1 : s.more+1+n : s.more+1+n]
}

// hasMore reports whether s has candidates after the first, without
// reading the overflow array (the usual case on the handshake path: one
// certificate for the name).
func (s *nameSlot[V]) hasMore() bool { return s.more >= 0 }

// len is the number of names in the table.
func (t *nameTable[V]) len() int { return len(t.entries) }

// buildExact builds the exact-name part of an Index: every plain host name
// among the leaves' DNS names, lower-cased as x509 folds them (ASCII
// only: lowerASCII), mapped to the positions of the
// leaves valid for it, the first with the caller's value (vals[i]; the
// zero V when vals is nil) and key class (classes[i]). A nil leaf (not
// parsed) is skipped. The names are the leaves' own strings (lower-casing
// a lower-case name makes no copy), kept alive by the leaves.
func buildExact[V any](leaves []*x509.Certificate, classes []uint32, vals []V) *nameTable[V] {
	hint := 0
	for _, leaf := range leaves {
		if leaf != nil {
			hint += len(leaf.DNSNames) // at least as many as are entered; freeze trims
		}
	}
	t := newNameTable[V](hint)
	for i, leaf := range leaves {
		if leaf == nil {
			continue
		}
		for _, name := range leaf.DNSNames {
			name = lowerASCII(name)
			if !plainHostname(name) { // only a plain name can equal a plain server name
				continue
			}
			s, added := t.put(name)
			if added {
				s.first, s.class = int32(i), classes[i]
				if vals != nil {
					s.val = vals[i]
				}
			} else {
				t.addMore(s, int32(i))
			}
		}
	}
	t.freeze()
	return t
}
