package stapler

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/staplerkit/ocsp/cache"
	"github.com/staplerkit/ocsp/config"
	"github.com/staplerkit/ocsp/stapler/clock"
)

// ErrUnknownCertificate: no managed certificate has the given ID.
var ErrUnknownCertificate = errors.New("stapler: unknown certificate")

// ErrClosed: the Stapler was closed.
var ErrClosed = errors.New("stapler: closed")

// ErrUnknownStatus: the responder answered that it does not know the
// certificate. Such an answer is never stapled; it counts as a failed query.
var ErrUnknownStatus = errors.New("responder does not know the certificate")

// FetchError is a failed query for one certificate. It names the
// certificate and the responder; Err says what went wrong and matches the
// package's sentinels (ErrHTTPStatus, ErrWrongCertificate, ...) with errors.Is.
type FetchError struct {
	ID      string
	Subject string
	Serial  string
	URL     string
	Err     error
}

// Error implements error.
func (e *FetchError) Error() string {
	return fmt.Sprintf("ocsp for certificate %q (serial %s) from %s: %v", e.Subject, e.Serial, e.URL, e.Err)
}

// Unwrap returns the cause.
func (e *FetchError) Unwrap() error { return e.Err }

// Stapler fetches, verifies, caches and refreshes OCSP responses for the
// certificates of the tls.Configs it wraps, and staples them into
// handshakes. Make one with New, wrap configs with Wrap, and Close it when
// done. All methods are safe for concurrent use.
type Stapler struct {
	opts   options
	client *http.Client
	clock  Clock
	log    *slog.Logger

	cfg atomic.Pointer[config.OCSP]
	// index finds a leaf's state on the handshake path without a lock.
	index *certIndex

	mu         sync.Mutex                   // serializes Update and registration
	settingsMu sync.Mutex                   // serializes changes to per-certificate settings
	issuers    map[string]*x509.Certificate // parsed issuers by DER, shared
	byKey      map[[32]byte]*managed        // by ID, in a fleet only
	// defaultSettings is shared by every certificate until its settings change.
	defaultSettings *settings
	order           []*managed

	delegates *delegateChecker

	sched   *scheduler
	flight  singleflight.Group
	persist *persister   // nil without a store
	leaser  cache.Leaser // the store, when it coordinates a fleet

	storeDown atomic.Bool           // the shared store is unreachable
	storeErr  atomic.Pointer[error] // why
	// storeRetryAt is when to try the store again (Unix nanoseconds, real
	// time: it paces network attempts, not OCSP schedules).
	storeRetryAt atomic.Int64
	limit        *limiter // nil without a rate limit
	// counters are the metrics (Metrics).
	counters counters
	// revokedCount counts the managed certificates stapled revoked; while
	// it is not zero, wrapped configs resume no session (see wrap).
	revokedCount atomic.Int64

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	closed atomic.Bool
	// fetches counts the shared fetches in flight (each on a goroutine of
	// its own, which a caller that gives up leaves running); closeMu makes
	// Close's wait for them safe: no fetch starts once Close has begun.
	fetches sync.WaitGroup
	closeMu sync.RWMutex
	// coarse is the coarse clock (Unix nanoseconds) when the clock is the
	// system clock; nil with an injected clock.
	coarse *atomic.Int64

	// configs holds the wrapped clones of configs returned by wrapped
	// GetConfigForClient callbacks.
	configs *configCache
}

