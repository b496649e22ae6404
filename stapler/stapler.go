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

	"github.com/staplerkit/ocsp/config"
	"github.com/staplerkit/ocsp/internal/ocspcheck"
	"github.com/staplerkit/ocsp/internal/ocspfetch"
	"github.com/staplerkit/ocsp/internal/ratelimit"
	"github.com/staplerkit/ocsp/internal/schedule"
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
	clock  clock.Clock
	log    *slog.Logger
	cfg    atomic.Pointer[config.OCSP]

	registry // the managed certificates (registry.go)

	fetcher *ocspfetch.Fetcher            // asks responders and verifies
	limit   *ratelimit.Limiter            // paces responder requests; nil without a rate limit
	sched   *schedule.Scheduler[*managed] // when each certificate is queried next
	src     source                        // the mode: memory, a store, a fleet (source.go)

	// staples delivers staple changes to WithStapleHook (nil without one).
	staples *stapleNotifier
	// counters are the metrics (Metrics).
	counters counters
	// revokedCount counts the managed certificates known to be revoked
	// (managed.revokedLocked): while it is not zero, wrapped configs
	// resume no session (see wrap).
	revokedCount atomic.Int64
	// coarse is the handshake clock (clock.go) when the clock is the
	// system clock; nil with an injected clock.
	coarse *coarseClock

	// Lifetime.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // the goroutines New started, but the source's
	// srcStop ends the source's background work, after the workers have
	// ended; srcDone is closed when it has.
	srcStop context.CancelFunc
	srcDone chan struct{}
	closed  atomic.Bool
	// closeDone is closed when Close has finished (and the staple hook's
	// goroutine has ended): a second Close waits for it.
	closeDone chan struct{}
	// fetches counts the shared fetches in flight (each on a goroutine of
	// its own, which a caller that gives up leaves running).
	fetches sync.WaitGroup
	// closeMu makes Close's wait for fetches safe: no fetch starts once
	// Close has begun. It guards nothing else.
	closeMu sync.RWMutex
}

// registry is the set of managed certificates.
type registry struct {
	// index finds a leaf's state on the handshake path without a lock.
	index *certIndex
	// mu guards issuers, byKey and order, and serializes registration,
	// Remove and Update.
	mu      sync.Mutex
	issuers map[string]*x509.Certificate // parsed issuers by DER, shared
	// remembered is what was verified of certificates no longer managed
	// (knowledge.go).
	remembered remembered
	byKey      map[[32]byte]*managed // by ID, kept in a fleet only
	order      []*managed            // in the order they were found
	// settingsMu serializes changes to per-certificate settings.
	settingsMu sync.Mutex
	// defaultSettings is shared by every certificate until its settings change.
	defaultSettings *settings
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
	if err := validateOverrides(o.overrides); err != nil {
		return nil, fmt.Errorf("WithResponderOverrides: %w", err)
	}
	s := &Stapler{opts: o, client: o.client, clock: o.clock, log: o.logger, closeDone: make(chan struct{})}
	if s.client == nil {
		s.client = ocspfetch.NewHTTPClient()
	}
	s.cfg.Store(&cfg)
	if !cfg.OCSPFunctionality {
		s.log.Info("ocsp: OCSP is off, so nothing is stapled; turn it on with ocsp_functionality: true (New, Update or PUT /v1/ocsp)")
	}
	s.defaultSettings = &settings{stapling: o.defaultStapling}
	s.index = newCertIndex()
	s.issuers = map[string]*x509.Certificate{}
	s.sched = schedule.New[*managed](s.clock)
	s.limit = ratelimit.New(o.ratePerSecond, o.rateBurst)
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.fetcher = ocspfetch.New(ocspfetch.Config{
		Client:  s.client,
		Verify:  ocspcheck.Options{Skew: o.skew, AllowSHA1: o.allowSHA1, Undated: o.undated},
		Base:    s.ctx,
		Timeout: func() time.Duration { return s.cfg.Load().Timeout() },
		Begin:   s.startFetch,
		FellBack: func(url string, getErr error, remembered bool) {
			s.counters.getFallbacks.Add(1)
			if remembered {
				s.log.Info("ocsp: the responder refused a GET and answered a POST; asking it by POST for an hour", "url", url, "get_error", getErr)
			}
		},
		Pace: s.limit.WaitNext,
	})
	s.src = newSource(s, o.store)
	if _, fleet := s.src.(*fleetSource); fleet {
		s.byKey = map[[32]byte]*managed{} // notifications look certificates up by ID
	}
	// The source's background work ends after the workers, so that a
	// result they record while Close begins still reaches the store.
	srcCtx, srcStop := context.WithCancel(context.Background())
	s.srcStop, s.srcDone = srcStop, make(chan struct{})
	go func() {
		defer close(s.srcDone)
		s.src.run(srcCtx)
	}()
	if _, system := s.clock.(clock.System); system {
		s.coarse = newCoarseClock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.coarse.run(s.ctx.Done())
		}()
	}
	if o.stapleHook != nil {
		// Not in s.wg: Close waits for it apart, unless the hook itself
		// called Close.
		s.staples = newStapleNotifier(o.stapleHook)
		go s.staples.run(s)
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.runRetirement()
	}()
	s.wg.Add(1 + o.workers)
	go func() {
		defer s.wg.Done()
		s.sched.Run(s.ctx)
	}()
	for range o.workers {
		go func() {
			defer s.wg.Done()
			s.sched.Serve(s.ctx, s.refresh)
		}()
	}
	return s, nil
}

