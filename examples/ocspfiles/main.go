package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
	"unicode"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/staplerkit/ocsp/config"
	"github.com/staplerkit/ocsp/metrics"
	"github.com/staplerkit/ocsp/stapler"
	"github.com/staplerkit/ocsp/stapler/admin"
)

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "ocspfiles:", err)
		os.Exit(1)
	}
}

const usageHead = `Usage: ocspfiles -cert chain.pem [-cert other.pem ...] [flags]

Keeps a verified, fresh OCSP response file beside each certificate file
(<cert>.ocsp, HAProxy's name for it), for nginx's ssl_stapling_file and
HAProxy's crt. A file is written (atomically) only when the response
changes, and removed when no valid response is left. SIGHUP re-reads the
certificate files; SIGINT and SIGTERM stop the daemon.

Flags:
`

// run parses args, keeps the files until ctx ends, and then shuts down.
// It prints the admin and metrics URLs when they are on, then "managing N
// certificates" to stdout once every certificate had its first fetch.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("ocspfiles", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usageHead)
		fs.PrintDefaults()
	}
	var certs, sockets listFlag
	fs.Var(&certs, "cert", "PEM certificate chain, leaf first, then its issuer (repeatable); other PEM blocks, like a HAProxy crt file's key, are skipped")
	issuerFile := fs.String("issuer", "", "PEM issuer certificate, for -cert files that hold the leaf alone")
	suffix := fs.String("suffix", ".ocsp", "the response file of a -cert file is its name plus this suffix (HAProxy loads <crt>.ocsp)")
	outDir := fs.String("out-dir", "", "write the response files in this directory (named after the -cert file's base name) instead of beside the -cert files")
	nginxConfFlag := fs.Bool("nginx-conf", false, "also keep <response file>.conf, an nginx include: \"ssl_stapling on; ssl_stapling_file <file>;\" while a valid response is at hand, \"ssl_stapling off;\" otherwise (nginx refuses to start or reload when the ssl_stapling_file is missing)")
	reloadCmd := fs.String("reload", "", "shell command (sh -c) run after files change, such as \"nginx -s reload\"; a burst of changes runs it once")
	reloadDelay := fs.Duration("reload-delay", time.Second, "how long to wait after a change before -reload, to take the changes that follow with it")
	reloadTimeout := fs.Duration("reload-timeout", time.Minute, "kill -reload (and every process it started) after this long")
	fs.Var(&sockets, "haproxy-socket", "HAProxy admin socket (a unix socket path, or host:port), from a \"stats socket ... level admin\" line, told each new response with \"set ssl ocsp-response\" (repeatable)")
	haproxyTimeout := fs.Duration("haproxy-timeout", 10*time.Second, "time allowed for one HAProxy socket command")
	checkInterval := fs.Duration("check-interval", time.Minute, "how often every file is checked again (retries failed writes, restores files changed behind the daemon's back)")
	responderURL := fs.String("responder-url", "", "query this responder instead of the certificates' AIA OCSP URL")
	cacheTTL := fs.Int("cache-ttl", stapler.DefaultDiscoveredCacheTTL, "seconds a response may be kept in the file (>= 60; capped by its nextUpdate)")
	queryFrequency := fs.Int("query-frequency", config.DefaultQueryFrequency, "seconds between regular queries (60-86400)")
	responseTimeout := fs.Int("response-timeout", config.DefaultResponseTimeout, "seconds to wait for the responder (1-60)")
	recoveryFrequency := fs.Int("recovery-frequency", config.DefaultRecoveryFrequency, "seconds between retries after a failure (60-86400)")
	recoveryMaxTries := fs.Int("recovery-max-tries", config.DefaultRecoveryMaxTries, "retries before a query counts as failed (1-100)")
	skipVerify := fs.Bool("skip-verify", false, "do not check the responses' signatures (never recommended)")
	adminAddr := fs.String("admin-addr", "", "address of the admin API (off when empty; a port alone, like :9000, listens on loopback)")
	adminKey := fs.String("admin-key", "", "admin API key, required in the X-API-KEY header (default: $"+adminKeyEnv+")")
	metricsAddr := fs.String("metrics-addr", "", "address of a Prometheus /metrics endpoint (off when empty; a port alone, like :9100, listens on loopback)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q (every certificate takes -cert)", fs.Args())
	}
	if len(certs) == 0 {
		return errors.New("give at least one -cert")
	}
	if *suffix == "" || strings.ContainsRune(*suffix, '/') {
		return errors.New("-suffix must be non-empty and hold no slash")
	}
	if *reloadDelay < 0 || *reloadTimeout <= 0 || *haproxyTimeout <= 0 || *checkInterval <= 0 {
		return errors.New("-reload-delay must be >= 0; -reload-timeout, -haproxy-timeout and -check-interval > 0")
	}
	stapling := config.Stapling{Enabled: true, SkipVerify: *skipVerify, CacheTTL: *cacheTTL}
	if err := stapling.Validate(); err != nil {
		return err
	}
	cfg := config.OCSP{
		OCSPFunctionality: true,
		QueryFrequency:    *queryFrequency,
		ResponseTimeout:   *responseTimeout,
		RecoveryFrequency: *recoveryFrequency,
		RecoveryMaxTries:  *recoveryMaxTries,
	}
	key := *adminKey
	if key == "" {
		key = os.Getenv(adminKeyEnv)
	}
	if *adminAddr != "" && key == "" {
		return fmt.Errorf("-admin-addr needs -admin-key or $%s", adminKeyEnv)
	}

	targets, err := makeTargets(certs, *outDir, *suffix, *nginxConfFlag)
	if err != nil {
		return err
	}
	var issuer *x509.Certificate
	if *issuerFile != "" {
		if issuer, err = loadCertificate(*issuerFile); err != nil {
			return err
		}
	}
	type loaded struct {
		t    *target
		cert *tls.Certificate
		leaf *x509.Certificate
	}
	var chains []loaded
	for _, t := range targets {
		cert, leaf, err := loadChain(t.certPath, issuer)
		if err != nil {
			return err
		}
		chains = append(chains, loaded{t, cert, leaf})
	}

	logger := slog.New(slog.NewTextHandler(stderr, nil))
	met := newFileMetrics()
	d := &daemon{log: logger, met: met}
	if *reloadCmd != "" {
		d.reload = newReloader(*reloadDelay, shellCommand(*reloadCmd, *reloadTimeout), logger)
		d.reload.onRun = func(err error) { met.reloads.WithLabelValues(result(err)).Inc() }
	}
	if len(sockets) > 0 {
		d.haproxy = newHAProxyNotifier(sockets, *haproxyTimeout, logger)
		d.haproxy.onSend = func(err error) { met.haproxyUpdates.WithLabelValues(result(err)).Inc() }
		d.haproxy.start()
	}
	defer d.haproxy.close()
	defer d.reload.close()

	opts := []stapler.Option{
		stapler.WithLogger(logger),
		stapler.WithDefaultStapling(stapling),
		stapler.WithStapleHook(d.hook),
		// No handshake ever serves these certificates here: without this,
		// they would retire after DefaultIdleRetirement (30 days) and
		// their files go stale.
		stapler.WithIdleRetirement(0),
	}
	if *responderURL != "" {
		opts = append(opts, stapler.WithResponderURL(*responderURL))
	}
	s, err := stapler.New(cfg, opts...)
	if err != nil {
		return err
	}
	d.s = s
	// Closed in this order: the Stapler (no hook call after its Close),
	// then the daemon's timers, then the reloader and the notifier.
	defer d.close()
	defer s.Close()

	firstFetch := time.Duration(*responseTimeout)*time.Second + time.Second
	pushCtx, cancel := context.WithTimeout(ctx, firstFetch)
	for _, l := range chains {
		if len(l.leaf.OCSPServer) == 0 && *responderURL == "" {
			logger.Warn("the certificate names no OCSP responder and -responder-url is not set: no response file", "file", l.t.certPath)
		}
		if err := d.register(pushCtx, l.t, l.cert, l.leaf); err != nil {
			cancel()
			return err
		}
	}
	cancel()
	d.mu.Lock()
	d.targets = targets
	for _, t := range targets {
		d.apply(t, true)
	}
	d.mu.Unlock()

	if *adminAddr != "" {
		ln, err := listenAdmin(*adminAddr, s, key, logger)
		if err != nil {
			return err
		}
		defer ln.Close()
		fmt.Fprintf(stdout, "admin API on http://%s\n", ln.Addr())
	}
	if *metricsAddr != "" {
		ln, err := listenMetrics(*metricsAddr, s, met, logger)
		if err != nil {
			return err
		}
		defer ln.Close()
		fmt.Fprintf(stdout, "metrics on http://%s/metrics\n", ln.Addr())
	}
	readyCtx, cancel := context.WithTimeout(ctx, firstFetch)
	if err := s.Ready(readyCtx); err != nil {
		logger.Warn("not every certificate had its first fetch yet", "err", err)
	}
	cancel()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	fmt.Fprintf(stdout, "managing %d certificates\n", len(targets))
	logger.Info("managing", "certificates", len(targets), "reload", *reloadCmd, "haproxy_sockets", len(sockets))

	tick := time.NewTicker(*checkInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			logger.Info("shutting down")
			return nil
		case <-hup:
			logger.Info("SIGHUP: re-reading the certificate files")
			d.rotate(ctx, *issuerFile, firstFetch)
		case <-tick.C:
			d.checkAll()
		}
	}
}

