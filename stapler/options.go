package stapler

import (
	"crypto/x509"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"time"

	"github.com/staplerkit/ocsp/cache"
	"github.com/staplerkit/ocsp/config"
	"github.com/staplerkit/ocsp/internal/ocspfetch"
	"github.com/staplerkit/ocsp/stapler/clock"
)

// Option configures a Stapler.
type Option func(*options)

type options struct {
	// storeTimeout bounds one operation on a shared store (storeTimeout
	// when zero); tests set it shorter with withStoreTimeout.
	storeTimeout    time.Duration
	logger          *slog.Logger
	client          *http.Client
	clock           clock.Clock
	issuers         []*x509.Certificate
	responderURL    string
	overrides       map[string]string // see WithResponderOverrides
	hook            func(StatusChange)
	stapleHook      func(StapleChange)
	policy          Policy
	defaultStapling config.Stapling
	coldWait        time.Duration
	workers         int
	skew            time.Duration
	undated         time.Duration // see WithNoNextUpdateLifetime
	dropOnFailure   bool
	store           cache.Store
	ratePerSecond   float64
	rateBurst       int
	allowSHA1       bool
	idleRetirement  time.Duration
	maxManaged      int
}

func defaultOptions() options {
	return options{
		logger:          slog.Default(),
		clock:           clock.System{},
		defaultStapling: config.Stapling{Enabled: true, CacheTTL: DefaultDiscoveredCacheTTL},
		workers:         16,
		skew:            defaultClockSkew,
		ratePerSecond:   DefaultRateLimit,
		rateBurst:       DefaultRateLimit,
		idleRetirement:  DefaultIdleRetirement,
	}
}

// WithLogger sets the logger (slog.Default() by default). The Stapler logs
// failures, status changes and certificates it cannot staple, once each.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) {
		if l != nil {
			o.logger = l
		}
	}
}

// WithHTTPClient sets the client that talks to responders. By default the
// Stapler uses its own transport and follows at most 3 redirects, to http and
// https only; a client given here keeps its own redirect policy. Either way
// response_timeout bounds each exchange through its context.
func WithHTTPClient(c *http.Client) Option {
	return func(o *options) { o.client = c }
}

// WithClock sets the clock (clock.System by default), so tests can run
// refreshes, retries and expiry on an injected clock.
func WithClock(c clock.Clock) Option {
	return func(o *options) {
		if c != nil {
			o.clock = c
		}
	}
}

// WithIssuer supplies issuer certificates for leaves whose chain does not
// include the issuer. Without it, the issuer comes from the chain, else from
// the leaf's AIA caIssuers URL (and is checked to have signed the leaf).
func WithIssuer(issuers ...*x509.Certificate) Option {
	return func(o *options) { o.issuers = append(o.issuers, issuers...) }
}

// WithResponderOverrides replaces the responder of the certificates whose
// AIA OCSP URL is a key of overrides (matched exactly, as the certificate
// spells it) with the value: an internal name not resolvable from a DMZ,
// a proxy in front of one CA. An empty value disables fetching for those
// certificates (their state is not_applicable, and nothing is stapled).
// An override is more specific than WithResponderURL, which applies to the
// certificates no override names. Status shows the responder asked
// (responder_url) and, when an override applies, the certificate's own
// (aia_responder_url). Keys and values must be absolute http or https URLs
// (New fails with an invalid_schema *config.Error otherwise). The map is
// copied.
func WithResponderOverrides(overrides map[string]string) Option {
	return func(o *options) { o.overrides = maps.Clone(overrides) }
}

// validateOverrides checks the URLs of WithResponderOverrides.
func validateOverrides(overrides map[string]string) error {
	for from, to := range overrides {
		if !ocspfetch.IsResponderURL(from) {
			return &config.Error{Code: config.CodeInvalidSchema, Message: fmt.Sprintf("responder override: %q is not an http or https URL", from)}
		}
		if to != "" && !ocspfetch.IsResponderURL(to) {
			return &config.Error{Code: config.CodeInvalidSchema, Message: fmt.Sprintf("responder override for %q: %q is not an http or https URL (empty disables fetching)", from, to)}
		}
	}
	return nil
}

// WithResponderURL makes every certificate be queried at url instead of
// its AIA OCSP URL (like nginx's ssl_stapling_responder). It is the
// responder_url that Get reports.
func WithResponderURL(url string) Option {
	return func(o *options) { o.responderURL = url }
}

// WithStatusHook calls f whenever a certificate's state changes (for example
// good -> revoked, or to failed when the recovery tries are used up). f runs
// on the goroutine that saw the change, so it should return quickly.
func WithStatusHook(f func(StatusChange)) Option {
	return func(o *options) { o.hook = f }
}

// WithPolicy sets the policy for every certificate (Lenient by default).
// SetPolicy overrides it per certificate, and a leaf with the RFC 7633
// must-staple extension is always MustStaple.
func WithPolicy(p Policy) Option {
	return func(o *options) { o.policy = p }
}

// DefaultDiscoveredCacheTTL is the cache_ttl, in seconds, of certificates
// the Stapler finds on its own: a week, so that in practice a response's
// own nextUpdate bounds how long it is served. A short cache_ttl drops a good
// staple as soon as one refresh fails (Apache mod_ssl's best-known flaw).
const DefaultDiscoveredCacheTTL = 7 * 24 * 3600

