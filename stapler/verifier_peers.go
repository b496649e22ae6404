package stapler

import (
	"context"
	"crypto/x509"
	"fmt"
	"time"

	"github.com/staplerkit/ocsp/internal/ocspfetch"
	"github.com/staplerkit/ocsp/internal/prune"
	"github.com/staplerkit/ocsp/internal/record"
)

// What a Verifier knows of each peer certificate, and how it asks when
// it knows nothing current: the newest valid answer seen (kept until it
// expires, or the certificate's NotAfter when revoked), the failures and
// their backoff, bounded in number.

// peerState is what a Verifier knows of one peer certificate.
type peerState struct {
	// newest is the newest valid answer seen, kept until it expires, or
	// until the certificate's NotAfter when it says revoked.
	newest    *record.Entry
	keepUntil time.Time
	// After a failed request: how many in a row, the last error, and when
	// the responder may be asked again.
	failures int
	failed   error
	retryAt  time.Time
}

// newer reports whether a is a newer answer than b: a later thisUpdate, or
// the same and a later producedAt.
func newer(a, b *record.Entry) bool { return a.Newer(b) }

// learn records e, a valid answer about leaf, unless a newer one is known.
// An unknown status decides nothing and is not kept.
func (v *Verifier) learn(id string, leaf *x509.Certificate, e *record.Entry, now time.Time) {
	if e.Status != record.Good && e.Status != record.Revoked {
		return
	}
	keep := e.Expires.Time()
	if e.Status == record.Revoked {
		keep = leaf.NotAfter
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	st := v.state(id, now)
	// Newer replaces; at the same times a revocation replaces a good
	// answer (never the other way round).
	// A good answer learnt from a CRL (a hold released) is dated by the
	// CRL's thisUpdate alone: its producedAt (crlProducedAt) only marks
	// it, and a revocation of that same thisUpdate replaces it.
	sameTimes := st.newest != nil && e.ThisUpdate == st.newest.ThisUpdate &&
		(e.ProducedAt == st.newest.ProducedAt || st.newest.Status == record.Good && st.newest.ProducedAt == crlProducedAt)
	if st.newest == nil || newer(e, st.newest) || sameTimes && e.Status == record.Revoked || !now.Before(st.keepUntil) {
		kept := *e
		kept.Raw = nil // the verdict needs the parsed fields only
		st.newest, st.keepUntil = &kept, keep
	}
}

// newest returns the newest answer known about id, or nil.
func (v *Verifier) newest(id string, now time.Time) *record.Entry {
	v.mu.Lock()
	defer v.mu.Unlock()
	if st := v.known[id]; st != nil && st.newest != nil && now.Before(st.keepUntil) {
		return st.newest
	}
	return nil
}

// maxKnownPeers bounds how many certificates a Verifier remembers (a few
// hundred bytes each), for a client that meets very many servers.
const maxKnownPeers = 1 << 16

// state returns id's state, making it; v.mu is held. The map is pruned of
// what is no longer worth keeping whenever it has doubled since the last
// prune; at v.maxKnown entries, good answers and failures are forgotten
// (revocations last) until a quarter of the room is free.
func (v *Verifier) state(id string, now time.Time) *peerState {
	if st := v.known[id]; st != nil {
		return st
	}
	if len(v.known) >= min(max(2*v.pruned, 64), v.maxKnown) {
		prune.Map(v.known, v.maxKnown,
			func(st *peerState) bool { return !now.Before(st.keepUntil) && !now.Before(st.retryAt) },
			func(st *peerState) bool { return st.newest != nil && st.newest.Status == record.Revoked })
		v.pruned = len(v.known)
	}
	st := &peerState{}
	v.known[id] = st
	return st
}

// verify checks a response as the Stapler does. With FetchTimeout (the
// caller allows network requests), a delegated signer is also checked for
// revocation at the leaf's responder, within ctx.
func (v *Verifier) verify(ctx context.Context, raw []byte, leaf, issuer *x509.Certificate, now time.Time) (*record.Entry, error) {
	v.init()
	url := ""
	if v.FetchTimeout > 0 {
		url = ocspfetch.Resolve(leaf, "", v.ResponderOverrides)
	}
	return v.fetcher.Verify(ctx, raw, leaf, issuer, url, now, false)
}

// answer returns the newest valid answer about leaf: a current one known,
// else the responder's, asked once for all concurrent connections and
// waited for until ctx ends. A failed request is remembered, and the
// responder not asked again until its backoff has passed.
func (v *Verifier) answer(ctx context.Context, id string, leaf, issuer *x509.Certificate) (*record.Entry, error) {
	return v.knownOrAsked(ctx, id, leaf, issuer, false)
}

// answerPastHold is answer, asking the responder although the answer known
// is a hold a CRL listed (see recheckHold).
func (v *Verifier) answerPastHold(ctx context.Context, id string, leaf, issuer *x509.Certificate) (*record.Entry, error) {
	return v.knownOrAsked(ctx, id, leaf, issuer, true)
}

// knownOrAsked is answer; pastHold asks the responder although the answer known is
// a hold a CRL listed.
func (v *Verifier) knownOrAsked(ctx context.Context, id string, leaf, issuer *x509.Certificate, pastHold bool) (*record.Entry, error) {
	v.init()
	now := v.now()
	v.mu.Lock()
	if st := v.known[id]; st != nil {
		if st.newest != nil && st.newest.Usable(now) && !(pastHold && crlHold(st.newest)) {
			v.mu.Unlock()
			return st.newest, nil
		}
		if st.failed != nil && now.Before(st.retryAt) {
			err := fmt.Errorf("%w (remembered; the responder is asked again at %s)", st.failed, st.retryAt.UTC().Format(time.RFC3339))
			v.mu.Unlock()
			return nil, err
		}
	}
	v.mu.Unlock()
	url := ocspfetch.Resolve(leaf, "", v.ResponderOverrides)
	if url == "" {
		return nil, ErrNoResponderURL
	}
	// No time left: by the context, or by the clock when the deadline has
	// passed and the context's timer has not fired yet (a delegate check
	// that ran out its own time may return first).
	if dl, ok := ctx.Deadline(); ctx.Err() != nil || ok && !time.Now().Before(dl) {
		return nil, fmt.Errorf("no time left to ask %s: %w", url, context.DeadlineExceeded)
	}
	type result struct {
		e   *record.Entry
		err error
	}
	r, err := v.fetcher.Share(ctx, id, func() any {
		// The request outlives a caller that gives up: it is shared.
		fctx, cancel := context.WithTimeout(context.Background(), v.FetchTimeout)
		defer cancel()
		e, err := v.fetcher.Fetch(fctx, url, leaf, issuer, v.now, false)
		now := v.now()
		if err == nil && e.Status != record.Good && e.Status != record.Revoked {
			// An unknown answer decides nothing: remembered as a failure,
			// with the same backoff, so that a responder that does not know
			// the certificate is not asked again by every connection.
			err = ErrUnknownStatus
		}
		if err != nil {
			err = fmt.Errorf("%s: %w", url, err)
			v.mu.Lock()
			st := v.state(id, now)
			st.failures++
			st.failed = err
			st.retryAt = now.Add(min(verifierRetryMin<<min(st.failures-1, 16), verifierRetryMax))
			v.mu.Unlock()
			return result{err: err}
		}
		v.learn(id, leaf, e, now)
		v.mu.Lock()
		st := v.state(id, now)
		st.failures, st.failed, st.retryAt = 0, nil, time.Time{}
		if st.newest != nil && now.Before(st.keepUntil) && newer(st.newest, e) {
			e = st.newest // an older answer never replaces a newer one
			if crlHold(e) {
				// Asked past a CRL's hold, the responder said nothing newer:
				// not asked again before the backoff, as after a failure.
				st.failures++
				st.failed = fmt.Errorf("%s: its answer is not newer than the CRL that lists the certificate on hold", url)
				st.retryAt = now.Add(min(verifierRetryMin<<min(st.failures-1, 16), verifierRetryMax))
			}
		}
		v.mu.Unlock()
		return result{e: e}
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", url, err)
	}
	return r.(result).e, r.(result).err
}
