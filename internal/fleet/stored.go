package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/staplerkit/ocsp/cache"
	"github.com/staplerkit/ocsp/config"
	"github.com/staplerkit/ocsp/internal/record"
)

// What the fleet keeps in the store for a certificate: its response,
// under its ID, and its recovery state, under stateSuffix; how they are
// read, checked and written.

// stateSuffix names the key of a certificate's fleet state.
const stateSuffix = ".state"

// State is a certificate's recovery state, shared through the store.
type State struct {
	Tries       int    `json:"tries"`
	Failed      bool   `json:"failed"`
	LastError   string `json:"last_error,omitempty"`
	LastAttempt int64  `json:"last_attempt"` // Unix nanoseconds
	Next        int64  `json:"next"`         // when the fleet tries next after a failure; 0 after a success
}

// plausible reports whether a server of the fleet could have written st
// at now (give or take skew): its tries within recovery_max_tries, its last
// attempt not in the future, and its next attempt no later than one
// query_frequency after the last. A state that fails this was tampered with
// (or written by a server configured very differently) and is not adopted.
func (st *State) plausible(cfg *config.OCSP, now time.Time, skew time.Duration) bool {
	latest := now.Add(skew).UnixNano()
	return st.Tries >= 0 && st.Tries <= cfg.MaxTries() &&
		st.LastAttempt <= latest &&
		st.Next <= time.Unix(0, st.LastAttempt).Add(cfg.QueryInterval()+skew).UnixNano()
}

// better reports whether a is a better answer than b to keep in the
// store: newer (by thisUpdate, then producedAt), or, at the same times, a
// revocation over a good answer (as supersedes installs them).
func better(a, b *record.Entry) bool {
	if sameTimes := a.ThisUpdate == b.ThisUpdate && a.ProducedAt == b.ProducedAt; sameTimes {
		return a.Status == record.Revoked && b.Status != record.Revoked
	}
	return a.Newer(b)
}

// sameAnswer reports whether a and b are the same answer (by the
// responder's own times and status), whatever their fetch times say.
func sameAnswer(a, b *record.Entry) bool {
	return a != nil && b != nil && a.ThisUpdate == b.ThisUpdate && a.ProducedAt == b.ProducedAt && a.Status == b.Status
}

// vouchWindow is how long after it was produced a stored response is one
// the fleet could have stored now: the fleet queries each certificate at
// least every query_frequency while the responder answers, and retries
// for recovery_max_tries × recovery_frequency when it does not (plus the
// clock skew allowed).
func (f *Source[C, O]) vouchWindow() time.Duration {
	cfg := f.host.Config()
	return cfg.QueryInterval() + time.Duration(cfg.MaxTries())*cfg.RecoveryInterval() + f.skew
}

// certificateHold is the revocation reason a CA may take back.
const certificateHold = 6

// unvouched reports whether shared, a stored response, verified, is one
// this server cannot vouch for: a good answer, while it knows nothing of
// the certificate of its own (no verified answer, no query of its own: a
// start, a restart, a server added to the fleet), produced longer ago than
// vouchWindow. Whoever can write the store could have written back an
// old good answer over a revocation every running server knows; such a
// server asks the responder first.
func (f *Source[C, O]) unvouched(m C, shared *record.Entry, now time.Time) bool {
	if shared == nil {
		return false
	}
	if shared.Status == record.Revoked && shared.RevocationReason != certificateHold {
		// A signed revocation is adopted whenever it was produced: no
		// replay of one makes a server staple an answer it should not
		// (a revoked certificate stays revoked), and a stale responder's
		// (or edge's) older good answer is then never installed over it.
		// Not a hold, which the CA may release (RFC 5280 5.3.1): an old
		// one is vouched for as a good answer is.
		return false
	}
	own := f.host.Knows(m)
	produced := max(shared.ProducedAt, shared.ThisUpdate).Time()
	return !own && produced.Before(now.Add(-f.vouchWindow()))
}

// readShared reads and verifies the stored response (nil when absent or
// unusable: such a value is replaced by the next fetch) and the fleet state.
func (f *Source[C, O]) readShared(ctx context.Context, m C) (*record.Entry, *State, error) {
	var state *State
	value, err := f.store.Get(ctx, m.ID()+stateSuffix)
	switch {
	case errors.Is(err, cache.ErrUnusableValue):
		// Of another type, or too large: written by no server; replaced
		// at the next query, as a state that does not parse.
		f.log.Warn("ocsp: ignoring the shared state; it will be replaced", "id", m.ID(), "err", err)
	case err == nil:
		state = new(State)
		if json.Unmarshal(value, state) != nil || !state.plausible(f.host.Config(), f.host.Now(), f.skew) {
			// The store is not trusted with the state either: one that no
			// server could have written (a retry planned past the regular
			// schedule, say) is ignored, and replaced at the next query.
			f.log.Warn("ocsp: ignoring the shared state; it will be replaced", "id", m.ID())
			state = nil
		}
	case !errors.Is(err, cache.ErrCacheMiss):
		return nil, nil, err
	}
	value, err = f.store.Get(ctx, m.ID())
	if errors.Is(err, cache.ErrCacheMiss) {
		return nil, state, nil
	}
	if errors.Is(err, cache.ErrUnusableValue) {
		f.log.Warn("ocsp: ignoring the shared response; it will be replaced", "id", m.ID(), "err", err)
		return nil, state, nil
	}
	if err != nil {
		return nil, nil, err
	}
	e, err := f.host.Verify(ctx, m, value)
	if err != nil {
		f.log.Warn("ocsp: ignoring the shared response; it will be replaced", "id", m.ID(), "err", err)
		return nil, state, nil
	}
	return e, state, nil
}

// writeShared stores what a server got: the fresh response, if any, and
// the fleet state. A lease holder passes its token, and its writes are
// fenced by it: once the lease is lost nothing is written, and the result
// is cache.ErrLeaseLost. The writes get a context of their own, so that a
// holder paused past its context's deadline does not report the store
// unreachable; base is what they are cut short by (the host's context,
// or, for the shares made while it closes, one of their own).
func (f *Source[C, O]) writeShared(base context.Context, m C, next time.Time, fresh *record.Entry, token string) error {
	// A removed certificate writes nothing, whether Remove ran during the
	// query or from the status hook: checked under f.writes, which
	// forget holds while it deletes, so that no write lands after the
	// deletion.
	f.writes.RLock()
	defer f.writes.RUnlock()
	if m.Removed() {
		return nil
	}
	ctx, cancel := context.WithTimeout(base, f.timeout)
	defer cancel()
	start := time.Now()
	rec := f.host.Recovery(m)
	state := State{Tries: rec.Tries, Failed: rec.Failed, LastAttempt: rec.LastAttempt}
	if rec.Err != nil {
		state.LastError = rec.Err.Error()
		if !next.IsZero() {
			state.Next = next.UnixNano()
		}
	}
	put := func(key string, value []byte) error {
		if token == "" {
			return f.store.Put(ctx, key, value)
		}
		return f.leaser.PutLeased(ctx, m.ID(), token, key, value)
	}
	var err error
	if fresh != nil {
		err = put(m.ID(), record.Encode(fresh.Raw, fresh.FetchedAt.Time()))
	}
	if err == nil {
		value, _ := json.Marshal(state)
		err = put(m.ID()+stateSuffix, value)
	}
	if errors.Is(err, cache.ErrLeaseLost) {
		return cache.ErrLeaseLost
	}
	if err != nil {
		f.failed(m, err, start, OpWrite)
	}
	return err
}
