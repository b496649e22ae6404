package fleet

import (
	"context"
	"errors"
	"time"

	"github.com/staplerkit/ocsp/cache"
	"github.com/staplerkit/ocsp/internal/record"
)

// refresh runs a due refresh of m (see Refresh).
func (f *Source[C, O]) refresh(m C) {
	host := f.host
	if f.isDown(m) {
		// The certificate's keys were unreachable a moment ago: no point
		// waiting on the store's timeouts again before it is due for
		// another try.
		f.refreshAlone(m)
		return
	}
	cfg := host.Config()
	ctx, cancel := context.WithTimeout(f.ctx, f.timeout)
	defer cancel()
	// base is the response this refresh means to replace: if anything newer
	// turns up on the way (stored by another server, or adopted from a
	// notification meanwhile), there is nothing to fetch. A notification
	// may have adopted a result after m fell due, and planned the next
	// query from it (checked under m's lock, where Adopt plans).
	base, replanned := host.Due(m)
	if replanned {
		return
	}
	replaced := func() bool {
		return host.Held(m) != base
	}
	readCtx := ctx
	if base == nil {
		// The first fetch: handshakes wait for it (the cold wait), so a
		// store that does not answer must not hold it up longer than that.
		rctx, cancel := context.WithTimeout(ctx, f.firstReadTimeout())
		defer cancel()
		readCtx = rctx
	}
	readStart := time.Now()
	shared, state, err := f.readShared(readCtx, m)
	if err != nil {
		f.failed(m, err, readStart, OpRead)
		f.refreshAlone(m)
		// What it fetched alone is shared once the store answers again
		// (adoptOne), so that the fleet does not staple two responses
		// until the next refresh.
		f.notices.later(m, time.Now().Add(storeRetryInterval))
		return
	}
	f.ok(m)
	now := host.Now()
	// A stored response this server cannot vouch for is not adopted
	// before the responder is asked; it is kept in case the responder
	// cannot be reached.
	var unvouched *record.Entry
	if f.unvouched(m, shared, now) {
		f.log.Info("ocsp: the shared response is older than this server can vouch for; asking the responder first", "id", m.ID(),
			"produced_at", shared.ProducedAt.Time())
		unvouched, shared = shared, nil
	}
	// overdue: this server has neither queried nor seen a newer response
	// for two query intervals. The fleet's state, unsigned, defers its
	// queries no longer: someone who keeps writing a plausible state (an
	// attempt just made, the next an interval away) would otherwise hold
	// every server's queries off until the staple nears expiry. So does
	// the fetch time of the response held, store metadata too: the same
	// answer "fetched later" again and again is no news then.
	overdue := f.overdue(m, now, cfg.QueryInterval())
	if overdue && sameAnswer(shared, base) {
		shared = nil
	}
	if host.Adopt(m, shared, state, now) || replaced() {
		f.noteFresh(m, base, now)
		return
	}
	if unvouched == nil && !overdue && state != nil && state.Next > now.UnixNano() && !host.BeforeExpiry(base, now, time.Unix(0, state.Next)).Before(time.Unix(0, state.Next)) {
		// Another server failed and plans the retry: Adopt followed its
		// plan. Unless it would let the staple held here expire first (the
		// state is unsigned: anyone may have written it); then it is our
		// turn.
		return
	}
	var attempted int64 // the fleet's last attempt, as this refresh saw it
	if state != nil {
		attempted = state.LastAttempt
	}

	// Our turn: take the lease, then look again, since the holder before us
	// may have just stored a fresh response, or just tried and failed.
	leaseStart := time.Now()
	token, ok, err := f.leaser.Lease(ctx, m.ID(), leaseTTL(cfg.Timeout()))
	if err != nil {
		f.failed(m, err, leaseStart, OpLease)
		f.refreshAlone(m)
		return
	}
	if !ok {
		if f.leaseStuck(m, base, attempted, now, leaseTTL(cfg.Timeout())) {
			// Held past any lease's lifetime with no attempt recorded: a
			// lease that someone else than a server of the fleet keeps
			// writing (the store caps one without a TTL at the lease TTL).
			// The store is not trusted with stopping the queries: query
			// on our own.
			f.log.Warn("ocsp: the certificate's lease has been held past its lifetime with no attempt shared; querying on our own", "id", m.ID())
			f.refreshAlone(m)
			return
		}
		// Another server is querying: look again after its lease, unless a
		// notification has meanwhile brought its result (and planned the
		// next query from it). Checked and planned under m's lock, as
		// Adopt plans, so that neither plan overwrites the other's newer
		// one.
		host.ScheduleUnlessReplaced(m, base, now.Add(leaseWait(cfg.Timeout())))
		return
	}
	f.leaseTaken(m)
	defer func() {
		// Released even when closing, so that a clean shutdown hands over
		// at once; bounded, so that a hung store cannot stall Close.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), f.timeout)
		defer cancel()
		f.leaser.Release(rctx, m.ID(), token)
	}()
	if shared, state, err = f.readShared(ctx, m); err == nil {
		if f.unvouched(m, shared, now) {
			unvouched, shared = shared, nil
		}
		if overdue && sameAnswer(shared, base) {
			shared = nil
		}
		if host.Adopt(m, shared, state, now) || replaced() {
			f.noteFresh(m, base, now)
			return
		}
		if unvouched == nil && !overdue && state != nil && state.LastAttempt > attempted {
			// Another server just tried: its plan is ours (Adopt followed
			// it), or, when it planned none, look again now.
			if state.Next <= now.UnixNano() {
				host.Schedule(m, now)
			}
			return
		}
	}
	f.queried(m, now)
	o, ok := host.Query(f.ctx, m)
	if !ok {
		return
	}
	if state != nil { // continue the fleet's count, not ours
		host.ContinueCount(m, state.Tries, state.Failed)
	}
	next, installed := host.Apply(m, o)
	if unvouched != nil && (installed == nil || better(unvouched, installed)) {
		// The responder could not vouch either way, or answered with an
		// older response than the store's (a stale edge): the stored
		// response, valid and verified, is better than no staple (as any
		// cached staple is, until its nextUpdate), and the store keeps it.
		host.Adopt(m, unvouched, nil, host.Now())
		installed = nil
	}
	if err := f.writeShared(f.ctx, m, next, installed, token); errors.Is(err, cache.ErrLeaseLost) {
		// Paused past the lease: another server may have taken over and
		// stored its result, which nothing of ours overwrote. Adopt it.
		f.log.Info("ocsp: the lease ran out during the query; adopting what the fleet stored", "id", m.ID())
		rctx, cancel := context.WithTimeout(f.ctx, f.timeout)
		defer cancel()
		if shared, state, err := f.readShared(rctx, m); err == nil {
			if state != nil {
				host.KeepEarlierAttempt(m, state.LastAttempt)
			}
			host.Adopt(m, shared, state, host.Now())
		}
	}
}

// recorded shares a result got outside a refresh (a Test's, or a pushed
// response) with the fleet. A response installed is shared by the notice
// workers (shareIfNewer), so that Push and Test return without waiting on
// the store; a Test that failed tells the fleet's state of its try
// (unfenced: no lease is held for a Test).
func (f *Source[C, O]) recorded(m C, next time.Time, installed *record.Entry) {
	if installed == nil {
		f.writeShared(f.ctx, m, next, nil, "")
		return
	}
	f.host.Sharing(m, func(sh *Share, _ *record.Entry, _ bool) {
		sh.unshared = true
	})
	f.notices.add(m)
}

// refreshAlone queries without the fleet, when the store cannot be reached.
func (f *Source[C, O]) refreshAlone(m C) {
	f.queried(m, f.host.Now())
	if o, ok := f.host.Query(f.ctx, m); ok {
		f.host.Apply(m, o)
	}
}
