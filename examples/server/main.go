// Command server is an HTTPS server that staples OCSP responses for your own
// certificates.
//
//	go run ./examples/server -addr :8443 -cert chain.pem -key key.pem
//
// -cert and -key are repeatable and pair up in order, so one name can be
// served with both an RSA and an ECDSA certificate, each stapled with its
// own response. Each -cert file holds the leaf first, then its issuer
// (otherwise give -issuer). The server logs with slog, prints its listening
// address, and shuts down cleanly on SIGINT or SIGTERM.
//
// With -redis, servers that share one Redis make one responder request per
// certificate between them, and staple the same response.
//
// SIGHUP reads the -cert and -key files again (renewed certificates are
// served from the next handshake on, without a restart and without dropping
// a connection; files that do not load leave the ones before in place).
// A DER OCSP response in <certfile>.ocsp beside a -cert file (HAProxy's
// convention) is read at start and on SIGHUP, and stapled when it verifies
// and is newer than what is known: for a server that cannot reach its
// responder, whose responses a sidecar or a deploy job brings.
// -responder-override AIA=URL rewrites the responder of the certificates
// whose AIA OCSP URL is AIA (AIA= disables fetching for them).
//
// With -admin-addr (and -admin-key, or $STAPLER_ADMIN_KEY) it also serves the
// admin API: GET/PUT /v1/ocsp, GET /v1/ocsp/status, POST /v1/ocsp/test,
// GET/PUT/PATCH /v1/certificates/{id}, and GET/PUT
// /v1/certificates/{id}/ocsp_response (read the staple, push one).
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/staplerkit/ocsp/cache/redisstore"
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
		fmt.Fprintln(os.Stderr, "server:", err)
		os.Exit(1)
	}
}

