package stapler

import (
	"context"
	"crypto/x509"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/staplerkit/ocsp/internal/ocspcheck"
	"github.com/staplerkit/ocsp/internal/record"
	"golang.org/x/sync/singleflight"
)

// fetcher is the one way from a question to a verified answer, for the
// Stapler and the Verifier alike: it asks a responder, verifies the answer
// (verify.go) and checks a delegated signer's own status, and it shares
// each request among the callers that ask at the same time. A shared
// request runs on the fetcher's context, never a caller's: a caller that
// gives up stops waiting, and the request goes on for the others.
type fetcher struct {
	client *http.Client
	opts   ocspcheck.Options // skew and SHA-1; skipSignature is per call
	// base ends shared requests (the Stapler's Close); timeout bounds a
	// delegate check (the Stapler's response_timeout, the Verifier's
	// FetchTimeout).
	base    context.Context
	timeout func() time.Duration
	// begin registers a shared request about to start, so that Close can
	// wait for it; it fails once the owner is closing. end is called when
	// the request ends.
	begin func() (end func(), err error)

	flight singleflight.Group // one request per key in flight

	mu    sync.Mutex                // guards known and getRefused
	known map[string]delegateStatus // delegate statuses, by delegate DER
	// getRefused holds the responders (by URL) that refused a GET which a
	// POST then answered, and until when they are asked by POST alone.
	getRefused map[string]time.Time
	// fellBack, when set, is called each time a refused GET is sent
	// again by POST (the Stapler counts and logs it); remembered tells
	// whether the responder is now asked by POST alone.
	fellBack func(url string, getErr error, remembered bool)
	// pace, when set, is waited on before a certificate's query is sent
	// again by the other method (the Stapler's rate limit covers it too,
	// ahead of the other certificates' queries). A delegate check is not
	// paced, as its first request is not: a check that ran out of time
	// waiting would accept a delegate the responder says is revoked.
	pace func(ctx context.Context) error
}

// getRetry is how long a responder that refused a GET (and answered the
// POST that followed) is asked by POST alone before a GET is tried again:
// one wasted request an hour per responder, not per certificate.
const getRetry = time.Hour

// maxGETRefusals bounds how many responders' refusals are remembered.
const maxGETRefusals = 1024

// ask sends the request about leaf to the responder at url and returns the
// body of its answer: by GET when the URL fits in 255 bytes (RFC 5019, so
// that caches can answer), by POST otherwise. A responder that refuses the
// GET (a 4xx, an answer that is not an OCSP response, malformedRequest;
// cfssl's GET handler unescapes a + into a space, older ones answer 404,
// 405 or an HTML page) is asked again at once by POST, and asked by POST
// alone for getRetry once a POST answered it; one that refuses that POST
// then is asked again at once by GET, and by GET from then on when it
// answers. Both requests share ctx's deadline.
func (f *fetcher) ask(ctx context.Context, url string, leaf, issuer *x509.Certificate, now time.Time, paced bool) ([]byte, error) {
	der, getURL, err := ocspRequest(url, leaf, issuer)
	if err != nil {
		return nil, err
	}
	if len(getURL) > maxGETURL {
		return sendRequest(ctx, f.client, http.MethodPost, url, getURL, der)
	}
	f.mu.Lock()
	until, postOnly := f.getRefused[url]
	f.mu.Unlock()
	first, second := http.MethodGet, http.MethodPost
	if postOnly && now.Before(until) {
		first, second = http.MethodPost, http.MethodGet
	}
	body, firstErr := sendRequest(ctx, f.client, first, url, getURL, der)
	if !refusedMethod(body, firstErr) || ctx.Err() != nil {
		if postOnly && first == http.MethodGet && firstErr == nil {
			f.forgetRefusal(url) // GET works again
		}
		return body, firstErr
	}
	if firstErr == nil {
		firstErr = fmt.Errorf("%w: the answer to a %s is not an OCSP response, or says malformedRequest", ErrMalformedResponse, first)
	}
	if f.pace != nil && paced {
		if err := f.pace(ctx); err != nil {
			return nil, fmt.Errorf("%w (before asking again by %s after the %s was refused: %w)", err, second, first, firstErr)
		}
	}
	body, err = sendRequest(ctx, f.client, second, url, getURL, der)
	answered := err == nil && !refusedMethod(body, nil)
	switch {
	case answered && second == http.MethodPost:
		f.mu.Lock()
		if _, ok := f.getRefused[url]; !ok && len(f.getRefused) >= maxGETRefusals {
			pruneMap(f.getRefused, maxGETRefusals, func(t time.Time) bool { return !now.Before(t) }, func(time.Time) bool { return false })
		}
		f.getRefused[url] = now.Add(getRetry)
		f.mu.Unlock()
	case answered:
		f.forgetRefusal(url) // GET works again, POST does not
	}
	if f.fellBack != nil && second == http.MethodPost {
		f.fellBack(url, firstErr, answered)
	}
	if err != nil {
		return nil, fmt.Errorf("%w (sent by %s after the %s was refused: %w)", err, second, first, firstErr)
	}
	return body, nil
}

