// Package writeback writes values to a store on a goroutine of its own,
// so that a slow or failing store never delays its caller: the caller's
// memory is updated first, and the store catches up. Writes of one key
// coalesce (only the newest value is written); a deletion is queued the
// same way, ordered after the writes queued before it. It tracks whether
// the store is down (any key whose last operation failed).
//
// It knows nothing of what the values are (the stapler's are encoded
// OCSP responses) or of certificates, staples and fleets.
package writeback