// makeTargets names the output files of the -cert files, refusing two
// certificates that would share one, or an output that is a -cert file.
func makeTargets(certs []string, outDir, suffix string, nginxConf bool) ([]*target, error) {
	seen := map[string]string{}
	for _, c := range certs {
		abs, err := filepath.Abs(c)
		if err != nil {
			return nil, err
		}
		seen[abs] = "the certificate file " + c
	}
	var targets []*target
	for _, c := range certs {
		certPath, _ := filepath.Abs(c)
		out := certPath + suffix
		if outDir != "" {
			dir, err := filepath.Abs(outDir)
			if err != nil {
				return nil, err
			}
			out = filepath.Join(dir, filepath.Base(certPath)+suffix)
		}
		t := &target{certPath: certPath, outPath: out}
		if nginxConf {
			if strings.ContainsFunc(out, unicode.IsControl) {
				return nil, fmt.Errorf("-cert %s: its output path %q holds a control character, which an nginx include cannot carry", c, out)
			}
			t.confPath = out + ".conf"
		}
		for _, p := range []string{t.outPath, t.confPath} {
			if p == "" {
				continue
			}
			if other, ok := seen[p]; ok {
				return nil, fmt.Errorf("-cert %s: its output %s is also %s", c, p, other)
			}
			seen[p] = "the output of -cert " + c
		}
		targets = append(targets, t)
	}
	return targets, nil
}

