package fleet

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/staplerkit/ocsp/cache"
)

// Change notifications from the fleet, and the workers that adopt what
// they announce.

// noticeWorkers is how many certificates' notices are read at once, so
// that reads of keys that hang (a Redis Cluster master that does not
// answer) hold up no others.
const noticeWorkers = 8

// resyncInterval is the least time between two resyncs: the store's
// reports of missed changes are coalesced, at most one resync running per
// interval and one pending after it, so that nothing that makes the store
// lose its subscription costs more than one read of every certificate's
// keys per interval.
const resyncInterval = 10 * time.Second

// run adopts the changes other servers announce, until ctx ends.
func (f *Source[C, O]) run(ctx context.Context) {
	var wg sync.WaitGroup
	for range noticeWorkers {
		wg.Go(func() { f.adoptNotified(ctx) })
	}
	defer f.flushShares()
	defer wg.Wait()
	n, ok := f.store.(cache.Notifier)
	if !ok {
		<-ctx.Done() // the workers still share what this server gets
		return
	}
	n.Subscribe(ctx, func(key string) {
		if key == "" {
			// The store may have missed changes (its subscription was
			// lost and is back): read every certificate's keys again.
			f.resync(ctx)
			return
		}
		if m, ok := f.host.Lookup(strings.TrimSuffix(key, stateSuffix)); ok {
			f.notices.add(m)
		}
	})
}

// resync queues every certificate for the notice workers, behind the
// certificates announced one by one, as if a change had been announced
// for each: what the fleet stored while notifications were lost is
// adopted now rather than at the next refresh. Within resyncInterval of
// the last, it is planned for the interval's end instead, once.
func (f *Source[C, O]) resync(ctx context.Context) {
	r := &f.resyncs
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.first {
		// The subscription is live: what was announced before it (while
		// this server was reading the store at its start) is read now.
		r.first, r.last = true, time.Now()
		f.queueAll(false)
		return
	}
	if r.pending {
		return
	}
	now := time.Now()
	if wait := r.last.Add(resyncInterval).Sub(now); wait > 0 {
		r.pending = true
		time.AfterFunc(wait, func() {
			r.mu.Lock()
			r.pending, r.last = false, time.Now()
			r.mu.Unlock()
			if ctx.Err() == nil {
				f.queueAll(true)
			}
		})
		return
	}
	r.last = now
	f.queueAll(true)
}

// queueAll queues every certificate for the notice workers (resync);
// missed says whether the store lost changes (logged) rather than having
// just subscribed.
func (f *Source[C, O]) queueAll(missed bool) {
	n := 0
	for _, m := range f.host.Certificates() {
		if f.host.Active(m) {
			f.notices.addBulk(m)
			n++
		}
	}
	if missed {
		f.log.Info("ocsp: notifications from the fleet may have been missed; reading the shared store again", "certificates", n)
	} else {
		f.log.Debug("ocsp: listening to the fleet's changes; reading the shared store for those announced before", "certificates", n)
	}
}

// adoptNotified is a worker that adopts what the fleet stored for each
// certificate it announced a change for: a newer response, or the fleet's
// recovery state (and with it the fleet's plan). It never queries, and
// plans a query only when it adopted something. A read that fails is
// tried again later (storeRetryInterval): a notification is never dropped
// while the certificate is managed. noticeWorkers of them run, never two
// on one certificate.
func (f *Source[C, O]) adoptNotified(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		m, ok, wait := f.notices.take(time.Now())
		if !ok {
			var retry <-chan time.Time
			if wait > 0 {
				timer.Reset(wait)
				retry = timer.C
			}
			select {
			case <-f.notices.wake:
			case <-retry:
			case <-ctx.Done():
				return
			}
			continue
		}
		if !f.adoptOne(ctx, m) {
			return
		}
	}
}

