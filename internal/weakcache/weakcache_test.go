package weakcache

import (
	"runtime"
	"testing"
	"time"
)

type key struct{ _ [64]byte }

// A value put under a key is got back under that key only; the first value
// put wins; nothing is held alive: once its key is collected, its entry
// goes.
func TestAValueIsKeptForItsKeyAndGoesWithIt(t *testing.T) {
	c := New[key, string]()
	a, b := new(key), new(key)
	va, vb, late := "a", "b", "late"
	if c.Get(a) != nil {
		t.Fatal("a value for a key never put")
	}
	if got := c.Put(a, &va); got != &va {
		t.Fatal("Put did not return the value it kept")
	}
	if got := c.Put(a, &late); got != &va {
		t.Fatal("a second Put replaced the first value")
	}
	c.Put(b, &vb)
	if c.Get(a) != &va || c.Get(b) != &vb || c.Len() != 2 {
		t.Fatalf("Get(a) = %v, Get(b) = %v, Len = %d", c.Get(a), c.Get(b), c.Len())
	}
	runtime.KeepAlive(a)
	a = nil
	for deadline := time.Now().Add(time.Minute); c.Len() != 1; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the entry of a collected key never went (%d entries)", c.Len())
		}
		runtime.GC()
	}
	if c.Get(b) != &vb {
		t.Fatal("a live key's entry went with another's")
	}
	runtime.KeepAlive(b)
}

// The cache never holds more than Slots entries, however many keys come.
func TestTheCacheIsBounded(t *testing.T) {
	c := New[key, int]()
	keys := make([]*key, 4*Slots)
	for i := range keys {
		keys[i] = new(key)
		v := i
		c.Put(keys[i], &v)
	}
	if n := c.Len(); n > Slots {
		t.Fatalf("%d entries, more than %d", n, Slots)
	}
	runtime.KeepAlive(keys)
}