// WithDefaultStapling sets the per-certificate settings of certificates the
// Stapler finds on its own. The default is {enabled: true, skip_verify:
// false, cache_ttl: DefaultDiscoveredCacheTTL}: wrapping a config means
// wanting it stapled. (The documented object's own defaults are enabled
// false and cache_ttl 3600; SetStapling takes an object as it is.)
func WithDefaultStapling(s config.Stapling) Option {
	return func(o *options) { o.defaultStapling = s.WithDefaults() }
}

// WithColdWait bounds how long a handshake for a certificate that has no
// staple yet waits for the first fetch before it goes on without one. The
// default is a quarter of response_timeout. A handshake whose cold wait
// ends while the fetch's query to the responder is under way waits on for
// that query, which ends within response_timeout of its start (plus one
// cold wait for its verification): on a machine slowed down by a herd of
// first handshakes, the one query that staples them all is not given up
// on. A fetch not yet started (held by the rate limit or the workers) is
// waited for only for the cold wait.
func WithColdWait(d time.Duration) Option {
	return func(o *options) { o.coldWait = d }
}

// WithWorkers bounds how many fetches run at once (16 by default).
func WithWorkers(n int) Option {
	return func(o *options) {
		if n > 0 {
			o.workers = n
		}
	}
}

// WithClockSkew sets how far a response's thisUpdate, and a delegated
// responder's notBefore, may be ahead of the local clock, with the same
// convention as Verifier.ClockSkew and VerifyOptions.ClockSkew: zero means
// the default, 5 minutes (as nginx and HAProxy allow); a negative value
// allows none.
func WithClockSkew(d time.Duration) Option {
	return func(o *options) { o.skew = skewOrDefault(d) }
}

// WithNoNextUpdateLifetime sets how long after its thisUpdate a response
// without nextUpdate is stapled (RFC 6960 allows one: openssl ocsp sends
// them by default). Zero means DefaultNoNextUpdateLifetime (an hour); a
// negative value refuses such responses with ErrNoNextUpdate. The staple
// is served at most until then, and at most cache_ttl after it was
// fetched, and refreshed at half its life; Status shows the expiry chosen
// as staple_expires, with next_update absent. Verifier.NoNextUpdateLifetime
// and VerifyOptions.NoNextUpdateLifetime read the value the same way.
func WithNoNextUpdateLifetime(d time.Duration) Option {
	return func(o *options) { o.undated = d }
}

// WithDropOnFailure drops a certificate's staple as soon as its recovery
// tries are used up, matching the documented "the cached status is
// invalidated" to the letter. By default the last good response is served
// until its own expiry, which is correct by RFC 6960 and better for clients.
func WithDropOnFailure() Option {
	return func(o *options) { o.dropOnFailure = true }
}

// WithStore keeps responses in store across restarts (see cache.DirStore).
// On start each certificate's stored response is verified again, as if just
// fetched, and stapled at once when valid, with no responder request; a
// corrupt, truncated or foreign value is logged and replaced by a fresh
// fetch. New responses are written on a goroutine of their own, so a slow or
// failing store never delays a staple.
func WithStore(store cache.Store) Option {
	return func(o *options) { o.store = store }
}

// DefaultRateLimit is the default cap on responder requests per second
// (and the burst allowed at once), so that starting with many certificates
// does not flood a responder. Responses restored from a store are free.
const DefaultRateLimit = 100

// WithRateLimit caps responder requests at perSecond, with bursts of up to
// burst at once; perSecond <= 0 removes the cap.
func WithRateLimit(perSecond float64, burst int) Option {
	return func(o *options) { o.ratePerSecond, o.rateBurst = perSecond, burst }
}

// WithAllowSHA1 accepts OCSP responses signed with SHA-1, and delegated responder
// certificates signed with SHA-1, for legacy private PKI. By default both
// are refused with an error that matches ErrSHA1Signature: SHA-1 signatures
// can be forged (a chosen-prefix collision costs tens of thousands of
// dollars), and public CAs stopped signing with it years ago. The Verifier
// has its AllowSHA1 field, VerifyResponse VerifyOptions.AllowSHA1.
func WithAllowSHA1() Option {
	return func(o *options) { o.allowSHA1 = true }
}

// DefaultIdleRetirement is how long a certificate the Stapler found on its
// own (through GetCertificate, GetConfigForClient, GetClientCertificate or
// Add; not one listed in a wrapped config's Certificates) may go without a
// handshake before it retires: 30 days, longer than a response's usual
// validity (7 days at most at the public CAs) several times over, so that a
// certificate in real use, even served once a day or once a week, never
// goes cold.
const DefaultIdleRetirement = 30 * 24 * time.Hour

// WithIdleRetirement sets how long a certificate the Stapler found on its
// own may go without a handshake before it retires (DefaultIdleRetirement;
// 0 or less: never). A retired certificate is no longer queried, its state
// and staple are dropped, and it is logged once at Info; served again, it
// is managed afresh, with a fetch.
func WithIdleRetirement(d time.Duration) Option {
	return func(o *options) { o.idleRetirement = d }
}

// WithMaxCertificates bounds how many certificates the Stapler manages
// (off by default): past n, the certificates it found on its own that were
// served least recently retire first, so that memory and responder load
// follow the live set even under a flood of distinct leaves. Listed
// certificates never retire.
func WithMaxCertificates(n int) Option {
	return func(o *options) { o.maxManaged = n }
}

// withStoreTimeout bounds each operation on a shared store (tests).
func withStoreTimeout(d time.Duration) Option {
	return func(o *options) { o.storeTimeout = d }
}
