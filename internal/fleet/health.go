package fleet

import (
	"context"
	"errors"
	"sync"
	"time"
)

// storeRetryInterval is how long a server that found a certificate's keys
// in the shared store unreachable queries the responder on its own for
// that certificate before it tries the store again: coordination resumes
// within this long of the store coming back.
const storeRetryInterval = time.Second

// storeHealth is the store's health per certificate: the certificates
// whose last store operation failed, each retried on its own. One store
// can fail for some keys only (a Redis Cluster master down holds its slots
// only), so a failure never stops the other certificates from
// coordinating. The outage is logged once, when the first certificate
// fails, and its end once, when the last is back.
//
// A store that hangs is another matter: each operation would hold a
// worker for the store's timeout, and the refreshes of many certificates
// would queue behind it. So when operations time out twice in a row and
// none has succeeded for a store timeout, the whole store is taken as down
// (hung): every certificate goes without it, and one operation at a time
// probes it (every storeRetryInterval, given a store timeout to answer)
// until one succeeds. A store that fails fast for some keys, or hangs for
// some while others answer, never trips it.
type storeHealth[C comparable] struct {
	mu      sync.Mutex // guards everything below
	failing map[C]storeFault
	// prune is the size of failing at which certificates no longer managed
	// are swept from it.
	prune int

	// blocked is, for the certificates whose lease others hold, since
	// when (see leaseStuck).
	blocked map[C]leaseBlock
	// verified is, for each certificate, when this server last queried
	// the responder or saw a newer response (see overdue).
	verified map[C]time.Time

	lastOK  time.Time // when an operation last succeeded
	hangs   int       // operations timed out since then, in a row
	hung    error     // set while the store is taken as hung: why
	probeAt time.Time // while hung: when the next operation may probe it
}

// storeFault is why a certificate's store operation failed, and when to
// try the store again for it (real time: it paces network attempts, not
// OCSP schedules).
type storeFault struct {
	err     error
	retryAt time.Time
}

// isDown reports whether m's keys were unreachable at the last try and m
// is not yet due for another.
func (f *Source[C, O]) isDown(m C) bool {
	h := &f.health
	h.mu.Lock()
	defer h.mu.Unlock()
	now := time.Now()
	if h.hung != nil {
		if now.Before(h.probeAt) {
			return true
		}
		// This caller probes; the others wait for its answer (or for its
		// store timeout, and a retry interval more).
		h.probeAt = now.Add(f.timeout + storeRetryInterval)
		return false
	}
	fault, down := h.failing[m]
	return down && now.Before(fault.retryAt)
}

// failed notes that m's keys could not be reached by an operation begun
// at start (real time), logging the outage once (when no other
// certificate was failing). A timeout counts towards tripping the whole
// store's breaker only for a certificate not failing already, and when no
// operation succeeded since it began: one Redis Cluster master gone times
// out the reads of its certificates while the others' succeed, and those
// go on coordinating.
func (f *Source[C, O]) failed(m C, err error, start time.Time, op Op) {
	f.host.StoreFailed(op)
	h := &f.health
	h.mu.Lock()
	first := len(h.failing) == 0 && h.hung == nil
	now := time.Now()
	_, already := h.failing[m]
	h.failing[m] = storeFault{err: err, retryAt: now.Add(storeRetryInterval)}
	// Only a certificate newly failing counts: the retries of the keys of
	// one Redis Cluster master that hangs, for as long as it hangs, say
	// nothing of the others' (which no refresh may touch meanwhile).
	if isTimeout(err) && !already && !h.lastOK.After(start) {
		h.hangs++
		if h.hangs >= 2 && now.Sub(h.lastOK) > f.timeout {
			h.hung = err
			h.probeAt = now.Add(storeRetryInterval)
		}
	}
	if len(h.failing) >= h.prune {
		for other := range h.failing {
			if other.Removed() {
				delete(h.failing, other)
			}
		}
		h.prune = 2*len(h.failing) + 64
	}
	h.mu.Unlock()
	if first {
		f.log.Warn("ocsp: the shared store is unreachable; querying the responder on our own for the certificates it cannot serve until it is back", "id", m.ID(), "err", err)
	}
}

// ok notes that m's keys were reached, logging the outage's end once the
// last failing certificate is back.
func (f *Source[C, O]) ok(m C) {
	h := &f.health
	h.mu.Lock()
	_, was := h.failing[m]
	delete(h.failing, m)
	was = was || h.hung != nil
	h.lastOK, h.hangs, h.hung = time.Now(), 0, nil
	back := was && len(h.failing) == 0
	h.mu.Unlock()
	if back {
		f.log.Info("ocsp: the shared store is back; coordinating with the fleet again")
	}
}

// dropHealth drops m (no longer managed) from the failing certificates.
func (f *Source[C, O]) dropHealth(m C) {
	h := &f.health
	h.mu.Lock()
	delete(h.failing, m)
	delete(h.blocked, m)
	delete(h.verified, m)
	h.mu.Unlock()
}

// down reports whether any certificate's keys could not be reached at
// the last try, or the whole store is taken for hung.
func (f *Source[C, O]) down() bool {
	h := &f.health
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.hung != nil || len(h.failing) > 0
}

// storeError says why m's keys cannot be reached now (see StoreError).
func (f *Source[C, O]) storeError(m C) error {
	h := &f.health
	h.mu.Lock()
	defer h.mu.Unlock()
	if fault, down := h.failing[m]; down {
		return fault.err
	}
	return h.hung
}

// isTimeout reports whether err is a timeout: the context's deadline, or
// a network timeout (a client's own read timeout).
func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &t) && t.Timeout()
}
