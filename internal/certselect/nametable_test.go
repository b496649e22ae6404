package certselect

import (
	"fmt"
	"hash/maphash"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
)

// value stands for what a caller keeps per certificate (the stapler
// package keeps its state): the tests only compare pointers.
type value struct{ n int }

// mapNameEntry is the value of the map[string]nameEntry that nameTable
// replaces (nameEntry, 40 bytes), declared here so that the reference and
// the benchmarks stay when nameEntry goes.
type mapNameEntry struct {
	val   *value
	first int32
	class uint32
	more  []int32
}

// addToMapReference enters position pos, with its value and class, for
// name in ref, as the name index did with its map: the first position is
// the entry's own; others are appended unless equal to it or to the last.
func addToMapReference(ref map[string]mapNameEntry, name string, pos int32, val *value, class uint32) {
	e, ok := ref[name]
	switch {
	case !ok:
		ref[name] = mapNameEntry{val: val, first: pos, class: class}
	case e.first != pos && (len(e.more) == 0 || e.more[len(e.more)-1] != pos):
		e.more = append(e.more, pos)
		ref[name] = e
	}
}

// nameOp is one step of building a name table: position pos (with its
// value and class) is valid for name.
type nameOp struct {
	name  string
	pos   int32
	val   *value
	class uint32
}

// buildNameTableAndMap builds a nameTable and, as the reference, the map
// the name index built before the table, from the same steps (positions
// ascending).
func buildNameTableAndMap(hint int, ops []nameOp) (*nameTable[*value], map[string]mapNameEntry) {
	t := newNameTable[*value](hint)
	ref := map[string]mapNameEntry{}
	for _, op := range ops {
		s, added := t.put(op.name)
		if added {
			s.val, s.first, s.class = op.val, op.pos, op.class
		} else {
			t.addMore(s, op.pos)
		}
		addToMapReference(ref, op.name, op.pos, op.val, op.class)
	}
	t.freeze()
	return t, ref
}

// checkNameTable fails t unless it holds exactly ref's names and entries,
// and misses every name in absent that ref lacks.
func checkNameTable(tb testing.TB, t *nameTable[*value], ref map[string]mapNameEntry, absent []string) {
	tb.Helper()
	if t.len() != len(ref) {
		tb.Fatalf("table holds %d names, map %d", t.len(), len(ref))
	}
	for name, want := range ref {
		s, ok := t.get(name)
		if !ok {
			tb.Fatalf("get(%.40q) missed", name)
		}
		if s.name() != name || s.val != want.val || s.first != want.first || s.class != want.class {
			tb.Fatalf("get(%.40q) = {%.40q %p %d %d}, want {%p %d %d}", name, s.name(), s.val, s.first, s.class, want.val, want.first, want.class)
		}
		got := t.further(s)
		if !slices.Equal(got, want.more) || s.hasMore() != (len(want.more) > 0) {
			tb.Fatalf("further(%.40q) = %v, want %v", name, got, want.more)
		}
		if cap(got) != len(got) {
			tb.Fatalf("further(%.40q) has room to append over the next name's candidates", name)
		}
	}
	for _, name := range absent {
		if _, in := ref[name]; in {
			continue
		}
		if s, ok := t.get(name); ok {
			tb.Fatalf("get(%.40q) found %.40q, which was never put", name, s.name())
		}
	}
}

// randomNameOps makes n steps over names drawn from a pool of about
// distinct names (so some recur), with positions ascending and sometimes
// repeated (a certificate listing a name twice).
func randomNameOps(r *rand.Rand, n, distinct int) []nameOp {
	pool := make([]string, distinct)
	for i := range pool {
		switch r.IntN(10) {
		case 0:
			pool[i] = strings.Repeat("x", r.IntN(2000)) // long, or empty
		case 1:
			pool[i] = fmt.Sprintf("%s.c%d.test", strings.Repeat("prefix", 20), r.IntN(distinct)) // shared prefix
		default:
			pool[i] = fmt.Sprintf("c%d.test", r.IntN(distinct*2))
		}
	}
	vals := []*value{nil, {1}, {2}}
	ops := make([]nameOp, n)
	pos := int32(0)
	for i := range ops {
		if r.IntN(3) > 0 {
			pos++
		}
		ops[i] = nameOp{name: pool[r.IntN(len(pool))], pos: pos, val: vals[pos%3], class: uint32(pos) * 7}
	}
	return ops
}

