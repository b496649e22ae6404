package ocspfetch

import (
	"context"
	"crypto/x509"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/staplerkit/ocsp/internal/ocspcheck"
	"github.com/staplerkit/ocsp/internal/prune"
	"github.com/staplerkit/ocsp/internal/record"
	"golang.org/x/sync/singleflight"
)

// Fetcher is the one way from a question to a verified answer, for the
// Stapler and the Verifier alike: it asks a responder, verifies the answer
// (internal/ocspcheck) and checks a delegated signer's own status, and it shares
// each request among the callers that ask at the same time. A shared
// request runs on the fetcher's context, never a caller's: a caller that
// gives up stops waiting, and the request goes on for the others.
type Fetcher struct {
	cfg Config

	flight singleflight.Group // one request per key in flight

	mu    sync.Mutex                // guards known and getRefused
	known map[string]delegateStatus // delegate statuses, by delegate DER
	// getRefused holds the responders (by URL) that refused a GET which a
	// POST then answered, and until when they are asked by POST alone.
	getRefused map[string]time.Time
}

// Config is what a Fetcher asks with and what it tells its owner.
type Config struct {
	Client *http.Client
	// Verify holds the skew, SHA-1 and undated settings answers are
	// verified with; SkipSignature is per call.
	Verify ocspcheck.Options
	// Base ends shared requests (the Stapler's Close); Timeout bounds a
	// delegate check (the Stapler's response_timeout, the Verifier's
	// FetchTimeout).
	Base    context.Context
	Timeout func() time.Duration
	// Begin, when set, registers a shared request about to start, so that
	// its owner's Close can wait for it; it fails once the owner is
	// closing. end is called when the request ends.
	Begin func() (end func(), err error)
	// FellBack, when set, is called each time a refused GET is sent again
	// by POST (the Stapler counts and logs it); remembered tells whether
	// the responder is now asked by POST alone.
	FellBack func(url string, getErr error, remembered bool)
	// Pace, when set, is waited on before a certificate's query is sent
	// again by the other method (the Stapler's rate limit covers it too,
	// ahead of the other certificates' queries). A delegate check is not
	// paced, as its first request is not: a check that ran out of time
	// waiting would accept a delegate the responder says is revoked.
	Pace func(ctx context.Context) error
}

// GetRetry is how long a responder that refused a GET (and answered the
// POST that followed) is asked by POST alone before a GET is tried again:
// one wasted request an hour per responder, not per certificate.
const GetRetry = time.Hour

// maxGETRefusals bounds how many responders' refusals are remembered.
const maxGETRefusals = 1024

// Ask sends the request about leaf to the responder at url and returns the
// body of its answer: by GET when the URL fits in 255 bytes (RFC 5019, so
// that caches can answer), by POST otherwise. A responder that refuses the
// GET (a 4xx, an answer that is not an OCSP response, malformedRequest;
// cfssl's GET handler unescapes a + into a space, older ones answer 404,
// 405 or an HTML page) is asked again at once by POST, and asked by POST
// alone for GetRetry once a POST answered it; one that refuses that POST
// then is asked again at once by GET, and by GET from then on when it
// answers. Both requests share ctx's deadline.
func (f *Fetcher) Ask(ctx context.Context, url string, leaf, issuer *x509.Certificate, now time.Time, paced bool) ([]byte, error) {
	der, getURL, err := ocspRequest(url, leaf, issuer)
	if err != nil {
		return nil, err
	}
	if len(getURL) > maxGETURL {
		return sendRequest(ctx, f.cfg.Client, http.MethodPost, url, getURL, der)
	}
	f.mu.Lock()
	until, postOnly := f.getRefused[url]
	f.mu.Unlock()
	first, second := http.MethodGet, http.MethodPost
	if postOnly && now.Before(until) {
		first, second = http.MethodPost, http.MethodGet
	}
	body, firstErr := sendRequest(ctx, f.cfg.Client, first, url, getURL, der)
	if !refusedMethod(body, firstErr) || ctx.Err() != nil {
		if postOnly && first == http.MethodGet && firstErr == nil {
			f.forgetRefusal(url) // GET works again
		}
		return body, firstErr
	}
	if firstErr == nil {
		firstErr = fmt.Errorf("%w: the answer to a %s is not an OCSP response, or says malformedRequest", ocspcheck.ErrMalformedResponse, first)
	}
	if f.cfg.Pace != nil && paced {
		if err := f.cfg.Pace(ctx); err != nil {
			return nil, fmt.Errorf("%w (before asking again by %s after the %s was refused: %w)", err, second, first, firstErr)
		}
	}
	body, err = sendRequest(ctx, f.cfg.Client, second, url, getURL, der)
	answered := err == nil && !refusedMethod(body, nil)
	switch {
	case answered && second == http.MethodPost:
		f.mu.Lock()
		if _, ok := f.getRefused[url]; !ok && len(f.getRefused) >= maxGETRefusals {
			prune.Map(f.getRefused, maxGETRefusals, func(t time.Time) bool { return !now.Before(t) }, func(time.Time) bool { return false })
		}
		f.getRefused[url] = now.Add(GetRetry)
		f.mu.Unlock()
	case answered:
		f.forgetRefusal(url) // GET works again, POST does not
	}
	if f.cfg.FellBack != nil && second == http.MethodPost {
		f.cfg.FellBack(url, firstErr, answered)
	}
	if err != nil {
		return nil, fmt.Errorf("%w (sent by %s after the %s was refused: %w)", err, second, first, firstErr)
	}
	return body, nil
}

// forgetRefusal asks the responder at url by GET again.
func (f *Fetcher) forgetRefusal(url string) {
	f.mu.Lock()
	delete(f.getRefused, url)
	f.mu.Unlock()
}

