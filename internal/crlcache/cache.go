package crlcache

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/staplerkit/ocsp/internal/crl"
)

// Why a CRL fetched was not kept. The host re-exports them.
var (
	// ErrTooLarge: the CRL is larger than the download cap, or its index
	// alone is larger than Options.MaxMemory. The host's download returns
	// it (wrapped) for the first case.
	ErrTooLarge = errors.New("CRL larger than the cap")
	// ErrRollback: the CRL is older (a lower cRLNumber, or, without
	// numbers, an earlier thisUpdate) than one of its scope accepted from
	// the same distribution point: a stale mirror or a replay.
	ErrRollback = errors.New("CRL older than one already seen")
)

const (
	// MinFetchTimeout is the least time a download is given: a caller
	// waits for it at most its own deadline, and the download goes on for
	// the callers after it.
	MinFetchTimeout = 30 * time.Second
	// RefreshMax is the longest a held CRL goes without a refresh.
	RefreshMax = time.Hour
	// MaxPoints bounds how many distribution points a Cache remembers,
	// all issuers together.
	MaxPoints = 1024
)

// Kind is the kind of certificate a CRL is fetched and looked up for: a
// CRL is kept only when it covers that kind (crl.Scope.CoversKind).
type Kind int

// The kinds of certificates.
const (
	User Kind = 0
	CA   Kind = 1
)

// KindOf is cert's kind: CA when its basic constraints say so.
func KindOf(cert *x509.Certificate) Kind {
	if cert.BasicConstraintsValid && cert.IsCA {
		return CA
	}
	return User
}

// String names the kind ("user", "CA").
func (k Kind) String() string {
	if k == CA {
		return "CA"
	}
	return "user"
}

// Host is what a Cache needs from the verifier that owns it.
type Host struct {
	// Download fetches a distribution point's DER (or PEM) CRL, within
	// ctx, refusing a body over its cap with an error that wraps
	// ErrTooLarge.
	Download func(ctx context.Context, url string) ([]byte, error)
	// Share runs fetch once for every caller that passes the same key
	// while it runs, and returns its result, or ctx's error when ctx ends
	// first (the fetch goes on).
	Share func(ctx context.Context, key string, fetch func() any) (any, error)
	// Fetched is told the outcome of each download, verification and keep
	// (nil: kept); it may be nil.
	Fetched func(err error)
	// Now is the host's clock.
	Now func() time.Time
}

// Options are the host's settings, read at each use.
type Options struct {
	Skew      time.Duration // the clock skew allowed to thisUpdate
	AllowSHA1 bool          // accept CRLs signed with SHA-1
	// MaxMemory bounds the memory the indexes of the CRLs held take
	// together (positive).
	MaxMemory int64
	// FetchTimeout is a download's time limit, raised to MinFetchTimeout.
	FetchTimeout time.Duration
	// RetryMin and RetryMax bound the backoff after failed fetches: it
	// doubles from RetryMin up to RetryMax.
	RetryMin, RetryMax time.Duration
}

// Cache holds CRLs per issuer (the SHA-256 of its certificate, so that two
// CAs that name one URL never share a CRL) and distribution point URL. It
// is safe for concurrent use.
type Cache struct {
	host Host

	mu     sync.Mutex
	points map[[32]byte]map[string]*point
	n      int   // points
	bytes  int64 // MemoryBytes of the CRLs held
	held   int   // CRLs held
}

// New returns an empty Cache that fetches through host.
func New(host Host) *Cache {
	return &Cache{host: host, points: map[[32]byte]map[string]*point{}}
}

// point is what is known of one distribution point of one issuer.
type point struct {
	url string
	// scopes holds, per scope, the CRL of that scope held and the newest
	// one ever accepted: CRLs of two scopes (a CA's user CRL and its
	// authority revocation list, which it may number apart) are never
	// ordered against each other, and a CRL of one scope never displaces
	// another.
	scopes   [crl.Scopes]slot
	lastUsed time.Time
	// kinds is the state of the fetches made for the checks of user
	// certificates and of CA certificates (indexed by Kind).
	kinds [2]fetches
}

// slot is a point's CRL of one scope.
type slot struct {
	held *crl.CRL // the current CRL; nil when none
	// refreshAt is when held is fetched again (by the first lookup after).
	refreshAt time.Time
	// newest is the newest CRL of this scope ever accepted here (held, or
	// one since dropped), by its number and thisUpdate only (not its
	// index): nothing older of this scope is accepted again.
	newest version
}