// New returns a Stapler with the given cluster configuration (zero fields
// take the documented defaults) and starts its scheduler. It fails with an
// invalid_schema *config.Error when cfg is out of range.
func New(cfg config.OCSP, opts ...Option) (*Stapler, error) {
	if cfg.ResponderURL != "" {
		return nil, &config.Error{Code: config.CodeInvalidSchema, Message: "responder_url: read-only; set it with WithResponderURL"}
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.WithDefaults()
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	if err := o.defaultStapling.Validate(); err != nil {
		return nil, fmt.Errorf("WithDefaultStapling: %w", err)
	}
	s := &Stapler{opts: o, client: o.client, clock: o.clock, log: o.logger}
	if s.client == nil {
		s.client = newHTTPClient()
	}
	s.cfg.Store(&cfg)
	if !cfg.OCSPFunctionality {
		s.log.Info("ocsp: OCSP is off, so nothing is stapled; turn it on with ocsp_functionality: true (New, Update or PUT /v1/ocsp)")
	}
	s.defaultSettings = &settings{stapling: o.defaultStapling}
	s.index = newCertIndex()
	s.configs = newConfigCache()
	s.issuers = map[string]*x509.Certificate{}
	s.delegates = newDelegateChecker(s.client, s.verifyOptions(false))
	s.sched = newScheduler(s.clock)
	s.limit = newLimiter(o.ratePerSecond, o.rateBurst)
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if o.store != nil {
		s.persist = newPersister(o.store, s.log)
		s.leaser, _ = o.store.(cache.Leaser)
		if s.leaser != nil {
			s.byKey = map[[32]byte]*managed{}
		}
		if s.leaser == nil { // a fleet's lease holder writes for itself
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				s.persist.run(s.ctx)
			}()
		}
		if n, ok := o.store.(cache.Notifier); ok && s.leaser != nil {
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				s.watchFleet(n)
			}()
		}
	}
	if _, system := s.clock.(clock.System); system {
		s.coarse = new(atomic.Int64)
		s.coarse.Store(time.Now().UnixNano())
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			runCoarseClock(s.coarse, s.ctx.Done())
		}()
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.runRetirement()
	}()
	s.wg.Add(1 + o.workers)
	go func() {
		defer s.wg.Done()
		s.sched.run(s.ctx)
	}()
	for range o.workers {
		go func() {
			defer s.wg.Done()
			for {
				select {
				case m := <-s.sched.work:
					s.refresh(m)
				case <-s.ctx.Done():
					return
				}
			}
		}()
	}
	return s, nil
}

// Close stops all background work and returns once every goroutine the
// Stapler started has ended: a fetch in flight is cancelled and waited for,
// for at most response_timeout (an HTTP client given with WithHTTPClient
// that ignores cancellation cannot hold Close longer). Wrapped configs keep
// working after Close, serving the staples they have until those expire.
func (s *Stapler) Close() error {
	s.closeMu.Lock()
	if s.closed.Swap(true) {
		s.closeMu.Unlock()
		return nil
	}
	s.cancel()
	s.closeMu.Unlock()
	s.wg.Wait()
	fetched := make(chan struct{})
	go func() {
		s.fetches.Wait()
		close(fetched)
	}()
	t := time.NewTimer(s.cfg.Load().Timeout())
	select {
	case <-fetched:
	case <-t.C:
	}
	t.Stop()
	for _, m := range s.managedList() {
		m.disarm()
	}
	if s.opts.client == nil {
		s.client.CloseIdleConnections()
	}
	return nil
}

// startFetch registers a fetch that is about to start, unless the Stapler
// is closing (it then returns the reason, context.Canceled); the caller
// calls s.fetches.Done when the fetch ends.
func (s *Stapler) startFetch() error {
	s.closeMu.RLock()
	defer s.closeMu.RUnlock()
	if err := s.ctx.Err(); err != nil {
		return err
	}
	s.fetches.Add(1)
	return nil
}

// Get returns the cluster configuration, with responder_url set to the
// responder in use: the WithResponderURL override, else the AIA OCSP URL of
// the first managed certificate that has one.
func (s *Stapler) Get() config.OCSP {
	c := *s.cfg.Load()
	c.ResponderURL = s.opts.responderURL
	if c.ResponderURL == "" {
		for _, m := range s.managedList() {
			if m.url != "" {
				c.ResponderURL = m.url
				break
			}
		}
	}
	return c
}

// Update applies a partial configuration atomically and returns the result.
// A rejected update (an invalid_schema or no_responder_url *config.Error)
// changes nothing. An accepted one takes effect at once: turning OCSP on
// fetches every certificate now, shorter intervals move refreshes earlier,
// and turning it off stops fetching and stapling.
func (s *Stapler) Update(u config.OCSPUpdate) (config.OCSP, error) {
	s.mu.Lock()
	cur := *s.cfg.Load()
	next, err := u.Apply(cur)
	if err == nil && u.OCSPFunctionality != nil && *u.OCSPFunctionality && s.opts.responderURL == "" {
		for _, m := range s.order {
			if m.url == "" && m.leaf != nil && m.settings.Load().stapling.Enabled {
				err = &config.Error{Code: config.CodeNoResponderURL, Message: fmt.Sprintf("certificate %q (id %s) has no OCSP responder URL", m.leaf.Subject.String(), m.ID())}
				break
			}
		}
	}
	if err != nil {
		s.mu.Unlock()
		return s.Get(), err
	}
	s.cfg.Store(&next)
	list := append([]*managed(nil), s.order...)
	s.mu.Unlock()

	if next.OCSPFunctionality {
		now := s.clock.Now()
		for _, m := range list {
			s.reschedule(m, &next, !cur.OCSPFunctionality, now)
		}
	}
	return s.Get(), nil
}

