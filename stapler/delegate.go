package stapler

import (
	"context"
	"crypto/x509"
	"fmt"
	"net/http"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/staplerkit/ocsp/cache"
)

// delegateStatus is what is known of a delegated responder's revocation.
type delegateStatus struct {
	revoked error // non-nil when revoked
	until   time.Time
}

// delegateRecheck is how long an undetermined delegate status is trusted
// before it is asked again.
const delegateRecheck = 10 * time.Minute

// delegateChecker asks a responder whether the delegated responder
// certificate that signed a response is revoked (RFC 6960 4.2.2.2.1). Only
// an answer signed by the issuer itself counts; when the status cannot be
// established (no answer, or one signed by the delegate itself) the
// delegate is accepted, as the RFC leaves to the client. Answers are cached
// until they expire and shared by every certificate the delegate signs for.
type delegateChecker struct {
	client *http.Client
	opts   verifyOptions // for the delegate's own status

	flight singleflight.Group
	mu     sync.Mutex
	known  map[string]delegateStatus // by delegate DER
}

func newDelegateChecker(client *http.Client, opts verifyOptions) *delegateChecker {
	return &delegateChecker{client: client, opts: opts, known: map[string]delegateStatus{}}
}

// check returns an ErrUnauthorizedSigner error when delegate is known to be
// revoked; a delegate with id-pkix-ocsp-nocheck is never asked about.
func (d *delegateChecker) check(ctx context.Context, delegate, issuer *x509.Certificate, url string, now time.Time) error {
	if hasOCSPNoCheck(delegate) {
		return nil
	}
	key := string(delegate.Raw)
	d.mu.Lock()
	st, ok := d.known[key]
	d.mu.Unlock()
	if ok && now.Before(st.until) {
		return st.revoked
	}
	if ctx.Err() != nil { // no time left to ask
		return nil
	}
	// The first caller's context bounds the request; every caller waits at
	// most until its own deadline, after which the status is undetermined
	// for it (and the delegate accepted, as above).
	ch := d.flight.DoChan(key, func() (any, error) {
		st := delegateStatus{until: now.Add(delegateRecheck)}
		raw, _, err := fetchResponse(ctx, d.client, url, delegate, issuer)
		if err == nil {
			e, signer, err := verifyResponseSigner(raw, delegate, issuer, now, d.opts)
			if err == nil && signer == nil {
				st.until = e.Expires.Time()
				if e.Status == cache.Revoked {
					st.revoked = fmt.Errorf("%w: signer %q was revoked at %s", ErrUnauthorizedSigner, delegate.Subject.CommonName, e.RevokedAt.Time().Format(time.RFC3339))
				}
			}
		}
		d.mu.Lock()
		d.known[key] = st
		d.mu.Unlock()
		return st, nil
	})
	select {
	case r := <-ch:
		return r.Val.(delegateStatus).revoked
	case <-ctx.Done():
		return nil
	}
}
