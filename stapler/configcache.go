package stapler

import (
	"crypto/tls"
	"reflect"
	"runtime"
	"sync"
	"sync/atomic"
	"weak"
)

// configCache remembers the wrapped clones of the configs an application's
// GetConfigForClient returns, so that a config returned again and again is
// wrapped once. It holds nothing alive: an application config is known by
// a weak pointer, and its entry (with the wrapped clone and its private
// keys) goes when the config is collected. It is bounded: configSlots
// entries, found in a window of configWays slots from the config's address
// hash; a full window evicts its least recently used entry, so that
// configs made afresh for each handshake evict one another and not the
// configs that are returned again.
//
// A hit takes no lock and allocates nothing.
type configCache struct {
	slots [configSlots]atomic.Pointer[configEntry]
	mu    sync.Mutex // serializes changes to slots
	seq   uint64     // entry ids, guarded by mu
	// tick counts insertions: the time of the cache, for recency.
	tick atomic.Uint64
	self weak.Pointer[configCache]
}

const (
	configBits  = 10
	configSlots = 1 << configBits
	configWays  = 8
)

type configEntry struct {
	id      uint64
	addr    uintptr // the application config's address, for the slot
	app     weak.Pointer[tls.Config]
	wrapped *tls.Config
	last    atomic.Uint64 // the tick of its last use
	cleanup runtime.Cleanup
}

func newConfigCache() *configCache {
	c := new(configCache)
	c.self = weak.Make(c)
	return c
}

// window is the first slot for addr (a Fibonacci hash: configs are large
// and aligned, so the low bits of their addresses say little).
func window(addr uintptr) int {
	return int(uint64(addr) * 0x9E3779B97F4A7C15 >> (64 - configBits))
}

func addressOf(cfg *tls.Config) uintptr { return reflect.ValueOf(cfg).Pointer() }

// get returns the wrapped clone of app, or nil.
func (c *configCache) get(app *tls.Config) *tls.Config {
	addr := addressOf(app)
	base := window(addr)
	for i := range configWays {
		// The weak pointer tells a live config from a collected one whose
		// address was reused.
		if e := c.slots[(base+i)%configSlots].Load(); e != nil && e.addr == addr && e.app.Value() == app {
			if now := c.tick.Load(); e.last.Load() != now {
				e.last.Store(now)
			}
			return e.wrapped
		}
	}
	return nil
}

// put remembers wrapped as app's clone and returns the clone to use: the
// one remembered first when another handshake got there before.
func (c *configCache) put(app, wrapped *tls.Config) *tls.Config {
	addr := addressOf(app)
	base := window(addr)
	c.mu.Lock()
	defer c.mu.Unlock()
	victim := -1
	var oldest uint64
	for i := range configWays {
		slot := (base + i) % configSlots
		e := c.slots[slot].Load()
		switch {
		case e != nil && e.addr == addr && e.app.Value() == app:
			return e.wrapped
		case victim >= 0 && c.slots[victim].Load() == nil:
		case e == nil || e.app.Value() == nil: // free, or its config was collected
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
	e := &configEntry{id: c.seq, addr: addr, app: weak.Make(app), wrapped: wrapped}
	e.last.Store(c.tick.Add(1))
	e.cleanup = runtime.AddCleanup(app, forgetConfig, configKey{cache: c.self, slot: victim, id: e.id})
	c.slots[victim].Store(e)
	return wrapped
}

// configKey names an entry for the cleanup of its application config,
// holding neither the config nor the entry.
type configKey struct {
	cache weak.Pointer[configCache]
	slot  int
	id    uint64
}

// forgetConfig drops the entry of an application config that was collected.
func forgetConfig(k configKey) {
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

// len reports how many entries are held.
func (c *configCache) len() (n int) {
	for i := range c.slots {
		if c.slots[i].Load() != nil {
			n++
		}
	}
	return n
}