// fetches is the state of a point's fetches for one kind of certificate.
type fetches struct {
	refreshing bool // a refresh, in the background, is under way
	// downloading is set while a download runs; stalled, once a caller
	// has waited its whole share of its deadline for that download, is
	// why the point is a remembered failure until the download ends (so
	// that the callers after do not each wait their whole share).
	downloading bool
	stalled     error
	// After failed fetches: how many in a row, the last error, and when
	// the point may be asked again.
	failures int
	failed   error
	retryAt  time.Time
}

// holds reports whether p holds a CRL.
func (p *point) holds() bool {
	for i := range p.scopes {
		if p.scopes[i].held != nil {
			return true
		}
	}
	return false
}

// current returns the newest CRL held at p that covers certificates of
// kind and may be relied on at now, and its scope (nil when none).
func (p *point) current(kind Kind, now time.Time, skew time.Duration) (*crl.CRL, crl.Scope) {
	var best *crl.CRL
	var scope crl.Scope
	for s := range p.scopes {
		held := p.scopes[s].held
		if !crl.Scope(s).CoversKind(kind == CA) || !current(held, now, skew) {
			continue
		}
		if best == nil || versionOf(best).older(versionOf(held)) {
			best, scope = held, crl.Scope(s)
		}
	}
	return best, scope
}

// current reports whether c may be relied on at now (Parse checked it
// once; the clock has moved since).
func current(c *crl.CRL, now time.Time, skew time.Duration) bool {
	return c != nil && now.Before(c.NextUpdate) && !c.ThisUpdate.After(now.Add(skew))
}

// HoldsAny reports whether any CRL is held.
func (cc *Cache) HoldsAny() bool {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return cc.held > 0
}

// Lookup returns the newest current CRL held for issuer's point url that
// covers certificates of kind, or nil, without allocating. A CRL due for
// its refresh is fetched again for that kind in the background (once, and
// not while the kind's failure backoff lasts); an expired one is dropped.
func (cc *Cache) Lookup(opts Options, issuer [32]byte, url []byte, issuerCert *x509.Certificate, kind Kind, now time.Time) *crl.CRL {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	p := cc.points[issuer][string(url)]
	if p == nil {
		return nil
	}
	for s := range p.scopes {
		if sl := &p.scopes[s]; sl.held != nil && !now.Before(sl.held.NextUpdate) {
			cc.dropSlot(sl)
		}
	}
	held, scope := p.current(kind, now, opts.Skew)
	if held == nil {
		return nil
	}
	p.lastUsed = now
	f := &p.kinds[kind]
	if !now.Before(p.scopes[scope].refreshAt) && !now.Before(f.retryAt) && !f.refreshing {
		f.refreshing = true
		go cc.shared(context.Background(), opts, issuer, p.url, issuerCert, kind, false)
	}
	return held
}

// Get returns the current CRL of issuer's point url for certificates of
// kind: the newest held that covers them, else a failure remembered, else
// one fetched for every caller that asks meanwhile, waited for until ctx
// ends.
func (cc *Cache) Get(ctx context.Context, opts Options, issuer [32]byte, url string, issuerCert *x509.Certificate, kind Kind) (*crl.CRL, error) {
	if c, err, known := cc.known(opts, issuer, url, kind); known {
		return c, err
	}
	cc.mu.Lock()
	if p := cc.points[issuer][url]; p != nil && p.kinds[kind].stalled != nil {
		err := fmt.Errorf("%w (remembered until that download ends)", p.kinds[kind].stalled)
		cc.mu.Unlock()
		return nil, err
	}
	cc.mu.Unlock()
	if dl, ok := ctx.Deadline(); ctx.Err() != nil || ok && !time.Now().Before(dl) {
		return nil, fmt.Errorf("no time left to fetch it: %w", context.DeadlineExceeded)
	}
	c, err := cc.shared(ctx, opts, issuer, url, issuerCert, kind, true)
	if c == nil && ctx.Err() != nil {
		// This caller waited its whole share and the download goes on: the
		// callers after do not wait for it again.
		err = fmt.Errorf("the download under way took more than a handshake's share of FetchTimeout: %w", err)
		cc.stall(issuer, url, kind, err)
	}
	return c, err
}

