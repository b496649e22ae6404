package certselect

import (
	"fmt"
	"runtime"
	"testing"
)

// nameBenchNames makes n names like "c12345.test" and, to look them up in
// turn, 1,000 of them spread evenly over the table (all of them, in
// turn, when there are fewer).
func nameBenchNames(n int) (names, probes []string) {
	names = make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("c%d.test", i)
	}
	probes = make([]string, 1000)
	for k := range probes {
		if n < len(probes) {
			probes[k] = names[k%n]
		} else {
			probes[k] = names[k*(n/len(probes))]
		}
	}
	return names, probes
}

// BenchmarkNameTableGet looks up names present (hit) and absent (miss) in
// a nameTable and, in the same run, in the map[string]nameEntry it
// replaces.
func BenchmarkNameTableGet(b *testing.B) {
	for _, n := range []int{100, 100_000} {
		names, probes := nameBenchNames(n)
		misses := make([]string, len(probes))
		for k := range misses {
			misses[k] = fmt.Sprintf("d%d.test", k)
		}
		tab := newNameTable[*value](n)
		ref := make(map[string]mapNameEntry, n)
		v := &value{}
		for i, name := range names {
			s, _ := tab.put(name)
			s.val, s.first, s.class = v, int32(i), 1
			ref[name] = mapNameEntry{val: v, first: int32(i), class: 1}
		}
		tab.freeze()
		for _, c := range []struct {
			kind  string
			names []string
		}{{"hit", probes}, {"miss", misses}} {
			b.Run(fmt.Sprintf("table/%s/n=%d", c.kind, n), func(b *testing.B) {
				var sum int32
				k := 0
				for b.Loop() {
					if s, ok := tab.get(c.names[k]); ok {
						sum += s.first
					}
					if k++; k == len(c.names) {
						k = 0
					}
				}
				runtime.KeepAlive(sum)
			})
			b.Run(fmt.Sprintf("map/%s/n=%d", c.kind, n), func(b *testing.B) {
				var sum int32
				k := 0
				for b.Loop() {
					if e, ok := ref[c.names[k]]; ok {
						sum += e.first
					}
					if k++; k == len(c.names) {
						k = 0
					}
				}
				runtime.KeepAlive(sum)
			})
		}
	}
}

// heapAlloc is the live heap after two collections.
func heapAlloc() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// BenchmarkNameTableBytes reports the heap a nameTable and a
// map[string]mapNameEntry take for 100,000 names (one certificate each), not
// counting the names themselves (the leaves hold them anyway), as
// bytes/name.
func BenchmarkNameTableBytes(b *testing.B) {
	const n = 100_000
	names, _ := nameBenchNames(n)
	v := &value{}
	b.Run("table", func(b *testing.B) {
		var perName float64
		for b.Loop() {
			before := heapAlloc()
			tab := newNameTable[*value](n)
			for i, name := range names {
				s, _ := tab.put(name)
				s.val, s.first = v, int32(i)
			}
			tab.freeze()
			perName = float64(heapAlloc()-before) / n
			runtime.KeepAlive(tab)
		}
		b.ReportMetric(perName, "bytes/name")
	})
	for _, hint := range []int{0, n} { // 0: as the name index made it
		b.Run(fmt.Sprintf("map/hint=%d", hint), func(b *testing.B) {
			var perName float64
			for b.Loop() {
				before := heapAlloc()
				ref := make(map[string]mapNameEntry, hint)
				for i, name := range names {
					ref[name] = mapNameEntry{val: v, first: int32(i)}
				}
				perName = float64(heapAlloc()-before) / n
				runtime.KeepAlive(ref)
			}
			b.ReportMetric(perName, "bytes/name")
		})
	}
}
