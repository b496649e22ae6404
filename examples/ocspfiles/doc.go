// Command ocspfiles keeps a verified, fresh OCSP response file beside each
// certificate file, for servers that staple a response from a file but
// fetch, verify or refresh it badly or not at all: nginx (ssl_stapling_file)
// and HAProxy (<crt>.ocsp, and "set ssl ocsp-response" on its admin socket).
//
//	ocspfiles -cert /etc/haproxy/certs/site.pem -haproxy-socket /run/haproxy/admin.sock
//	ocspfiles -cert /etc/ssl/site/chain.pem -nginx-conf -reload 'nginx -s reload'
//
// Each -cert file holds the leaf first, then its issuer (or give -issuer);
// other PEM blocks (the key in a HAProxy crt file) are skipped, and the key is
// never needed. The response file is <cert>.ocsp (-suffix, -out-dir). The
// stapler package does the work: every response is verified as a staple is
// (the full CertID, an authorized signer, the times), refreshed before it
// expires, retried with backoff when the responder fails, never replaced by
// an older one (no rollback), with one request per certificate. The daemon
// keeps the file equal to what the Stapler would staple:
//
//   - written atomically (a temporary file in the same directory, fsync,
//     rename, fsync of the directory) and only when the response changed;
//     the file keeps the mode, owner and group of the one it replaces (0644
//     for a new file). A symbolic link at the output path is replaced, never
//     written through; a directory or FIFO there is left alone and logged.
//   - removed when no valid response is left (it expired with no
//     replacement, the Stapler withdrew it, the certificate expired): a
//     server must not staple an expired response. A timer per file does it
//     at the response's expiry, and every -check-interval all files are
//     checked again.
//   - at start, an existing file is not trusted: it is verified as a fetched
//     response (Stapler.Push) and kept if it is valid, so a restart with the
//     responder down keeps stapling; otherwise it is removed at once.
//
// After files change, -reload runs once for a burst of changes (-reload-delay),
// killed after -reload-timeout; a failed reload is logged and run again at the
// next change. With -haproxy-socket, each new response is sent to HAProxy
// ("set ssl ocsp-response", payload form) and anything but "OCSP Response
// updated!" is logged and retried with backoff (5 s doubling to 5 min) until
// HAProxy takes it or a newer response replaces it. SIGHUP re-reads the
// certificate files (a renewed certificate gets its own response; its old
// one is kept until the new one's first fetch); SIGINT and SIGTERM stop the
// daemon. -admin-addr serves the admin API (GET /v1/ocsp/status, POST
// /v1/ocsp/test?id=… to query a responder now) and -metrics-addr Prometheus
// metrics (the Stapler's staplerkit_ocsp_* series and staplerkit_ocspfiles_*).
//
// # nginx
//
// nginx refuses to start or reload when the file named by ssl_stapling_file
// is missing, and staples a file it loaded forever without looking at its
// dates. So give -nginx-conf, include the file it keeps, and let -reload tell
// nginx when it changes:
//
//	server {
//	    listen 443 ssl;
//	    ssl_certificate     /etc/ssl/site/chain.pem;
//	    ssl_certificate_key /etc/ssl/site/key.pem;
//	    include /etc/ssl/site/chain.pem.ocsp.conf;  # kept by ocspfiles
//	}
//
//	ocspfiles -cert /etc/ssl/site/chain.pem -nginx-conf -reload 'nginx -s reload'
//
// The include says "ssl_stapling on; ssl_stapling_file <file>;" while there
// is a valid response and "ssl_stapling off;" otherwise (so do not set
// ssl_stapling in that server block yourself). Start ocspfiles before nginx:
// the include exists from its start. nginx applies one ssl_stapling_file to
// every certificate of a server block, so a block serving an RSA and an
// ECDSA certificate cannot staple both correctly from files.
//
// # HAProxy
//
// HAProxy loads <crt>.ocsp when it loads a crt, and takes a new response on
// its admin socket without a reload:
//
//	global
//	    stats socket /run/haproxy/admin.sock mode 600 level admin
//	frontend https
//	    bind :443 ssl crt /etc/haproxy/certs/site.pem
//
//	ocspfiles -cert /etc/haproxy/certs/site.pem -haproxy-socket /run/haproxy/admin.sock
//
// HAProxy 2.6 has no command to withdraw a response: when the daemon removes
// an expired file, the running HAProxy keeps the response it holds but stops
// stapling it by itself 5 minutes before its nextUpdate, and loads none at
// its next reload. HAProxy refuses responses without nextUpdate (as openssl
// ocsp sends by default). The socket must be a worker's stats socket at level
// admin (the master CLI needs an "@1" prefix this daemon does not send).
package main