// New returns a Fetcher that asks and verifies as cfg says.
func New(cfg Config) *Fetcher {
	if cfg.Begin == nil {
		cfg.Begin = func() (func(), error) { return func() {}, nil }
	}
	return &Fetcher{cfg: cfg, known: map[string]delegateStatus{}, getRefused: map[string]time.Time{}}
}

// Client is the HTTP client f asks with.
func (f *Fetcher) Client() *http.Client { return f.cfg.Client }

// Share runs fn once for every caller that asks under key while it runs,
// and waits for its result until ctx ends. fn runs on a goroutine of its
// own, registered with begin; it is not cancelled by ctx.
func (f *Fetcher) Share(ctx context.Context, key string, fn func() any) (any, error) {
	ch := f.flight.DoChan(key, func() (any, error) {
		end, err := f.cfg.Begin()
		if err != nil {
			return nil, err
		}
		defer end()
		return fn(), nil
	})
	select {
	case r := <-ch:
		return r.Val, r.Err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Fetch asks the responder at url about leaf and verifies the answer as of
// now() (read once the answer is in), within ctx.
func (f *Fetcher) Fetch(ctx context.Context, url string, leaf, issuer *x509.Certificate, now func() time.Time, skipSignature bool) (*record.Entry, error) {
	raw, err := f.Ask(ctx, url, leaf, issuer, now(), true)
	if err != nil {
		return nil, err
	}
	return f.Verify(ctx, raw, leaf, issuer, url, now(), skipSignature)
}

// Verify verifies raw as leaf's response at now. A delegated signer
// without id-pkix-ocsp-nocheck must not be known to be revoked: it is
// asked about at url, within ctx (not at all when url is empty).
func (f *Fetcher) Verify(ctx context.Context, raw []byte, leaf, issuer *x509.Certificate, url string, now time.Time, skipSignature bool) (*record.Entry, error) {
	opts := f.cfg.Verify
	opts.SkipSignature = skipSignature
	e, signer, err := ocspcheck.VerifySigner(raw, leaf, issuer, now, opts)
	if err != nil {
		return nil, err
	}
	e.Unverified = skipSignature
	if signer != nil && url != "" {
		if err := f.checkDelegate(ctx, signer, issuer, url, now); err != nil {
			return nil, err
		}
	}
	return e, nil
}

// delegateStatus is what is known of a delegated responder's revocation.
type delegateStatus struct {
	revoked error // non-nil when revoked
	until   time.Time
}

// DelegateRecheck is how long an undetermined delegate status is trusted
// before it is asked again.
const DelegateRecheck = 10 * time.Minute

// checkDelegate asks the responder whether the delegated responder
// certificate that signed a response is revoked (RFC 6960 4.2.2.2.1),
// returning an ocspcheck.ErrUnauthorizedSigner error when it is. Only an answer
// signed by the issuer itself counts; when the status cannot be
// established (no answer, or one signed by the delegate itself) the
// delegate is accepted, as the RFC leaves to the client. A delegate with
// id-pkix-ocsp-nocheck is never asked about. Answers are cached until they
// expire and shared by every certificate the delegate signs for. The
// request is the fetcher's, bounded by its timeout: a caller whose ctx
// ends stops waiting (the status is undetermined for it, and the delegate
// accepted) but neither cancels the request nor decides what is cached.
func (f *Fetcher) checkDelegate(ctx context.Context, delegate, issuer *x509.Certificate, url string, now time.Time) error {
	if ocspcheck.HasNoCheck(delegate) {
		return nil
	}
	key := string(delegate.Raw)
	f.mu.Lock()
	st, ok := f.known[key]
	f.mu.Unlock()
	if ok && now.Before(st.until) {
		return st.revoked
	}
	if ctx.Err() != nil { // no time left to ask
		return nil
	}
	v, err := f.Share(ctx, "delegate:"+key, func() any {
		rctx, cancel := context.WithTimeout(f.cfg.Base, f.cfg.Timeout())
		defer cancel()
		st := delegateStatus{until: now.Add(DelegateRecheck)}
		raw, err := f.Ask(rctx, url, delegate, issuer, now, false)
		if err == nil {
			e, signer, err := ocspcheck.VerifySigner(raw, delegate, issuer, now, f.cfg.Verify)
			if err == nil && signer == nil {
				st.until = e.Expires.Time()
				if e.Status == record.Revoked {
					st.revoked = fmt.Errorf("%w: signer %q was revoked at %s", ocspcheck.ErrUnauthorizedSigner, delegate.Subject.CommonName, e.RevokedAt.Time().Format(time.RFC3339))
				}
			}
		}
		if f.cfg.Base.Err() == nil { // closing decides nothing either
			f.rememberDelegate(key, st, now)
		}
		return st
	})
	if err != nil {
		return nil
	}
	return v.(delegateStatus).revoked
}

// maxDelegates bounds how many delegated responders' statuses a fetcher
// remembers: each is keyed by the delegate's DER (a kilobyte or so), and
// responders may rotate delegates often, or an attacker's staples name
// fresh ones.
const maxDelegates = 1024

// rememberDelegate keeps st, the status of the delegate whose DER is key.
// At maxDelegates, the statuses past their time go first, then the good
// ones, revocations last, until a quarter of the room is free.
func (f *Fetcher) rememberDelegate(key string, st delegateStatus, now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.known[key]; !ok && len(f.known) >= maxDelegates {
		prune.Map(f.known, maxDelegates,
			func(old delegateStatus) bool { return !now.Before(old.until) },
			func(old delegateStatus) bool { return old.revoked != nil })
	}
	f.known[key] = st
}
