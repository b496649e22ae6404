package fleet

import (
	"context"
	"time"

	"github.com/staplerkit/ocsp/internal/record"
)

// Sharing a response this server got outside a refresh (pushed, a Test's,
// one fetched alone while the store was away) with the fleet.

// Share is a certificate's bookkeeping of a response waiting to be shared
// with the fleet. The host keeps one with each certificate, guarded by
// the certificate's lock, and hands it to the fleet under that lock
// (Host.Sharing); its zero value is ready, and only the fleet changes it.
// Its fields are packed so that it adds a certificate no word of padding.
type Share struct {
	// blocked is when (real time) a try to share first found the lease
	// held.
	blocked time.Time
	// tries counts the tries to share that found the lease held or the
	// store failing (shareLater).
	tries int32
	// unshared: a response this server got outside a refresh (pushed, or
	// a Test's) waits to be shared with the fleet (share).
	unshared bool
}

// maxShareRetry is the longest a response waiting to be shared waits
// between two tries (they start at storeRetryInterval and double).
const maxShareRetry = time.Minute

// share stores fresh, a response this server got outside a refresh (a
// pushed one, a Test's, one fetched alone while the store was away),
// under the certificate's lease, and only when the store holds nothing
// better: the store keeps the best answer any server got, whoever writes
// last. When the store holds a better one, nothing is written and it is
// adopted (as a notification's would be). When another server holds the
// lease (it is querying, and will store its answer) or the store fails,
// it is tried again later, every storeRetryInterval doubling up to
// maxShareRetry; a lease held past twice its lifetime (someone keeps
// writing it) is not waited for: the response is written without it, over
// an older one only. Called by the notice workers (shareIfNewer).
func (f *Source[C, O]) share(base context.Context, m C, fresh *record.Entry) {
	ctx, cancel := context.WithTimeout(base, f.timeout)
	defer cancel()
	ttl := leaseTTL(f.host.Config().Timeout())
	start := time.Now()
	token, ok, err := f.leaser.Lease(ctx, m.ID(), ttl)
	if err != nil || ok {
		// Held past its lifetime counts a lease found held at every try
		// in a row: not one met long ago, then another just taken.
		f.host.Sharing(m, func(sh *Share, _ *record.Entry, _ bool) {
			sh.blocked = time.Time{}
		})
	}
	if err != nil {
		f.failed(m, err, start, OpLease)
		f.shareLater(m, maxShareRetry)
		return
	}
	if !ok {
		if left := f.shareBlocked(m, 2*ttl); left > 0 {
			f.shareLater(m, left)
			return
		}
		f.log.Warn("ocsp: the certificate's lease has been held past its lifetime; sharing without it", "id", m.ID())
		token = "" // unfenced, over an older response only (below)
	} else {
		defer func() {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), f.timeout)
			defer cancel()
			f.leaser.Release(rctx, m.ID(), token)
		}()
	}
	start = time.Now()
	shared, _, err := f.readShared(ctx, m)
	if err != nil {
		f.failed(m, err, start, OpRead)
		f.shareLater(m, maxShareRetry)
		return
	}
	f.ok(m)
	if shared != nil && !better(fresh, shared) {
		f.shareDone(m)
		if better(shared, fresh) {
			f.notices.add(m) // adopted by the notice workers' rules
		}
		return
	}
	if err := f.writeShared(base, m, time.Time{}, fresh, token); err != nil {
		f.shareLater(m, maxShareRetry)
		return
	}
	f.shareDone(m)
}

// noticeRetry is how long after its store was found failing m's notice
// is read again: storeRetryInterval, or, while m holds a response waiting
// to be shared, that response's backoff (shareLater), so that a store that
// fails fast is not dialled once a second for every such certificate.
func (f *Source[C, O]) noticeRetry(m C) time.Duration {
	wait := storeRetryInterval
	f.host.Sharing(m, func(sh *Share, _ *record.Entry, _ bool) {
		if !sh.unshared {
			return
		}
		wait = min(storeRetryInterval<<min(sh.tries, 6), maxShareRetry)
		sh.tries++
	})
	return wait
}

// flushShares shares, when the host closes, the responses still waiting
// to be (a revocation pushed just before Close must reach the fleet), all
// within one store timeout; what cannot be is logged.
func (f *Source[C, O]) flushShares() {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(f.ctx), f.timeout)
	defer cancel()
	for _, m := range f.host.Certificates() {
		var owed bool
		var held *record.Entry
		f.host.Sharing(m, func(sh *Share, entry *record.Entry, _ bool) {
			owed, held = sh.unshared, entry
		})
		if !owed || held == nil || held.Unverified { // an unverified answer is never shared
			continue
		}
		if ctx.Err() == nil {
			f.share(ctx, m, held)
			f.host.Sharing(m, func(sh *Share, _ *record.Entry, _ bool) {
				owed = sh.unshared
			})
		}
		if owed {
			f.log.Warn("ocsp: closing with a response not shared with the fleet", "id", m.ID())
		}
	}
}

// shareLater tries sharing m's response again later, backing off, within
// most.
func (f *Source[C, O]) shareLater(m C, most time.Duration) {
	var wait time.Duration
	f.host.Sharing(m, func(sh *Share, _ *record.Entry, _ bool) {
		sh.unshared = true
		wait = storeRetryInterval << min(sh.tries, 6)
		sh.tries++
	})
	f.notices.later(m, time.Now().Add(min(wait, most, maxShareRetry)))
}

// shareDone notes that m's response is shared, or needs no sharing.
func (f *Source[C, O]) shareDone(m C) {
	f.host.Sharing(m, func(sh *Share, _ *record.Entry, _ bool) {
		sh.unshared, sh.tries, sh.blocked = false, 0, time.Time{}
	})
}

// shareBlocked notes that m's lease was found held while sharing, and
// returns how long until it has been so (real time) for longer than
// limit: 0 when it has.
func (f *Source[C, O]) shareBlocked(m C, limit time.Duration) time.Duration {
	var left time.Duration
	f.host.Sharing(m, func(sh *Share, _ *record.Entry, _ bool) {
		if sh.blocked.IsZero() {
			sh.blocked = time.Now()
		}
		left = max(0, limit-time.Since(sh.blocked)+time.Millisecond)
	})
	return left
}

// shareIfNewer stores m's staple when this server got it itself (a query
// of its own, a push, a Test) and it is better than shared, what the store
// holds: a response fetched alone while the store could not be reached
// (or was too slow for a first fetch) reaches the rest of the fleet once it
// can be, instead of the fleet stapling two responses until the next
// refresh; so does a pushed response, or a Test's. Under the lease, and
// only over an older response (share).
func (f *Source[C, O]) shareIfNewer(m C, shared *record.Entry) {
	var held *record.Entry
	var unshared, own, first bool
	f.host.Sharing(m, func(sh *Share, entry *record.Entry, queried bool) {
		held = entry
		unshared = sh.unshared
		own = (queried || unshared) && held != nil && !held.Unverified
		first = sh.tries == 0
	})
	if held != nil && held.Unverified && unshared {
		// What waited to be shared was replaced by an answer installed
		// unverified (skip_verify), which is neither stored nor shared.
		f.shareDone(m)
		return
	}
	if held == nil || !own {
		return
	}
	if shared != nil && !better(held, shared) {
		if unshared {
			f.shareDone(m)
		}
		return
	}
	if first {
		f.log.Info("ocsp: the store holds an older response than this server's; sharing ours", "id", m.ID())
	}
	f.share(f.ctx, m, held)
}
