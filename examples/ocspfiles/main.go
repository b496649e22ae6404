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
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
	"unicode"

	"github.com/staplerkit/ocsp/examples/internal/cli"
	"github.com/staplerkit/ocsp/stapler"
)

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
	var certs, sockets cli.ListFlag
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
	staplerFlags := cli.AddStaplerFlags(fs, "seconds a response may be kept in the file (>= 60; capped by its nextUpdate)")
	listeners := cli.AddListenerFlags(fs)
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
	staplerOpts, err := staplerFlags.Options()
	if err != nil {
		return err
	}
	if err := listeners.Check(); err != nil {
		return err
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

	opts := append([]stapler.Option{
		stapler.WithLogger(logger),
		stapler.WithStapleHook(d.hook),
		// No handshake ever serves these certificates here: without this,
		// they would retire after DefaultIdleRetirement (30 days) and
		// their files go stale.
		stapler.WithIdleRetirement(0),
	}, staplerOpts...)
	s, err := stapler.New(staplerFlags.Config(), opts...)
	if err != nil {
		return err
	}
	d.s = s
	// Closed in this order: the Stapler (no hook call after its Close),
	// then the daemon's timers, then the reloader and the notifier.
	defer d.close()
	defer s.Close()

	firstFetch := staplerFlags.ResponseTimeout() + time.Second
	pushCtx, cancel := context.WithTimeout(ctx, firstFetch)
	for _, l := range chains {
		if len(l.leaf.OCSPServer) == 0 && staplerFlags.ResponderURL() == "" {
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

	println := func(line string) { fmt.Fprintln(stdout, line) }
	adminLn, err := listeners.ListenAdmin(s, logger, println)
	if err != nil {
		return err
	}
	if adminLn != nil {
		defer adminLn.Close()
	}
	metricsLn, err := listeners.ListenMetrics(s, logger, println, met.collectors()...)
	if err != nil {
		return err
	}
	if metricsLn != nil {
		defer metricsLn.Close()
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
