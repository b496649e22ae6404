package prune

import "testing"

// A full map loses its stale entries first, then the entries that are not
// revocations, and revocations only when nothing else is left to drop,
// until a quarter of the room is free.
func TestMapDropsStaleThenGoodThenRevoked(t *testing.T) {
	type entry struct{ stale, revoked bool }
	m := map[int]entry{}
	for i := range 8 {
		m[i] = entry{stale: i < 2, revoked: i >= 5}
	}
	Map(m, 8, func(e entry) bool { return e.stale }, func(e entry) bool { return e.revoked })
	if len(m) >= 6 {
		t.Fatalf("%d entries left, want fewer than 6 (three quarters of 8)", len(m))
	}
	for k, e := range m {
		if e.stale {
			t.Errorf("stale entry %d kept", k)
		}
	}
	revoked := 0
	for _, e := range m {
		if e.revoked {
			revoked++
		}
	}
	if revoked != 3 {
		t.Errorf("%d revocations kept, want all 3 (good entries go first)", revoked)
	}

	// Revocations alone: they go too, down to the bound.
	r := map[int]entry{}
	for i := range 8 {
		r[i] = entry{revoked: true}
	}
	Map(r, 8, func(entry) bool { return false }, func(e entry) bool { return e.revoked })
	if len(r) != 5 {
		t.Fatalf("%d revocations left, want 5 (just under three quarters of 8)", len(r))
	}
}