func TestNameTableMatchesMap(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var absent []string
	for i := range 2000 {
		absent = append(absent, fmt.Sprintf("c%d.test", i), fmt.Sprintf("c%d.tes", i))
	}
	absent = append(absent, "", "x", strings.Repeat("x", 3000))
	for _, tc := range []struct{ n, distinct, hint int }{
		{0, 1, 0},
		{5, 5, -1},
		{1, 1, 0},
		{10, 3, 0},
		{100, 100, 0},         // grows from the smallest index
		{1000, 50, 1000},      // many names with several certificates
		{5000, 5000, 5000},    // mostly one certificate a name
		{3000, 2000, 1 << 16}, // a generous hint: freeze shrinks
	} {
		t.Run(fmt.Sprintf("n=%d,distinct=%d,hint=%d", tc.n, tc.distinct, tc.hint), func(t *testing.T) {
			ops := randomNameOps(r, tc.n, tc.distinct)
			tab, ref := buildNameTableAndMap(tc.hint, ops)
			checkNameTable(t, tab, ref, absent)
			if want := nameTableCap(tab.len()); len(tab.slots) != want {
				t.Errorf("index of %d slots for %d names, want %d", len(tab.slots), tab.len(), want)
			}
		})
	}
}

// TestNameTableCollidingNames fills the table with names that all start
// their probe at the same slot (found by trying names against the table's
// own seed, as no client can): lookups must still find each one, and miss
// the others, along one long run.
func TestNameTableCollidingNames(t *testing.T) {
	const n = 200
	tab := newNameTable[*value](n)
	var ops []nameOp
	var absent []string
	for i := 0; len(ops) < n || len(absent) < n; i++ {
		name := fmt.Sprintf("c%d.test", i)
		if maphash.String(tab.seed, name)&tab.mask != 0 {
			continue
		}
		if len(ops) < n {
			ops = append(ops, nameOp{name: name, pos: int32(len(ops))})
		} else {
			absent = append(absent, name)
		}
	}
	ref := map[string]mapNameEntry{}
	for _, op := range ops {
		s, added := tab.put(op.name)
		if !added {
			t.Fatalf("put(%q) found it before it was put", op.name)
		}
		s.first = op.pos
		ref[op.name] = mapNameEntry{first: op.pos}
	}
	tab.freeze()
	checkNameTable(t, tab, ref, absent)
}

// TestNameTableSameTag makes every slot's tag the same, so that every
// probe compares strings: the answers must not change (the tag only
// saves compares).
func TestNameTableSameTag(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	ops := randomNameOps(r, 3000, 1000)
	tab, ref := buildNameTableAndMap(0, ops)
	for i, v := range tab.slots {
		if v != 0 {
			tab.slots[i] = v & (1<<tab.idxBits - 1)
		}
	}
	// A lookup computes a tag that is (almost always) not 0 now, so it
	// compares nothing and misses: a table whose tags were wrong would be
	// caught here...
	missed := 0
	for name := range ref {
		if _, ok := tab.get(name); !ok {
			missed++
		}
	}
	if missed == 0 {
		t.Fatal("no lookup missed with every tag cleared: tags are not compared")
	}
	// ...and with the tags recomputed, every lookup hits again.
	tab.resize(len(tab.slots))
	checkNameTable(t, tab, ref, nil)
}

func TestNameTableGetAllocatesNothing(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	tab, ref := buildNameTableAndMap(0, randomNameOps(r, 1000, 300))
	var names []string
	for name := range ref {
		names = append(names, name)
	}
	names = append(names, "absent.test", "")
	i := 0
	allocs := testing.AllocsPerRun(1000, func() {
		s, ok := tab.get(names[i%len(names)])
		if ok {
			_ = tab.further(s)
		}
		i++
	})
	if allocs != 0 {
		t.Errorf("get allocates %.1f times a call, want 0", allocs)
	}
}

// TestNameTableConcurrentReads reads a frozen table from several
// goroutines at once; under -race any write on the read path shows.
func TestNameTableConcurrentReads(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	tab, ref := buildNameTableAndMap(0, randomNameOps(r, 2000, 500))
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for name, want := range ref {
				s, ok := tab.get(name)
				if !ok || s.first != want.first || !slices.Equal(tab.further(s), want.more) {
					t.Errorf("goroutine %d: get(%.40q) wrong", g, name)
					return
				}
				if _, in := ref[name+".absent"]; !in {
					if _, ok := tab.get(name + ".absent"); ok {
						t.Errorf("goroutine %d: get(%.40q.absent) hit", g, name)
						return
					}
				}
			}
		})
	}
	wg.Wait()
}

// FuzzNameTableMatchesMap builds a table and a map from the same names
// (the input, split at '|'; a name's byte sum picks its position's step)
// and compares every lookup, including of the pieces split at '.'.
func FuzzNameTableMatchesMap(f *testing.F) {
	f.Add("a.test|b.test|a.test||c.test", uint8(0))
	f.Add("||x|xx|xxx|x", uint8(3))
	f.Add(strings.Repeat("c1.test|", 50), uint8(200))
	f.Fuzz(func(t *testing.T, input string, hint uint8) {
		var ops []nameOp
		pos := int32(0)
		for name := range strings.SplitSeq(input, "|") {
			if len(name)%2 == 0 {
				pos++
			}
			ops = append(ops, nameOp{name: name, pos: pos, class: uint32(len(name))})
		}
		tab, ref := buildNameTableAndMap(int(hint), ops)
		checkNameTable(t, tab, ref, strings.FieldsFunc(input, func(r rune) bool { return r == '.' || r == '|' }))
	})
}