// known returns what Get answers without a download for issuer's point
// url and certificates of kind: the newest current CRL held that covers
// them, or a failure whose backoff holds (known is false when neither).
func (cc *Cache) known(opts Options, issuer [32]byte, url string, kind Kind) (c *crl.CRL, err error, known bool) {
	now := cc.host.Now()
	cc.mu.Lock()
	defer cc.mu.Unlock()
	p := cc.points[issuer][url]
	if p == nil {
		return nil, nil, false
	}
	if held, _ := p.current(kind, now, opts.Skew); held != nil {
		return held, nil, true
	}
	if f := &p.kinds[kind]; f.failed != nil && now.Before(f.retryAt) {
		return nil, fmt.Errorf("%w (remembered; asked again at %s)", f.failed, f.retryAt.UTC().Format(time.RFC3339)), true
	}
	return nil, nil, false
}

// stall remembers err as the failure of issuer's point url for
// certificates of kind while the download under way runs (nothing when
// it has ended).
func (cc *Cache) stall(issuer [32]byte, url string, kind Kind, err error) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if p := cc.points[issuer][url]; p != nil && p.kinds[kind].downloading {
		p.kinds[kind].stalled = err
	}
}

// downloading marks a download of issuer's point url for certificates of
// kind as under way.
func (cc *Cache) downloading(issuer [32]byte, url string, kind Kind, now time.Time) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	cc.point(issuer, url, now).kinds[kind].downloading = true
}

// shared is fetch, once for every caller that asks while it runs, waited
// for until ctx ends. A caller's download (recheck, not a background
// refresh) first looks again at what Get looked at: a download that ended
// between Get's look and this one may have brought a CRL, or a failure
// whose backoff holds, and then nothing is downloaded again. A refresh
// that joined such a look, which downloaded nothing, asks once more (its
// own download, as a rule); should that download nothing either, the
// kind is left free for the next lookup's refresh: a refresh is never
// dropped with the kind marked refreshing.
func (cc *Cache) shared(ctx context.Context, opts Options, issuer [32]byte, url string, issuerCert *x509.Certificate, kind Kind, recheck bool) (*crl.CRL, error) {
	type result struct {
		c          *crl.CRL
		err        error
		downloaded bool
	}
	for try := 0; ; try++ {
		r, err := cc.host.Share(ctx, flightKey(issuer, url, kind), func() any {
			if recheck {
				if c, err, known := cc.known(opts, issuer, url, kind); known {
					return result{c, err, false}
				}
			}
			c, err := cc.fetch(opts, issuer, url, issuerCert, kind)
			return result{c, err, true}
		})
		if err != nil {
			return nil, err
		}
		res := r.(result)
		if recheck || res.downloaded {
			return res.c, res.err
		}
		if try > 0 {
			cc.refreshed(issuer, url, kind)
			return res.c, res.err
		}
	}
}

// refreshed marks the background refresh of issuer's point url for
// certificates of kind as ended.
func (cc *Cache) refreshed(issuer [32]byte, url string, kind Kind) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if p := cc.points[issuer][url]; p != nil {
		p.kinds[kind].refreshing = false
	}
}

// flightKey is the key of a download for certificates of kind among the
// host's shared requests (which may share other keys: the stapler's are
// certificate IDs, in hex).
func flightKey(issuer [32]byte, url string, kind Kind) string {
	return fmt.Sprintf("crl %x %d %s", issuer, kind, url)
}

// fetch downloads, verifies and keeps the CRL of issuer's point url for
// certificates of kind, and returns it. A failure is remembered, with its
// backoff; a CRL held stays until its nextUpdate.
func (cc *Cache) fetch(opts Options, issuer [32]byte, url string, issuerCert *x509.Certificate, kind Kind) (*crl.CRL, error) {
	ctx, cancel := context.WithTimeout(context.Background(), max(opts.FetchTimeout, MinFetchTimeout))
	defer cancel()
	cc.downloading(issuer, url, kind, cc.host.Now())
	der, err := cc.host.Download(ctx, url)
	now := cc.host.Now()
	var c *crl.CRL
	if err == nil {
		c, err = crl.Parse(der, issuerCert, crl.Options{URL: url, Now: now, Skew: opts.Skew, AllowSHA1: opts.AllowSHA1})
	}
	if err == nil {
		c, err = cc.keep(opts, issuer, url, c, kind, now)
	}
	if cc.host.Fetched != nil {
		cc.host.Fetched(err)
	}
	if err != nil {
		cc.failed(opts, issuer, url, kind, err, now)
	}
	return c, err
}
