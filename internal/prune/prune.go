package prune

// Map makes room in m, a bounded cache of what is known about peers or
// signers: it deletes the entries stale reports as past their time, then,
// while m holds limit-limit/4 entries or more, those that are not
// revocations, and revocations last (forgetting a revocation is what costs
// most).
func Map[K comparable, V any](m map[K]V, limit int, stale, revoked func(V) bool) {
	for k, v := range m {
		if stale(v) {
			delete(m, k)
		}
	}
	for _, revocations := range []bool{false, true} {
		for k, v := range m {
			if len(m) < limit-limit/4 {
				return
			}
			if revoked(v) == revocations {
				delete(m, k)
			}
		}
	}
}
