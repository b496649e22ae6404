package fleet

import (
	"time"

	"github.com/staplerkit/ocsp/internal/record"
)

// A certificate's lease, and what this server notes of it and of its own
// queries: a lease held too long by others (leaseStuck), and a server that
// has neither queried nor seen a newer response for too long (overdue).

// leaseTTL is how long a server holds a certificate's lease while it
// queries the responder, for a given response_timeout: if it dies mid-query,
// its lease runs out after at most this long, and another server takes over
// when it next looks (servers that found the lease taken look again every
// response_timeout + 1 s).
func leaseTTL(responseTimeout time.Duration) time.Duration {
	return 2*responseTimeout + 2*time.Second
}

// leaseWait is how long a server that found the lease taken waits before
// it looks in the store again.
func leaseWait(responseTimeout time.Duration) time.Duration {
	return responseTimeout + time.Second
}

// minFirstRead is the least a certificate's first store read is given,
// however short the cold wait: a Redis that answers, however loaded the
// machine, is not taken for hung (a node that reads too late queries
// alone, one more request, and staples another response than the fleet
// until the store answers again).
const minFirstRead = 2 * time.Second

// firstReadTimeout bounds the store read of a certificate's first fetch:
// the cold wait (at least minFirstRead), never more than the store timeout.
func (f *Source[C, O]) firstReadTimeout() time.Duration {
	return min(f.timeout, max(f.host.ColdWait(), minFirstRead))
}

// leaseStuck notes that m's lease was found held by another, and reports
// whether it has been held, with the fleet's last attempt (attempted)
// unchanged, for longer than twice the lease's lifetime: no server of the
// fleet holds a lease that long without sharing an attempt, so someone
// else keeps writing it. Counted in real time, as Redis counts a lease's
// life; or, once the held staple is past its half-life, on the
// scheduling clock (now) too, which a machine's suspend or a test's
// manual clock may run ahead of real time.
func (f *Source[C, O]) leaseStuck(m C, held *record.Entry, attempted int64, now time.Time, ttl time.Duration) bool {
	h := &f.health
	h.mu.Lock()
	defer h.mu.Unlock()
	b, seen := h.blocked[m]
	if !seen || b.attempted != attempted || now.Before(b.since) {
		h.blocked[m] = leaseBlock{since: now, real: time.Now(), attempted: attempted}
		return false
	}
	return time.Since(b.real) > 2*ttl ||
		held != nil && pastHalfLife(held, now) && now.Sub(b.since) > 2*ttl
}

// queried notes that this server queried the responder for m at now.
func (f *Source[C, O]) queried(m C, now time.Time) {
	h := &f.health
	h.mu.Lock()
	h.verified[m] = now
	h.mu.Unlock()
}

// noteFresh notes, as queried does, that m holds a newer response than
// base: its signed thisUpdate is later (the fetch time, store metadata,
// does not count).
func (f *Source[C, O]) noteFresh(m C, base *record.Entry, now time.Time) {
	e := f.host.Held(m)
	if e != nil && (base == nil || e.ThisUpdate > base.ThisUpdate) {
		f.queried(m, now)
	}
}

// overdue reports whether this server has neither queried nor seen a
// newer response for m for two query intervals (interval) before now. A
// certificate never seen so is noted at now.
func (f *Source[C, O]) overdue(m C, now time.Time, interval time.Duration) bool {
	h := &f.health
	h.mu.Lock()
	defer h.mu.Unlock()
	at, seen := h.verified[m]
	if !seen || now.Before(at) {
		h.verified[m] = now
		return false
	}
	return now.Sub(at) > 2*interval
}

// leaseTaken notes that this server took m's lease.
func (f *Source[C, O]) leaseTaken(m C) {
	h := &f.health
	h.mu.Lock()
	delete(h.blocked, m)
	h.mu.Unlock()
}

// pastHalfLife reports whether the held staple has lived past half its
// validity at now.
func pastHalfLife(held *record.Entry, now time.Time) bool {
	this, next := held.ThisUpdate.Time(), held.Expires.Time()
	return now.After(this.Add(next.Sub(this) / 2))
}

// leaseBlock is since when a certificate's lease has been found held by
// others, and the fleet's last attempt then.
type leaseBlock struct {
	since     time.Time // on the scheduling clock
	real      time.Time
	attempted int64
}
