package record

import "time"

// Status is a certificate's status in an OCSP response.
type Status uint8

const (
	// Good: the responder vouches for the certificate.
	Good Status = iota
	// Revoked: the certificate was revoked.
	Revoked
	// Unknown: the responder does not know the certificate.
	Unknown
)

// String returns the status as the documented status object spells it.
func (s Status) String() string {
	switch s {
	case Good:
		return "GOOD"
	case Revoked:
		return "REVOKED"
	}
	return "UNKNOWN"
}

// Entry is one verified OCSP response for one certificate: the raw bytes
// that are stapled, and the parsed fields the scheduler and the status need.
// An Entry is never changed once made; share it freely.
type Entry struct {
	// Raw is the DER response as stapled: what the responder sent, with
	// the signed part and the signature untouched and, outside the
	// signature, only the certificate a client needs to check it.
	Raw    []byte
	Status Status
	// Unverified is set on a response installed under skip_verify: its
	// signature was never checked. It may be served while skip_verify is
	// on, and is never taken as knowledge of the certificate's status (it
	// never blocks a verified answer, nor is it stored or shared). A byte
	// beside Status, in the same word.
	Unverified bool
	// RevocationReason is the RFC 5280 reason code (revoked only); 32
	// bits, so that it shares a word with Status. (Where the response came
	// from is not kept: it is the certificate's responder, derived from
	// the leaf or the override. An Entry fits the 80-byte size class: at
	// 100,000 certificates every word is 0.8 MB.)
	RevocationReason int32
	ProducedAt       Instant
	ThisUpdate       Instant
	NextUpdate       Instant
	// RevokedAt is when the certificate was revoked (revoked only).
	RevokedAt Instant
	// FetchedAt is when the response arrived.
	FetchedAt Instant
	// Expires is when the entry stops being usable: the earliest of
	// FetchedAt + cache_ttl, NextUpdate, and any cap the verifier found (the
	// leaf's NotAfter, a delegated responder certificate's NotAfter).
	Expires Instant
}

// Usable reports whether the entry may still be stapled at now.
func (e *Entry) Usable(now time.Time) bool {
	return e != nil && At(now) < e.Expires
}

// Newer reports whether e is a newer answer than o: a later thisUpdate,
// or the same and a later producedAt.
func (e *Entry) Newer(o *Entry) bool {
	if e.ThisUpdate != o.ThisUpdate {
		return e.ThisUpdate > o.ThisUpdate
	}
	return e.ProducedAt > o.ProducedAt
}

// Instant is a point in time in Unix nanoseconds, zero meaning none: a third
// of the size of a time.Time, which counts at 100,000 entries.
type Instant int64

// At converts t; the zero time becomes the zero Instant.
func At(t time.Time) Instant {
	if t.IsZero() {
		return 0
	}
	return Instant(t.UnixNano())
}

// Time converts i back, in UTC; the zero Instant becomes the zero time.
func (i Instant) Time() time.Time {
	if i == 0 {
		return time.Time{}
	}
	return time.Unix(0, int64(i)).UTC()
}

// IsZero reports whether i is the zero Instant.
func (i Instant) IsZero() bool { return i == 0 }

// Expiry returns the earliest of fetched + ttl, nextUpdate and the non-zero
// caps: when an entry fetched at fetched stops being usable.
func Expiry(fetched time.Time, ttl time.Duration, nextUpdate time.Time, caps ...time.Time) time.Time {
	exp := fetched.Add(ttl)
	if !nextUpdate.IsZero() && nextUpdate.Before(exp) {
		exp = nextUpdate
	}
	for _, c := range caps {
		if !c.IsZero() && c.Before(exp) {
			exp = c
		}
	}
	return exp
}