// adoptOne adopts what the fleet stored for m; false when ctx ended.
func (f *Source[C, O]) adoptOne(ctx context.Context, m C) bool {
	host := f.host
	defer f.notices.done(m)
	if !host.Active(m) {
		f.dropHealth(m)
		return true // read again if it comes back
	}
	if f.isDown(m) {
		f.notices.later(m, time.Now().Add(f.noticeRetry(m)))
		return true
	}
	rctx, cancel := context.WithTimeout(ctx, f.timeout)
	start := time.Now()
	shared, state, err := f.readShared(rctx, m)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return false
		}
		f.failed(m, err, start, OpRead)
		f.notices.later(m, time.Now().Add(f.noticeRetry(m)))
		return true
	}
	f.ok(m)
	base := host.Held(m)
	now := host.Now()
	stored := shared
	if f.unvouched(m, shared, now) {
		shared = nil // its own refresh asks the responder first: now, when it has no staple
		if base == nil {
			host.HastenFirst(m, now) // waiting on another server's lease: not for its look
		}
	}
	if sameAnswer(shared, base) && f.overdue(m, now, host.Config().QueryInterval()) {
		shared = nil // a fetch time announced again is no news (see refresh)
	}
	host.Adopt(m, shared, state, now)
	f.noteFresh(m, base, now)
	f.shareIfNewer(m, stored)
	return true
}

// notices is the set of certificates with a change announced and not yet
// adopted: each is adopted once however often it was announced meanwhile,
// and none is dropped. Those announced one by one go first, then those
// whose store read failed, in retries, oldest first, once their time
// (real time: it paces store attempts) has come, then those a resync
// queued (bulk). A certificate being read (busy) is not handed to another
// worker: one announced meanwhile is queued again when the read is done.
type notices[C comparable] struct {
	mu      sync.Mutex // guards everything below
	set     map[C]bool // queued: in queue, bulk or retries
	busy    map[C]bool
	queue   []C
	bulk    []C
	retries []retry[C]
	wake    chan struct{}
}

// retry is a notice to adopt again at a time (Unix nanoseconds).
type retry[C comparable] struct {
	m  C
	at int64
}

func (n *notices[C]) add(m C) {
	n.mu.Lock()
	if n.set[m] {
		// Queued by a resync: announced now, it goes first.
		for i, b := range n.bulk {
			if b == m {
				n.bulk = append(n.bulk[:i], n.bulk[i+1:]...)
				n.queue = append(n.queue, m)
				break
			}
		}
	} else {
		n.set[m] = true
		n.queue = append(n.queue, m)
	}
	n.mu.Unlock()
	n.signal()
}

// addBulk queues m behind the certificates announced one by one.
func (n *notices[C]) addBulk(m C) {
	n.mu.Lock()
	if !n.set[m] {
		n.set[m] = true
		n.bulk = append(n.bulk, m)
	}
	n.mu.Unlock()
	n.signal()
}

// later queues m to be adopted again at t, unless it is queued already.
func (n *notices[C]) later(m C, t time.Time) {
	n.mu.Lock()
	if !n.set[m] {
		n.set[m] = true
		n.retries = append(n.retries, retry[C]{m, t.UnixNano()})
	}
	n.mu.Unlock()
	n.signal()
}

// done notes that the worker that took m is done with it.
func (n *notices[C]) done(m C) {
	n.mu.Lock()
	delete(n.busy, m)
	n.mu.Unlock()
	n.signal()
}

func (n *notices[C]) signal() {
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// take returns the certificate announced first, or else the oldest retry
// due at now, or else the first a resync queued, or false and how long
// until the oldest retry (0 when none). Retries are queued at now plus
// one interval, so the oldest is due first. A certificate another worker
// is reading stays queued. The caller calls done with what it took.
func (n *notices[C]) take(now time.Time) (C, bool, time.Duration) {
	n.mu.Lock()
	defer n.mu.Unlock()
	m, ok, wait := n.next(now)
	if ok {
		delete(n.set, m)
		n.busy[m] = true
		if len(n.queue)+len(n.bulk) > 0 {
			n.signal() // more for the other workers
		}
	}
	return m, ok, wait
}

// next pops what take returns. Called with n.mu held.
func (n *notices[C]) next(now time.Time) (C, bool, time.Duration) {
	for i, m := range n.queue {
		if !n.busy[m] {
			n.queue = append(n.queue[:i], n.queue[i+1:]...)
			return m, true, 0
		}
	}
	var wait time.Duration
	for i, r := range n.retries {
		if w := time.Duration(r.at - now.UnixNano()); w > 0 {
			if i == 0 {
				wait = w
			}
			break
		}
		if !n.busy[r.m] {
			n.retries = append(n.retries[:i], n.retries[i+1:]...)
			return r.m, true, 0
		}
	}
	for i, m := range n.bulk {
		if !n.busy[m] {
			n.bulk = append(n.bulk[:i], n.bulk[i+1:]...)
			return m, true, 0
		}
	}
	if wait == 0 && len(n.retries) > 0 {
		wait = storeRetryInterval // all due ones are busy: look again
	}
	var none C
	return none, false, wait
}
