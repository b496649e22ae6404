package cache

import (
	"context"
	"errors"
	"time"
)

// ErrLeaseLost is returned by Leaser.PutLeased when the token no longer
// holds the lease: the holder was paused (a GC pause, SIGSTOP, a slow
// network) past its lease, and another may have taken over and written.
var ErrLeaseLost = errors.New("cache: the lease was lost; nothing written")

// Leaser is implemented by a Store that several servers share, so that one
// of them at a time queries the responder for a certificate while the
// others wait for the answer to appear in the store. The Stapler checks for
// it with a type assertion, the way net/http checks a ResponseWriter for
// http.Flusher.
type Leaser interface {
	// Lease takes the lease on key for ttl if no one holds it, and returns a
	// token for Release; ok is false when another holder has it. The lease
	// ends by itself after ttl, so a holder that dies holds the others up
	// for at most ttl (the Stapler asks for 2 × response_timeout + 2 s).
	Lease(ctx context.Context, key string, ttl time.Duration) (token string, ok bool, err error)
	// Release ends the lease if token still holds it; a lease taken over by
	// another holder since is left alone.
	Release(ctx context.Context, key, token string) error
	// PutLeased is Put, fenced by a lease: value is stored under key only
	// if token still holds the lease on lease, checked and written in one
	// atomic step; otherwise nothing is written and the error is
	// ErrLeaseLost. A holder resumed after its lease ended thus never
	// overwrites what the server that took over stored.
	PutLeased(ctx context.Context, lease, token, key string, value []byte) error
}

// Notifier is implemented by a shared Store that tells its users when
// another user changed a key, so that a new response (above all a
// revocation) reaches every server at once instead of at its next refresh.
type Notifier interface {
	// Subscribe calls f with each key that another user of the store Put,
	// until ctx ends, and returns then. It reconnects by itself after
	// failures. Changes made while it was disconnected are not replayed:
	// instead, whenever changes may have been missed (it subscribed again
	// after losing its subscription, or first subscribed after failing
	// to), it calls f with the empty key, which means "any key may have
	// changed": the Stapler then reads every certificate's keys again.
	// It does so too once its first subscription is live, since changes
	// announced before that were not heard either, and the Stapler reads
	// keys from its start. Calls to f never block for long; f must not
	// either.
	Subscribe(ctx context.Context, f func(key string)) error
}