// reschedule moves m's next query earlier when the configuration asks for
// it sooner than planned (now, when refetch is set).
func (s *Stapler) reschedule(m *managed, cfg *config.OCSP, refetch bool, now time.Time) {
	if m.leaf == nil || s.urlFor(m) == "" || !m.settings.Load().stapling.Enabled {
		return
	}
	m.mu.Lock()
	at := now
	switch {
	case refetch:
		if m.entry == nil {
			m.arm()
		}
	case m.tries > 0:
		at = m.lastAttempt.Time().Add(cfg.RecoveryInterval())
	case m.entry != nil:
		at = nextRefresh(m.entry, cfg, m.settings.Load().stapling, now)
	}
	m.plan = min(m.plan, at.UnixNano())
	m.mu.Unlock()
	s.sched.scheduleEarlier(m, at)
}

// Stapling returns the per-certificate settings of a managed certificate.
func (s *Stapler) Stapling(id string) (config.Stapling, error) {
	m, err := s.lookup(id)
	if err != nil {
		return config.Stapling{}, err
	}
	return m.settings.Load().stapling, nil
}

// UpdateStapling merges a PATCH body into a certificate's ocsp_stapling
// object atomically (see config.StaplingUpdate) and returns the result; a
// rejected update changes nothing. {"ocsp_stapling": null} (u.Remove) puts
// the certificate back to the Stapler's defaults for the certificates it
// finds (WithDefaultStapling: enabled, unless set otherwise), not to the
// documented object's defaults, which would turn stapling off.
func (s *Stapler) UpdateStapling(id string, u config.StaplingUpdate) (config.Stapling, error) {
	m, err := s.lookup(id)
	if err != nil {
		return config.Stapling{}, err
	}
	s.settingsMu.Lock()
	defer s.settingsMu.Unlock()
	if u.Remove { // back to the defaults of certificates the Stapler finds
		return s.opts.defaultStapling, s.setStaplingLocked(m, s.opts.defaultStapling)
	}
	next, err := u.Apply(m.settings.Load().stapling)
	if err != nil {
		return m.settings.Load().stapling, err
	}
	return next, s.setStaplingLocked(m, next)
}

// SetStapling replaces a certificate's ocsp_stapling object. An invalid
// object (cache_ttl below 60) is an invalid_schema *config.Error and changes
// nothing. Enabling stapling, changing skip_verify or shortening cache_ttl
// fetches a fresh response now.
func (s *Stapler) SetStapling(id string, st config.Stapling) error {
	if err := st.Validate(); err != nil {
		return err
	}
	st = st.WithDefaults()
	m, err := s.lookup(id)
	if err != nil {
		return err
	}
	s.settingsMu.Lock()
	defer s.settingsMu.Unlock()
	return s.setStaplingLocked(m, st)
}

func (s *Stapler) setStaplingLocked(m *managed, st config.Stapling) error {
	if err := st.Validate(); err != nil {
		return err
	}
	st = st.WithDefaults()
	old := m.settings.Load()
	next := *old
	next.stapling = st
	m.settings.Store(&next)
	o := old.stapling
	if st.Enabled && (!o.Enabled || st.SkipVerify != o.SkipVerify || st.CacheTTL < o.CacheTTL) && s.cfg.Load().OCSPFunctionality {
		s.reschedule(m, s.cfg.Load(), true, s.clock.Now())
	}
	return nil
}

// SetPolicy overrides the Stapler's policy for one certificate. A
// must-staple leaf stays MustStaple whatever is set.
func (s *Stapler) SetPolicy(id string, p Policy) error {
	m, err := s.lookup(id)
	if err != nil {
		return err
	}
	s.settingsMu.Lock()
	defer s.settingsMu.Unlock()
	next := *m.settings.Load()
	next.policy, next.policySet = p, true
	m.settings.Store(&next)
	return nil
}