// run parses args, serves until ctx ends, and then shuts down. It prints
// "listening on ADDR" to stdout once the listener is up.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	// SIGHUP is caught from the start: one sent while the server starts
	// must not kill it (it reads the response files again once serving).
	hangups := make(chan os.Signal, 1)
	signal.Notify(hangups, syscall.SIGHUP)
	defer signal.Stop(hangups)
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var certs, keys cli.ListFlag
	addr := fs.String("addr", "127.0.0.1:8443", "address to listen on")
	fs.Var(&certs, "cert", "PEM certificate chain, leaf first (repeatable, pairs with -key)")
	fs.Var(&keys, "key", "PEM private key (repeatable, pairs with -cert)")
	issuerFile := fs.String("issuer", "", "PEM issuer certificate, when the chains do not include it")
	staplerFlags := cli.AddStaplerFlags(fs, "seconds a response may be served (>= 60; capped by its nextUpdate)")
	policyName := fs.String("policy", "lenient", "lenient, strict or must-staple")
	listeners := cli.AddListenerFlags(fs)
	redisURL := fs.String("redis", "", "share staples with other servers through Redis (one responder request per certificate for the whole fleet): redis://127.0.0.1:6379/0 for one node; redis+cluster://host1:6379?addr=host2:6379&addr=host3:6379 for a Cluster; redis+sentinel://host1:26379?master_name=mymaster&addr=host2:26379 for Sentinel")
	redisPrefix := fs.String("redis-prefix", "staplerkit:ocsp:", "prefix of the keys kept in Redis")
	statePath := fs.String("state", "", "keep the admin API's changes (the cluster OCSP object, each certificate's ocsp_stapling) in this file, and apply them again at start (without it they last until the process exits)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if len(certs) == 0 || len(certs) != len(keys) {
		return errors.New("give one -key for each -cert, and at least one of each")
	}
	policy, err := stapler.ParsePolicy(*policyName)
	if err != nil {
		return err
	}
	staplerOpts, err := staplerFlags.Options()
	if err != nil {
		return err
	}
	if err := listeners.Check(); err != nil {
		return err
	}
	chains, err := loadPairs(certs, keys)
	if err != nil {
		return err
	}

	logger := slog.New(slog.NewTextHandler(stderr, nil))
	opts := append([]stapler.Option{stapler.WithLogger(logger), stapler.WithPolicy(policy)}, staplerOpts...)
	if *redisURL != "" {
		redis.SetLogger(redisstore.Logger{Logger: logger}) // go-redis's own lines, in the server's log
		client, err := redisClient(*redisURL)
		if err != nil {
			return fmt.Errorf("-redis: %w", err)
		}
		defer client.Close()
		opts = append(opts, stapler.WithStore(redisstore.New(client, *redisPrefix)))
	}
	if *issuerFile != "" {
		issuer, err := loadCertificate(*issuerFile)
		if err != nil {
			return err
		}
		opts = append(opts, stapler.WithIssuer(issuer))
	}
	s, err := stapler.New(staplerFlags.Config(), opts...)
	if err != nil {
		return err
	}
	defer s.Close()

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	srv := cli.NewHTTPServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello over %s\n", tlsVersion(r.TLS))
	}), logger)
	// The certificates are served through GetConfigForClient, from the
	// config wrapped last, so that SIGHUP can load renewed files (from
	// cert-manager, Vault Agent or certbot) without a restart and without
	// dropping a connection; the outer config is wrapped too, so that its
	// session tickets follow the Stapler's policy.
	var current atomic.Pointer[tls.Config]
	current.Store(s.Wrap(&tls.Config{Certificates: chains, MinVersion: tls.VersionTLS12}))
	srv.TLSConfig = s.Wrap(&tls.Config{MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) { return current.Load(), nil }})
	// Responses kept beside the certificates (<certfile>.ocsp, HAProxy's
	// convention), read now and on SIGHUP: verified and stapled as a
	// fetched response is, for servers that cannot reach their responder.
	pushFiles := func(chains []tls.Certificate) {
		for i, file := range certs {
			pushResponseFile(ctx, s, file+".ocsp", stapler.CertificateID(chains[i].Certificate[0]), logger)
		}
	}
	pushFiles(chains)
	served := len(chains)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hangups:
				renewed, err := loadPairs(certs, keys)
				if err != nil {
					logger.Warn("SIGHUP: the certificate files could not be loaded; serving the ones loaded before", "err", err)
					continue
				}
				current.Store(s.Wrap(&tls.Config{Certificates: renewed, MinVersion: tls.VersionTLS12}))
				// Certificates no longer served stop being managed.
				kept := map[string]bool{}
				for _, c := range renewed {
					kept[stapler.CertificateID(c.Certificate[0])] = true
				}
				for _, c := range chains {
					if id := stapler.CertificateID(c.Certificate[0]); !kept[id] {
						s.Remove(id)
					}
				}
				chains = renewed
				logger.Info("SIGHUP: certificate and response files read again", "certificates", len(renewed))
				pushFiles(renewed)
			}
		}
	}()
	if *statePath != "" {
		if err := cli.RestoreState(*statePath, s, logger); err != nil {
			ln.Close()
			return fmt.Errorf("-state: %w", err)
		}
		var saving sync.Mutex
		listeners.AfterChange = func() {
			saving.Lock()
			defer saving.Unlock()
			if err := cli.SaveState(*statePath, s); err != nil {
				logger.Warn("the admin change was applied but not kept in the state file", "file", *statePath, "err", err)
			}
		}
	}
	println := func(line string) { fmt.Fprintln(stdout, line) }
	adminLn, err := listeners.ListenAdmin(s, logger, println)
	if err != nil {
		ln.Close()
		return err
	}
	if adminLn != nil {
		defer adminLn.Close()
	}
	// Take traffic once every certificate has had its first fetch, so that
	// the first handshakes are stapled (bounded: a responder that hangs
	// does not keep the server from starting).
	readyCtx, cancel := context.WithTimeout(ctx, staplerFlags.ResponseTimeout()+time.Second)
	if err := s.Ready(readyCtx); err != nil {
		logger.Warn("serving before every certificate had its first fetch", "err", err)
	}
	cancel()
	metricsLn, err := listeners.ListenMetrics(s, logger, println)
	if err != nil {
		ln.Close()
		return err
	}
	if metricsLn != nil {
		defer metricsLn.Close()
	}
	fmt.Fprintf(stdout, "listening on %s\n", ln.Addr())
	logger.Info("serving", "addr", ln.Addr().String(), "certificates", served, "policy", policy.String())

	errc := make(chan error, 1)
	go func() { errc <- srv.ServeTLS(ln, "", "") }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	logger.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return err
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// loadPairs loads each -cert with its -key.
func loadPairs(certs, keys []string) ([]tls.Certificate, error) {
	var chains []tls.Certificate
	for i := range certs {
		c, err := tls.LoadX509KeyPair(certs[i], keys[i])
		if err != nil {
			return nil, fmt.Errorf("load %s and %s: %w", certs[i], keys[i], err)
		}
		chains = append(chains, c)
	}
	return chains, nil
}