// adminKeyEnv is the environment variable that may hold the admin API key,
// so that it need not appear in the process list.
const adminKeyEnv = "STAPLER_ADMIN_KEY"

// listenAdmin serves the Stapler's admin API on addr; an address with no
// host listens on loopback only.
func listenAdmin(addr string, s *stapler.Stapler, key string, logger *slog.Logger) (net.Listener, error) {
	addr, err := loopbackDefault(addr)
	if err != nil {
		return nil, fmt.Errorf("-admin-addr: %w", err)
	}
	h, err := admin.NewHandler(s, admin.Options{APIKey: key})
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	go newHTTPServer(h, logger).Serve(ln)
	return ln, nil
}

// listenMetrics serves the Stapler's metrics and the daemon's for
// Prometheus on addr; an address with no host listens on loopback only.
func listenMetrics(addr string, s *stapler.Stapler, met *fileMetrics, logger *slog.Logger) (net.Listener, error) {
	addr, err := loopbackDefault(addr)
	if err != nil {
		return nil, fmt.Errorf("-metrics-addr: %w", err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(metrics.New(s, metrics.Options{}))
	reg.MustRegister(met.collectors()...)
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	go newHTTPServer(mux, logger).Serve(ln)
	return ln, nil
}

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

// newHTTPServer is an http.Server whose every phase is bounded, so that
// idle or slow clients cannot hold connections forever.
func newHTTPServer(h http.Handler, logger *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
}
