package stapler

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
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
)

// oidTLSFeature is the RFC 7633 TLS feature extension (id-pe-tlsfeature).
var oidTLSFeature = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 1, 24}

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
	// certs maps leaf DER to its state, copy-on-write so that the handshake
	// path reads it without a lock.
	certs atomic.Pointer[map[string]*managed]

	mu         sync.Mutex // serializes Update and registration
	settingsMu sync.Mutex // serializes changes to per-certificate settings
	byID       map[string]*managed
	order      []*managed

	sched  *scheduler
	flight singleflight.Group

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	closed atomic.Bool

	wrapped      sync.Map // application *tls.Config -> wrapped clone
	wrappedCount atomic.Int64
	ours         sync.Map // configs Wrap made
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
	s := &Stapler{opts: o, client: o.client, clock: o.clock, log: o.logger, byID: map[string]*managed{}}
	if s.client == nil {
		s.client = newHTTPClient()
	}
	s.cfg.Store(&cfg)
	empty := map[string]*managed{}
	s.certs.Store(&empty)
	s.sched = newScheduler(s.clock)
	s.ctx, s.cancel = context.WithCancel(context.Background())
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
// Stapler started has ended. Wrapped configs keep working after Close,
// serving the staples they have until those expire.
func (s *Stapler) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.cancel()
	s.wg.Wait()
	for _, m := range s.managedList() {
		m.disarm()
	}
	if s.opts.client == nil {
		s.client.CloseIdleConnections()
	}
	return nil
}

// Add registers a certificate (for example one that a GetConfigForClient
// will serve later) and starts fetching its staple. It returns the
// certificate's ID.
func (s *Stapler) Add(c *tls.Certificate) (string, error) {
	if c == nil || len(c.Certificate) == 0 {
		return "", errors.New("stapler: empty certificate")
	}
	m := s.add(c)
	if m.leaf == nil {
		return m.id, fmt.Errorf("stapler: certificate %s does not parse", m.id)
	}
	return m.id, nil
}