// pushResponseFile gives the Stapler the DER response in file, when there
// is one, for the certificate id. A response that does not verify, or is
// older than what is known, is refused and logged; nothing else changes.
func pushResponseFile(ctx context.Context, s *stapler.Stapler, file, id string, logger *slog.Logger) {
	f, err := os.Open(file)
	if errors.Is(err, os.ErrNotExist) {
		return
	}
	if err != nil {
		logger.Warn("response file not read", "file", file, "err", err)
		return
	}
	der, err := io.ReadAll(io.LimitReader(f, stapler.MaxResponseBytes+1))
	f.Close()
	if err != nil {
		logger.Warn("response file not read", "file", file, "err", err)
		return
	}
	if _, err := s.Push(ctx, id, der); err != nil {
		logger.Warn("response file refused", "file", file, "err", err)
		return
	}
	logger.Info("response file stapled", "file", file, "id", id)
}

// redisClient makes a client for a -redis URL: redis:// or rediss:// for
// one node, redis+cluster:// (or rediss+cluster://) with more seed nodes as
// addr= parameters for a Redis Cluster, and redis+sentinel:// (or
// rediss+sentinel://) naming the sentinels (more as addr=) and
// master_name= for Sentinel.
func redisClient(rawURL string) (redis.UniversalClient, error) {
	scheme, rest, ok := strings.Cut(rawURL, "://")
	if !ok {
		return nil, fmt.Errorf("%q is not a URL", rawURL)
	}
	base, mode, _ := strings.Cut(scheme, "+")
	if base != "redis" && base != "rediss" {
		return nil, fmt.Errorf("unknown scheme %q", scheme)
	}
	url := base + "://" + rest
	switch mode {
	case "":
		o, err := redis.ParseURL(url)
		if err != nil {
			return nil, err
		}
		return redis.NewClient(o), nil
	case "cluster":
		o, err := redis.ParseClusterURL(url)
		if err != nil {
			return nil, err
		}
		return redis.NewClusterClient(o), nil
	case "sentinel":
		o, err := redis.ParseFailoverURL(url)
		if err != nil {
			return nil, err
		}
		if o.MasterName == "" {
			return nil, errors.New("a sentinel URL needs master_name=")
		}
		return redis.NewFailoverClient(o), nil
	}
	return nil, fmt.Errorf("unknown scheme %q (redis, redis+cluster or redis+sentinel)", scheme)
}

func loadCertificate(path string) (*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s: no PEM certificate", path)
	}
	return x509.ParseCertificate(block.Bytes)
}

func tlsVersion(st *tls.ConnectionState) string {
	if st == nil {
		return "plain HTTP"
	}
	return tls.VersionName(st.Version)
}
