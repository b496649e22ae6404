package weakcache

import (
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"
	"weak"
)

// Cache maps a *K to a *V (the stapler's: an application's config to its
// wrapped clone), holding neither alive: a key is known by a weak pointer,
// and its entry goes when the key is collected. It is bounded: Slots
// entries, found in a window of Ways slots from the key's address hash; a
// full window evicts its least recently used entry, so that keys made
// afresh for each use evict one another and not the keys that come back.
//
// A hit takes no lock and allocates nothing. The zero Cache is not usable:
// make one with New.
type Cache[K, V any] struct {
	slots [Slots]atomic.Pointer[entry[K, V]]
	mu    sync.Mutex // serializes changes to slots
	seq   uint64     // entry ids, guarded by mu
	// tick counts insertions: the time of the cache, for recency.
	tick atomic.Uint64
	self weak.Pointer[Cache[K, V]]
}

// The cache's size: Slots entries, a key's looked for in Ways of them.
const (
	bits  = 10
	Slots = 1 << bits
	Ways  = 8
)

type entry[K, V any] struct {
	id      uint64
	addr    uintptr // the key's address, for the slot
	key     weak.Pointer[K]
	value   *V
	last    atomic.Uint64 // the tick of its last use
	cleanup runtime.Cleanup
}

// New returns an empty Cache.
func New[K, V any]() *Cache[K, V] {
	c := new(Cache[K, V])
	c.self = weak.Make(c)
	return c
}

// window is the first slot for addr (a Fibonacci hash: keys such as
// configs are large and aligned, so the low bits of their addresses say
// little).
func window(addr uintptr) int {
	return int(uint64(addr) * 0x9E3779B97F4A7C15 >> (64 - bits))
}

func addressOf[K any](k *K) uintptr { return uintptr(unsafe.Pointer(k)) }

// Get returns the value of key, or nil.
func (c *Cache[K, V]) Get(key *K) *V {
	addr := addressOf(key)
	base := window(addr)
	for i := range Ways {
		// The weak pointer tells a live key from a collected one whose
		// address was reused.
		if e := c.slots[(base+i)%Slots].Load(); e != nil && e.addr == addr && e.key.Value() == key {
			if now := c.tick.Load(); e.last.Load() != now {
				e.last.Store(now)
			}
			return e.value
		}
	}
	return nil
}

// Put remembers value as key's and returns the value to use: the one
// remembered first when another caller got there before.
func (c *Cache[K, V]) Put(key *K, value *V) *V {
	addr := addressOf(key)
	base := window(addr)
	c.mu.Lock()
	defer c.mu.Unlock()
	victim := -1
	var oldest uint64
	for i := range Ways {
		slot := (base + i) % Slots
		e := c.slots[slot].Load()
		switch {
		case e != nil && e.addr == addr && e.key.Value() == key:
			return e.value
		case victim >= 0 && c.slots[victim].Load() == nil:
		case e == nil || e.key.Value() == nil: // free, or its key was collected
			victim = slot
			oldest = 0
		case victim < 0 || e.last.Load() < oldest:
			victim, oldest = slot, e.last.Load()
		}
	}
	if old := c.slots[victim].Load(); old != nil {
		old.cleanup.Stop()
	}
	c.seq++
	e := &entry[K, V]{id: c.seq, addr: addr, key: weak.Make(key), value: value}
	e.last.Store(c.tick.Add(1))
	e.cleanup = runtime.AddCleanup(key, forget[K, V], slotRef[K, V]{cache: c.self, slot: victim, id: e.id})
	c.slots[victim].Store(e)
	return value
}

// slotRef names an entry for the cleanup of its key, holding neither the
// key nor the entry.
type slotRef[K, V any] struct {
	cache weak.Pointer[Cache[K, V]]
	slot  int
	id    uint64
}

// forget drops the entry of a key that was collected.
func forget[K, V any](k slotRef[K, V]) {
	c := k.cache.Value()
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.slots[k.slot].Load(); e != nil && e.id == k.id {
		c.slots[k.slot].Store(nil)
	}
}

// Len reports how many entries are held.
func (c *Cache[K, V]) Len() (n int) {
	for i := range c.slots {
		if c.slots[i].Load() != nil {
			n++
		}
	}
	return n
}
