// Package cli holds what the example commands share: the flags that
// configure a Stapler and its admin and metrics listeners, and the
// listeners themselves.
package cli

import (
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/staplerkit/ocsp/config"
	"github.com/staplerkit/ocsp/metrics"
	"github.com/staplerkit/ocsp/stapler"
	"github.com/staplerkit/ocsp/stapler/admin"
)

// ListFlag is a repeatable string flag.
type ListFlag []string

// String implements flag.Value.
func (l *ListFlag) String() string { return strings.Join(*l, ",") }

// Set implements flag.Value.
func (l *ListFlag) Set(v string) error { *l = append(*l, v); return nil }

// StaplerFlags are the flags that configure a Stapler: the cluster OCSP
// object, the per-certificate defaults and where responders are.
type StaplerFlags struct {
	responderURL      *string
	overrides         ListFlag
	cacheTTL          *int
	queryFrequency    *int
	responseTimeout   *int
	recoveryFrequency *int
	recoveryMaxTries  *int
	skipVerify        *bool
	noNextUpdate      *time.Duration
}

// AddStaplerFlags registers the Stapler's flags on fs; cacheTTLUsage says
// what cache_ttl bounds for the command.
func AddStaplerFlags(fs *flag.FlagSet, cacheTTLUsage string) *StaplerFlags {
	f := &StaplerFlags{}
	f.responderURL = fs.String("responder-url", "", "query this responder instead of the certificates' AIA OCSP URL")
	fs.Var(&f.overrides, "responder-override", "AIA=URL: query URL for the certificates whose AIA OCSP URL is AIA; AIA= (empty) disables fetching for them (repeatable)")
	f.cacheTTL = fs.Int("cache-ttl", stapler.DefaultDiscoveredCacheTTL, cacheTTLUsage)
	f.queryFrequency = fs.Int("query-frequency", config.DefaultQueryFrequency, "seconds between regular queries (60-86400)")
	f.responseTimeout = fs.Int("response-timeout", config.DefaultResponseTimeout, "seconds to wait for the responder (1-60)")
	f.recoveryFrequency = fs.Int("recovery-frequency", config.DefaultRecoveryFrequency, "seconds between retries after a failure (60-86400)")
	f.recoveryMaxTries = fs.Int("recovery-max-tries", config.DefaultRecoveryMaxTries, "retries before a query counts as failed (1-100)")
	f.skipVerify = fs.Bool("skip-verify", false, "do not check the responses' signatures (never recommended)")
	f.noNextUpdate = fs.Duration("no-next-update-lifetime", stapler.DefaultNoNextUpdateLifetime, "how long after its thisUpdate a response without nextUpdate (openssl ocsp's default) is relied on; negative refuses such responses")
	return f
}

// Config is the cluster OCSP object the flags give, OCSP on.
func (f *StaplerFlags) Config() config.OCSP {
	return config.OCSP{
		OCSPFunctionality: true,
		QueryFrequency:    *f.queryFrequency,
		ResponseTimeout:   *f.responseTimeout,
		RecoveryFrequency: *f.recoveryFrequency,
		RecoveryMaxTries:  *f.recoveryMaxTries,
	}
}

// ResponseTimeout is -response-timeout.
func (f *StaplerFlags) ResponseTimeout() time.Duration {
	return time.Duration(*f.responseTimeout) * time.Second
}

// ResponderURL is -responder-url.
func (f *StaplerFlags) ResponderURL() string { return *f.responderURL }

// Options are the Stapler options the flags give, after checking them.
func (f *StaplerFlags) Options() ([]stapler.Option, error) {
	stapling := config.Stapling{Enabled: true, SkipVerify: *f.skipVerify, CacheTTL: *f.cacheTTL}
	if err := stapling.Validate(); err != nil {
		return nil, err
	}
	if err := f.Config().Validate(); err != nil {
		return nil, err
	}
	opts := []stapler.Option{stapler.WithDefaultStapling(stapling), stapler.WithNoNextUpdateLifetime(*f.noNextUpdate)}
	if *f.responderURL != "" {
		opts = append(opts, stapler.WithResponderURL(*f.responderURL))
	}
	if len(f.overrides) > 0 {
		m := map[string]string{}
		for _, o := range f.overrides {
			from, to, ok := splitOverride(o)
			if !ok {
				return nil, fmt.Errorf("-responder-override %q: want AIA=URL (or AIA= to disable fetching)", o)
			}
			m[from] = to
		}
		opts = append(opts, stapler.WithResponderOverrides(m))
	}
	return opts, nil
}

// splitOverride splits AIA=URL at the first = that starts a replacement
// (one followed by http:// or https://, or the last character): the
// replacement may hold a query with = in it, and URLs in it (a proxy's
// ?upstream=http://...).
func splitOverride(o string) (from, to string, ok bool) {
	for i := 1; i < len(o); i++ {
		if o[i] != '=' {
			continue
		}
		rest := o[i+1:]
		if rest == "" || strings.HasPrefix(rest, "http://") || strings.HasPrefix(rest, "https://") {
			return o[:i], rest, true
		}
	}
	return "", "", false
}