// Close stops all background work and returns once every goroutine the
// Stapler started has ended: a fetch in flight is cancelled and waited for,
// for at most response_timeout (an HTTP client given with WithHTTPClient
// that ignores cancellation cannot hold Close longer). Wrapped configs keep
// working after Close, serving the staples they have until those expire.
// A second Close waits as the first does; Close called by the staple hook
// returns without waiting for that call of the hook (its own), and any
// other Close waits for it.
func (s *Stapler) Close() error {
	s.closeMu.Lock()
	if s.closed.Swap(true) {
		s.closeMu.Unlock()
		if s.staples == nil || !s.staples.onHookGoroutine() {
			<-s.closeDone
		}
		return nil
	}
	s.cancel()
	s.closeMu.Unlock()
	inHook := s.staples != nil && s.staples.onHookGoroutine()
	defer func() {
		if inHook { // done once the hook's call, this one's caller, returns
			go func() {
				<-s.staples.done
				close(s.closeDone)
			}()
			return
		}
		close(s.closeDone)
	}()
	s.wg.Wait()
	if s.staples != nil && !inHook {
		<-s.staples.done
	}
	s.srcStop()
	<-s.srcDone
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

// startFetch registers a shared fetch that is about to start, unless the
// Stapler is closing (it then returns the reason, context.Canceled); the
// caller calls end when the fetch ends.
func (s *Stapler) startFetch() (end func(), err error) {
	s.closeMu.RLock()
	defer s.closeMu.RUnlock()
	if err := s.ctx.Err(); err != nil {
		return nil, err
	}
	s.fetches.Add(1)
	return s.fetches.Done, nil
}

// Get returns the cluster configuration, with responder_url set to the
// responder in use: the WithResponderURL override, else the AIA OCSP URL of
// the first managed certificate that has one.
func (s *Stapler) Get() config.OCSP {
	c := *s.cfg.Load()
	s.mu.Lock()
	c.ResponderURL = s.responderURLLocked()
	s.mu.Unlock()
	return c
}

// responderURLLocked is the responder_url Get shows. Callers hold s.mu.
func (s *Stapler) responderURLLocked() string {
	if s.opts.responderURL != "" {
		return s.opts.responderURL
	}
	for _, m := range s.order {
		if u := s.urlFor(m); u != "" {
			return u
		}
	}
	return ""
}

// Update applies a partial configuration atomically and returns the result.
// A rejected update (an invalid_schema or no_responder_url *config.Error)
// changes nothing. no_responder_url refuses only to turn OCSP on while it
// is off when no responder URL is known at all: certificates are managed,
// and neither WithResponderURL nor any certificate with stapling enabled
// gives one. Certificates without a URL beside one that has it are served
// without a staple (StateNotApplicable), and an update that leaves OCSP on
// (the documented PUT body repeats "ocsp_functionality": true) is never
// refused for want of a URL. An accepted one takes effect at once: turning OCSP on
// fetches every certificate now, shorter intervals move refreshes earlier,
// and turning it off stops fetching and stapling.
func (s *Stapler) Update(u config.OCSPUpdate) (config.OCSP, error) {
	s.mu.Lock()
	cur := *s.cfg.Load()
	// responder_url may be sent back as GET gave it: compared with the
	// one in use, and never stored.
	cur.ResponderURL = s.responderURLLocked()
	next, err := u.Apply(cur)
	cur.ResponderURL, next.ResponderURL = "", ""
	if err == nil && !cur.OCSPFunctionality && next.OCSPFunctionality {
		err = s.noResponderLocked()
	}
	if err != nil {
		s.mu.Unlock()
		return s.Get(), err
	}
	s.cfg.Store(&next)
	list := append([]*managed(nil), s.order...)
	s.mu.Unlock()
	if next.OCSPFunctionality != cur.OCSPFunctionality && s.staples != nil {
		for _, m := range list {
			s.staples.changed(m) // served, or no longer
		}
	}

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
	if !s.active(m) {
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
	s.sched.ScheduleEarlier(m, at)
	m.mu.Unlock()
}

// noResponderLocked is the no_responder_url refusal of Update when OCSP is
// turned on: nil when a responder URL is known, or when no certificate is
// managed yet (GetCertificate servers meet theirs at the first handshake).
// Callers hold s.mu.
func (s *Stapler) noResponderLocked() error {
	if s.opts.responderURL != "" {
		return nil
	}
	var first *managed
	for _, m := range s.order {
		if m.leaf == nil || !m.settings.Load().stapling.Enabled {
			continue
		}
		if s.urlFor(m) != "" {
			return nil
		}
		if first == nil {
			first = m
		}
	}
	if first == nil {
		return nil
	}
	return &config.Error{Code: config.CodeNoResponderURL, Message: fmt.Sprintf("no OCSP responder URL is known: certificate %q (id %s) has none", first.leaf.Subject.String(), first.ID())}
}
