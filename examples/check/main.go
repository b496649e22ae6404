// Command check is a Nagios/Icinga plugin that asks a TLS server for its
// stapled OCSP response and verifies it with the library's full
// verification (stapler.VerifyResponse): is that server (ours or not)
// stapling a valid response right now, and for how much longer?
//
//	go run ./examples/check -connect host:port [-servername name] [-CAfile ca.pem]
//	    [-w 6h] [-c 1h] [-fetch] [-json] [-timeout 10s]
//
// It does a real handshake with TLS 1.3 and with TLS 1.2 (a version the
// server does not speak is no verdict) and judges each staple. The first
// line of output is the verdict, its reason and performance data:
//
//	OCSP WARNING - staple expires in 20m (less than a quarter of its 2h validity) | staple_ttl=1200s;1800:;720: response_age=6000s ...
//
// and the following lines give each handshake's details. The staple's time
// left (staple_ttl) runs to Response.Expires: nextUpdate, capped by the
// leaf's and a delegated signer's NotAfter. Without -w and -c the
// thresholds follow the response's own validity (thisUpdate to expiry): a
// healthy server refreshes at half-life, so WARNING below a quarter of it
// left and CRITICAL below a tenth. Exit codes are the plugin convention:
// 0 OK; 1 WARNING (the staple is near its end, or nothing is stapled for a
// leaf that is not must-staple); 2 CRITICAL (revoked, an invalid staple,
// nothing stapled for a must-staple leaf, a certificate that does not
// verify or a TLS server that refuses the handshake); 3 UNKNOWN (no TLS
// handshake could be made at all: refused, timed out, not TLS).
package main

import (
	"context"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"time"
)

// Exit codes, as monitoring plugins use them.
const (
	exitOK       = 0
	exitWarning  = 1
	exitCritical = 2
	exitUnknown  = 3
)

// verdictWord names an exit code as monitoring plugins print it.
func verdictWord(code int) string {
	switch code {
	case exitOK:
		return "OK"
	case exitWarning:
		return "WARNING"
	case exitCritical:
		return "CRITICAL"
	}
	return "UNKNOWN"
}

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// run is the command; it reads the clock with time.Now.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return runAt(ctx, time.Now, args, stdout, stderr)
}

// durationFlag is a duration flag that remembers whether it was given: an
// absent threshold falls back to the rule relative to the response.
type durationFlag struct {
	d   time.Duration
	set bool
}

func (f *durationFlag) String() string {
	if f == nil || !f.set {
		return ""
	}
	return f.d.String()
}

func (f *durationFlag) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	if d < 0 {
		return errors.New("negative duration")
	}
	f.d, f.set = d, true
	return nil
}

const usageText = `Usage: check -connect host:port [flags]

Nagios/Icinga plugin: handshakes with the server (TLS 1.3 and TLS 1.2),
verifies the stapled OCSP response and exits 0 OK, 1 WARNING, 2 CRITICAL
or 3 UNKNOWN (no TLS handshake could be made at all).

Thresholds: the staple's time left runs to its expiry (nextUpdate, or
sooner the leaf's or a delegated signer's NotAfter). Without -w and -c,
the default is relative to the response's own validity (thisUpdate to
expiry): a healthy server refreshes at half-life, so WARNING when less
than a quarter of the validity is left and CRITICAL when less than a
tenth is left (or the staple has expired).

Flags:
`

// runAt is run with the clock now, which judges the staples and the
// certificate chain (tests inject it; the TLS handshake itself checks no
// time, see check).
func runAt(ctx context.Context, now func() time.Time, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usageText)
		fs.PrintDefaults()
	}
	connect := fs.String("connect", "", "host:port of the TLS server")
	serverName := fs.String("servername", "", "server name to send and verify (default: the host of -connect; for an IP address none is sent and the address is verified)")
	caFile := fs.String("CAfile", "", "PEM roots to verify the server's chain with (default: the system roots)")
	fetch := fs.Bool("fetch", false, "when nothing is stapled, ask the certificate's responder (its answer is shown; only a revoked or unknown answer raises the verdict above WARNING)")
	var warn, crit durationFlag
	fs.Var(&warn, "w", "WARNING when the staple expires within this long (default: a quarter of the response's validity)")
	fs.Var(&warn, "warn", "alias of -w")
	fs.Var(&crit, "c", "CRITICAL when the staple expires within this long (default: a tenth of the response's validity)")
	asJSON := fs.Bool("json", false, "print JSON")
	timeout := fs.Duration("timeout", 10*time.Second, "bound on each handshake and on the fetch")
	if err := fs.Parse(args); err != nil {
		return exitUnknown
	}
	if *connect == "" {
		fmt.Fprintln(stderr, "check: -connect host:port is required")
		return exitUnknown
	}
	if *timeout <= 0 {
		fmt.Fprintln(stderr, "check: -timeout must be positive")
		return exitUnknown
	}
	if warn.set && crit.set && crit.d > warn.d {
		fmt.Fprintf(stderr, "check: -c %v is longer than -w %v\n", crit.d, warn.d)
		return exitUnknown
	}
	host, _, err := net.SplitHostPort(*connect)
	if err != nil {
		fmt.Fprintln(stderr, "check:", err)
		return exitUnknown
	}
	if *serverName == "" && net.ParseIP(host) == nil {
		*serverName = host
	}
	var roots *x509.CertPool
	if *caFile != "" {
		pem, err := os.ReadFile(*caFile)
		if err != nil {
			fmt.Fprintln(stderr, "check:", err)
			return exitUnknown
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			fmt.Fprintf(stderr, "check: no certificate in %s\n", *caFile)
			return exitUnknown
		}
	}
	p := &probe{
		addr: *connect, serverName: *serverName, host: host, roots: roots,
		fetch: *fetch, timeout: *timeout, now: now,
		th: thresholds{warn: warn.d, warnSet: warn.set, crit: crit.d, critSet: crit.set},
	}
	rep := p.run(ctx)
	if *asJSON {
		writeJSON(stdout, *connect, rep)
	} else {
		writeText(stdout, rep)
	}
	return rep.Exit
}