// add returns the state of c's leaf, registering it on first sight.
func (s *Stapler) add(c *tls.Certificate) *managed {
	der := c.Certificate[0]
	if m := (*s.certs.Load())[string(der)]; m != nil {
		return m
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old := *s.certs.Load()
	if m := old[string(der)]; m != nil {
		return m
	}
	m := &managed{id: CertificateID(der), orig: c, index: -1}
	m.settings.Store(&settings{stapling: s.opts.defaultStapling})
	leaf := c.Leaf
	if leaf == nil || !bytes.Equal(leaf.Raw, der) {
		var err error
		if leaf, err = x509.ParseCertificate(der); err != nil {
			s.log.Warn("ocsp: certificate does not parse; serving it without a staple", "id", m.id, "err", err)
			leaf = nil
		}
	}
	if leaf != nil {
		m.leaf = leaf
		m.url = responderURL(leaf)
		m.mustStaple = hasMustStaple(leaf)
		m.issuer = s.chainIssuer(c, leaf)
	}
	m.publishLocked()
	next := make(map[string]*managed, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	next[string(der)] = m
	s.certs.Store(&next)
	s.byID[m.id] = m
	s.order = append(s.order, m)
	if m.leaf == nil {
		return m
	}
	if s.urlFor(m) == "" {
		s.log.Info("ocsp: certificate has no OCSP responder URL; not stapled", "id", m.id, "subject", leaf.Subject.String())
		return m
	}
	if s.cfg.Load().OCSPFunctionality && m.settings.Load().stapling.Enabled {
		m.arm()
		s.sched.schedule(m, s.clock.Now())
	}
	return m
}

// chainIssuer finds the leaf's issuer in its chain or the WithIssuer
// certificates: the first that signed it.
func (s *Stapler) chainIssuer(c *tls.Certificate, leaf *x509.Certificate) *x509.Certificate {
	if len(c.Certificate) > 1 {
		if issuer, err := x509.ParseCertificate(c.Certificate[1]); err == nil && leaf.CheckSignatureFrom(issuer) == nil {
			return issuer
		}
	}
	for _, issuer := range s.opts.issuers {
		if leaf.CheckSignatureFrom(issuer) == nil {
			return issuer
		}
	}
	return nil
}

func hasMustStaple(leaf *x509.Certificate) bool {
	for _, ext := range leaf.Extensions {
		if ext.Id.Equal(oidTLSFeature) {
			// The value is a SEQUENCE of INTEGER features; 5 is status_request.
			var features []int
			if _, err := asn1.Unmarshal(ext.Value, &features); err != nil {
				return false
			}
			for _, f := range features {
				if f == 5 {
					return true
				}
			}
		}
	}
	return false
}

// urlFor is the responder URL in use for m.
func (s *Stapler) urlFor(m *managed) string {
	if s.opts.responderURL != "" {
		return s.opts.responderURL
	}
	return m.url
}

// lookup returns the managed certificate with the given ID; an empty ID
// means the only one.
func (s *Stapler) lookup(id string) (*managed, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if id == "" && len(s.order) == 1 {
		return s.order[0], nil
	}
	if m, ok := s.byID[id]; ok {
		return m, nil
	}
	return nil, fmt.Errorf("%w %q", ErrUnknownCertificate, id)
}

// managedList returns the managed certificates in the order they were found.
func (s *Stapler) managedList() []*managed {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*managed(nil), s.order...)
}

// refresh is a scheduled query for m, run on a worker.
func (s *Stapler) refresh(m *managed) {
	cfg := s.cfg.Load()
	if !cfg.OCSPFunctionality || !m.settings.Load().stapling.Enabled || m.leaf == nil || s.urlFor(m) == "" {
		m.disarm()
		return
	}
	e, err := s.query(s.ctx, m)
	if errors.Is(err, context.Canceled) && s.ctx.Err() != nil {
		m.disarm()
		return // closing
	}
	s.record(m, e, err)
}

// query fetches and verifies m's response, sharing one request among all
// callers that ask at the same time.
func (s *Stapler) query(ctx context.Context, m *managed) (*cache.Entry, error) {
	ch := s.flight.DoChan(m.id, func() (any, error) {
		return s.fetchAndVerify(m)
	})
	select {
	case r := <-ch:
		e, _ := r.Val.(*cache.Entry)
		return e, r.Err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (s *Stapler) fetchAndVerify(m *managed) (*cache.Entry, error) {
	cfg := s.cfg.Load()
	st := m.settings.Load().stapling
	url := s.urlFor(m)
	fail := func(err error) (*cache.Entry, error) {
		return nil, &FetchError{ID: m.id, Subject: m.leaf.Subject.String(), Serial: fmt.Sprintf("%x", m.leaf.SerialNumber), URL: url, Err: err}
	}
	if url == "" {
		return fail(ErrNoResponderURL)
	}
	ctx, cancel := context.WithTimeout(s.ctx, cfg.Timeout())
	defer cancel()
	m.mu.Lock()
	issuer := m.issuer
	m.mu.Unlock()
	if issuer == nil {
		var err error
		if issuer, err = fetchIssuer(ctx, s.client, m.leaf); err != nil {
			return fail(err)
		}
		m.mu.Lock()
		m.issuer = issuer
		m.mu.Unlock()
	}
	raw, _, err := fetchResponse(ctx, s.client, url, m.leaf, issuer)
	if err != nil {
		return fail(err)
	}
	now := s.clock.Now()
	e, err := verifyResponse(raw, m.leaf, issuer, now, verifyOptions{skipSignature: st.SkipVerify, skew: s.opts.skew})
	if err != nil {
		return fail(err)
	}
	e.Raw = bytes.Clone(raw) // exactly its size, not the read buffer's
	e.ResponderURL = url
	e.FetchedAt = now
	e.Expires = cache.Expiry(now, st.CacheDuration(), e.NextUpdate, e.Expires)
	return e, nil
}

// record applies the outcome of a query to m: a new staple and the next
// regular refresh, or a retry after recovery_frequency and, when the tries
// are used up, the failed state.
func (s *Stapler) record(m *managed, e *cache.Entry, err error) {
	cfg := s.cfg.Load()
	st := m.settings.Load().stapling
	now := s.clock.Now()

	m.mu.Lock()
	m.lastAttempt = now
	m.queries++
	var next time.Time
	if err == nil && e.Status != cache.Unknown {
		m.entry, m.latest = e, e
		m.lastErr, m.tries, m.failed, m.lastSuccess = nil, 0, false, now
		m.publishLocked()
		next = nextRefresh(e, cfg, st, now)
	} else {
		if err == nil {
			m.latest = e
			err = &FetchError{ID: m.id, Subject: m.leaf.Subject.String(), Serial: fmt.Sprintf("%x", m.leaf.SerialNumber), URL: e.ResponderURL, Err: ErrUnknownStatus}
		}
		m.lastErr = err
		m.tries++
		if m.tries > cfg.MaxTries() {
			m.failed, m.tries = true, 0
			if s.opts.dropOnFailure && m.entry != nil {
				m.entry = nil
				m.publishLocked()
			}
			next = now.Add(jitter(cfg.QueryInterval()))
		} else {
			next = now.Add(jitter(cfg.RecoveryInterval()))
		}
	}
	from, to := m.state, m.stateLocked()
	m.state = to
	m.mu.Unlock()

	s.sched.schedule(m, next)
	m.disarm()
	if err != nil {
		s.log.Warn("ocsp: query failed", "id", m.id, "err", err, "retry_at", next)
	}
	if from != to {
		s.log.Info("ocsp: certificate status changed", "id", m.id, "subject", m.leaf.Subject.String(), "from", from, "to", to)
		if s.opts.hook != nil {
			s.opts.hook(StatusChange{ID: m.id, From: from, To: to, Status: s.statusOf(m)})
		}
	}
}

// nextRefresh is the earliest of fetched + query_frequency, fetched +
// cache_ttl and the middle of the response's validity, jittered, and not
// sooner than a minute (or half the time left, if less) from now, so that
// a responder that serves old responses is not asked in a loop. The
// cache_ttl bound comes early by a quarter of cache_ttl or one
// recovery_frequency, whichever is less, so that a failed refresh is retried
// while the staple is still served.
func nextRefresh(e *cache.Entry, cfg *config.OCSP, st config.Stapling, now time.Time) time.Time {
	next := e.FetchedAt.Add(cfg.QueryInterval())
	ttl := st.CacheDuration()
	if t := e.FetchedAt.Add(ttl - min(ttl/4, cfg.RecoveryInterval())); t.Before(next) {
		next = t
	}
	if t := e.ThisUpdate.Add(e.NextUpdate.Sub(e.ThisUpdate) / 2); t.Before(next) {
		next = t
	}
	floor := min(time.Minute, e.Expires.Sub(now)/2)
	floor = max(floor, time.Second)
	d := max(next.Sub(now), floor)
	return now.Add(max(jitter(d), floor))
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
				err = &config.Error{Code: config.CodeNoResponderURL, Message: fmt.Sprintf("certificate %q (id %s) has no OCSP responder URL", m.leaf.Subject.String(), m.id)}
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
	if refetch {
		m.mu.Lock()
		if m.entry == nil {
			m.arm()
		}
		m.mu.Unlock()
		s.sched.scheduleEarlier(m, now)
		return
	}
	m.mu.Lock()
	at := now
	switch {
	case m.tries > 0:
		at = m.lastAttempt.Add(cfg.RecoveryInterval())
	case m.entry != nil:
		at = nextRefresh(m.entry, cfg, m.settings.Load().stapling, now)
	}
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

// UpdateStapling applies a PUT or PATCH body to a certificate's
// ocsp_stapling object atomically (see config.StaplingUpdate) and returns
// the result; a rejected update changes nothing.
func (s *Stapler) UpdateStapling(id string, u config.StaplingUpdate) (config.Stapling, error) {
	m, err := s.lookup(id)
	if err != nil {
		return config.Stapling{}, err
	}
	s.settingsMu.Lock()
	defer s.settingsMu.Unlock()
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