// forgetRefusal asks the responder at url by GET again.
func (f *fetcher) forgetRefusal(url string) {
	f.mu.Lock()
	delete(f.getRefused, url)
	f.mu.Unlock()
}

func newFetcher(client *http.Client, opts ocspcheck.Options, base context.Context, timeout func() time.Duration, begin func() (func(), error)) *fetcher {
	if begin == nil {
		begin = func() (func(), error) { return func() {}, nil }
	}
	return &fetcher{client: client, opts: opts, base: base, timeout: timeout, begin: begin, known: map[string]delegateStatus{}, getRefused: map[string]time.Time{}}
}

// share runs fn once for every caller that asks under key while it runs,
// and waits for its result until ctx ends. fn runs on a goroutine of its
// own, registered with begin; it is not cancelled by ctx.
func (f *fetcher) share(ctx context.Context, key string, fn func() any) (any, error) {
	ch := f.flight.DoChan(key, func() (any, error) {
		end, err := f.begin()
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

// fetch asks the responder at url about leaf and verifies the answer as of
// now() (read once the answer is in), within ctx.
func (f *fetcher) fetch(ctx context.Context, url string, leaf, issuer *x509.Certificate, now func() time.Time, skipSignature bool) (*record.Entry, error) {
	raw, err := f.ask(ctx, url, leaf, issuer, now(), true)
	if err != nil {
		return nil, err
	}
	return f.verify(ctx, raw, leaf, issuer, url, now(), skipSignature)
}

// verify verifies raw as leaf's response at now. A delegated signer
// without id-pkix-ocsp-nocheck must not be known to be revoked: it is
// asked about at url, within ctx (not at all when url is empty).
func (f *fetcher) verify(ctx context.Context, raw []byte, leaf, issuer *x509.Certificate, url string, now time.Time, skipSignature bool) (*record.Entry, error) {
	opts := f.opts
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

// delegateRecheck is how long an undetermined delegate status is trusted
// before it is asked again.
const delegateRecheck = 10 * time.Minute

// checkDelegate asks the responder whether the delegated responder
// certificate that signed a response is revoked (RFC 6960 4.2.2.2.1),
// returning an ErrUnauthorizedSigner error when it is. Only an answer
// signed by the issuer itself counts; when the status cannot be
// established (no answer, or one signed by the delegate itself) the
// delegate is accepted, as the RFC leaves to the client. A delegate with
// id-pkix-ocsp-nocheck is never asked about. Answers are cached until they
// expire and shared by every certificate the delegate signs for. The
// request is the fetcher's, bounded by its timeout: a caller whose ctx
// ends stops waiting (the status is undetermined for it, and the delegate
// accepted) but neither cancels the request nor decides what is cached.
func (f *fetcher) checkDelegate(ctx context.Context, delegate, issuer *x509.Certificate, url string, now time.Time) error {
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
	v, err := f.share(ctx, "delegate:"+key, func() any {
		rctx, cancel := context.WithTimeout(f.base, f.timeout())
		defer cancel()
		st := delegateStatus{until: now.Add(delegateRecheck)}
		raw, err := f.ask(rctx, url, delegate, issuer, now, false)
		if err == nil {
			e, signer, err := ocspcheck.VerifySigner(raw, delegate, issuer, now, f.opts)
			if err == nil && signer == nil {
				st.until = e.Expires.Time()
				if e.Status == record.Revoked {
					st.revoked = fmt.Errorf("%w: signer %q was revoked at %s", ErrUnauthorizedSigner, delegate.Subject.CommonName, e.RevokedAt.Time().Format(time.RFC3339))
				}
			}
		}
		if f.base.Err() == nil { // closing decides nothing either
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
func (f *fetcher) rememberDelegate(key string, st delegateStatus, now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.known[key]; !ok && len(f.known) >= maxDelegates {
		pruneMap(f.known, maxDelegates,
			func(old delegateStatus) bool { return !now.Before(old.until) },
			func(old delegateStatus) bool { return old.revoked != nil })
	}
	f.known[key] = st
}