// AdminKeyEnv is the environment variable that may hold the admin API key,
// so that it need not appear in the process list.
const AdminKeyEnv = "STAPLER_ADMIN_KEY"

// ListenerFlags are the flags of the admin API and metrics listeners.
type ListenerFlags struct {
	adminAddr, adminKey, metricsAddr *string
	// AfterChange, when set, is called after each admin request that
	// changed something (a PUT, PATCH or DELETE answered 2xx), as the
	// command's -state file keeps the changes.
	AfterChange func()
}

// AddListenerFlags registers the listeners' flags on fs.
func AddListenerFlags(fs *flag.FlagSet) *ListenerFlags {
	return &ListenerFlags{
		adminAddr:   fs.String("admin-addr", "", "address of the admin API (off when empty; a port alone, like :9000, listens on loopback)"),
		adminKey:    fs.String("admin-key", "", "admin API key, required in the X-API-KEY header (default: $"+AdminKeyEnv+")"),
		metricsAddr: fs.String("metrics-addr", "", "address of a Prometheus /metrics endpoint (off when empty; a port alone, like :9100, listens on loopback)"),
	}
}

// Check refuses an admin API without a key.
func (f *ListenerFlags) Check() error {
	if *f.adminAddr != "" && f.key() == "" {
		return fmt.Errorf("-admin-addr needs -admin-key or $%s", AdminKeyEnv)
	}
	return nil
}

func (f *ListenerFlags) key() string {
	if *f.adminKey != "" {
		return *f.adminKey
	}
	return os.Getenv(AdminKeyEnv)
}

// ListenAdmin serves s's admin API when -admin-addr is set (nil
// otherwise), and prints its URL to out.
func (f *ListenerFlags) ListenAdmin(s *stapler.Stapler, logger *slog.Logger, out func(string)) (net.Listener, error) {
	if *f.adminAddr == "" {
		return nil, nil
	}
	if err := f.Check(); err != nil {
		return nil, err
	}
	addr, err := loopbackDefault(*f.adminAddr)
	if err != nil {
		return nil, fmt.Errorf("-admin-addr: %w", err)
	}
	h, err := admin.NewHandler(s, admin.Options{APIKey: f.key()})
	if err != nil {
		return nil, err
	}
	if f.AfterChange != nil {
		h = afterChange(h, f.AfterChange)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	go newAdminServer(h, logger).Serve(ln)
	out(fmt.Sprintf("admin API on http://%s", ln.Addr()))
	return ln, nil
}

// afterChange calls changed after each request to next that changed
// something: a PUT, PATCH or DELETE answered with a 2xx.
func afterChange(next http.Handler, changed func()) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(rec, r)
		switch r.Method {
		case http.MethodPut, http.MethodPatch, http.MethodDelete:
			if rec.status >= 200 && rec.status < 300 {
				changed()
			}
		}
	})
}

// statusRecorder remembers the status a handler answered.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(status int) {
	r.status = status
	r.ResponseWriter.WriteHeader(status)
}

// ListenMetrics serves s's metrics, and extra collectors, for Prometheus
// when -metrics-addr is set (nil otherwise), and prints its URL to out.
func (f *ListenerFlags) ListenMetrics(s *stapler.Stapler, logger *slog.Logger, out func(string), extra ...prometheus.Collector) (net.Listener, error) {
	if *f.metricsAddr == "" {
		return nil, nil
	}
	addr, err := loopbackDefault(*f.metricsAddr)
	if err != nil {
		return nil, fmt.Errorf("-metrics-addr: %w", err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(metrics.New(s, metrics.Options{}))
	reg.MustRegister(extra...)
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	go NewHTTPServer(mux, logger).Serve(ln)
	out(fmt.Sprintf("metrics on http://%s/metrics", ln.Addr()))
	return ln, nil
}

// loopbackDefault is addr, on loopback when it names no host.
func loopbackDefault(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", err
	}
	if host == "" {
		return net.JoinHostPort("127.0.0.1", port), nil
	}
	return addr, nil
}

// adminWriteTimeout bounds an admin answer: POST /v1/ocsp/test waits for
// the responder for up to response_timeout (which PUT /v1/ocsp may raise
// to config.MaxResponseTimeout at any time), then verifies; every accepted
// value gets its documented answer, not a connection closed.
const adminWriteTimeout = config.MaxResponseTimeout*time.Second + 30*time.Second

// newAdminServer is NewHTTPServer with room for the slowest test query.
func newAdminServer(h http.Handler, logger *slog.Logger) *http.Server {
	srv := NewHTTPServer(h, logger)
	srv.WriteTimeout = adminWriteTimeout
	return srv
}

// IdleTimeout is how long a keep-alive connection may sit idle; a variable
// so that the test of it need not wait minutes.
var IdleTimeout = 2 * time.Minute

// NewHTTPServer is an http.Server whose every phase is bounded, so that
// idle or slow clients cannot hold connections (and file descriptors)
// forever: the TLS handshake and the headers within 10 s, a whole request
// within 30 s, a response within 30 s, an idle keep-alive connection for
// IdleTimeout, headers of at most 16 KiB.
func NewHTTPServer(h http.Handler, logger *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
}
