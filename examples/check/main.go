// Command check asks a TLS server for its stapled OCSP response and verifies
// it with the library's full verification: is that server (ours or not)
// stapling a valid response right now?
//
//	go run ./examples/check -connect host:port [-servername name] [-CAfile ca.pem] [-fetch] [-json]
//
// It does a real handshake with TLS 1.3 and with TLS 1.2, and prints for
// each the status, thisUpdate and nextUpdate, the time left, the signer
// (the issuer, or a delegate and its expiry), the size, and each problem in
// words. Exit codes follow the monitoring-plugin convention: 0 OK; 1
// WARNING (the staple expires within -warn, or none is stapled for a leaf
// that is not must-staple); 2 CRITICAL (revoked, invalid, or none stapled
// for a must-staple leaf); 3 UNKNOWN (no handshake).
package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/staplerkit/ocsp/stapler"
)

// Exit codes, as monitoring plugins use them.
const (
	exitOK       = 0
	exitWarning  = 1
	exitCritical = 2
	exitUnknown  = 3
)

// result is what one handshake found.
type result struct {
	Version       string    `json:"tls_version"`
	Subject       string    `json:"subject,omitempty"`
	MustStaple    bool      `json:"must_staple"`
	Stapled       bool      `json:"stapled"`
	Fetched       bool      `json:"fetched,omitempty"` // the answer came from the responder (-fetch)
	Status        string    `json:"status,omitempty"`  // good, revoked
	ThisUpdate    time.Time `json:"this_update,omitzero"`
	NextUpdate    time.Time `json:"next_update,omitzero"`
	SecondsLeft   int64     `json:"seconds_left,omitempty"`
	Signer        string    `json:"signer,omitempty"` // "issuer" or the delegate's subject
	SignerExpires time.Time `json:"signer_expires,omitzero"`
	Size          int       `json:"size,omitempty"`
	Problems      []string  `json:"problems,omitempty"`
	Exit          int       `json:"exit"`
}

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	connect := fs.String("connect", "", "host:port of the TLS server")
	serverName := fs.String("servername", "", "server name to send (default: the host of -connect, none for an IP address)")
	caFile := fs.String("CAfile", "", "PEM roots to verify the server's chain with (default: the system roots)")
	fetch := fs.Bool("fetch", false, "when nothing is stapled, ask the certificate's responder")
	warn := fs.Duration("warn", 24*time.Hour, "warn when the staple expires within this long")
	asJSON := fs.Bool("json", false, "print JSON")
	timeout := fs.Duration("timeout", 10*time.Second, "bound on each handshake and fetch")
	if err := fs.Parse(args); err != nil {
		return exitUnknown
	}
	if *connect == "" {
		fmt.Fprintln(stderr, "check: -connect host:port is required")
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
	var results []result
	exit, unknown := exitOK, 0
	for _, v := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
		r := check(ctx, *connect, *serverName, host, roots, v, *fetch, *warn, *timeout)
		results = append(results, r)
		if r.Exit == exitUnknown {
			unknown++ // a version the server does not speak is no verdict
			continue
		}
		exit = max(exit, r.Exit)
	}
	if unknown == len(results) {
		exit = exitUnknown
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(map[string]any{"connect": *connect, "results": results, "exit": exit})
	} else {
		for _, r := range results {
			printResult(stdout, r)
		}
	}
	return exit
}

// check does one handshake with version v and judges its staple.
func check(ctx context.Context, addr, serverName, host string, roots *x509.CertPool, v uint16, fetch bool, warn, timeout time.Duration) result {
	r := result{Version: tls.VersionName(v)}
	dialer := &tls.Dialer{NetDialer: &net.Dialer{Timeout: timeout}, Config: &tls.Config{
		ServerName: serverName, RootCAs: roots, MinVersion: v, MaxVersion: v,
		// With no server name (an IP address), the chain is checked below
		// against the roots, without a name.
		InsecureSkipVerify: serverName == "",
	}}
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := dialer.DialContext(dctx, "tcp", addr)
	if err != nil {
		r.Problems = append(r.Problems, "no handshake: "+err.Error())
		r.Exit = exitUnknown
		return r
	}
	st := conn.(*tls.Conn).ConnectionState()
	conn.Close()
	leaf := st.PeerCertificates[0]
	r.Subject = leaf.Subject.String()
	r.MustStaple = mustStaple(leaf)
	issuer, err := issuerOf(st, roots, host)
	if err != nil {
		r.Problems = append(r.Problems, err.Error())
		r.Exit = exitCritical
		return r
	}
	raw := st.OCSPResponse
	r.Stapled = raw != nil
	if raw == nil && fetch {
		if raw, err = fetchResponse(dctx, leaf, issuer); err != nil {
			r.Problems = append(r.Problems, "no staple, and the responder gave none: "+err.Error())
		} else {
			r.Fetched = true
		}
	}
	if raw == nil {
		if !r.Stapled {
			r.Problems = append(r.Problems, "no OCSP response stapled")
		}
		r.Exit = exitWarning
		if r.MustStaple {
			r.Problems = append(r.Problems, "the certificate is must-staple (RFC 7633): clients refuse it without a staple")
			r.Exit = exitCritical
		}
		return r
	}
	r.Size = len(raw)
	resp, err := stapler.VerifyResponse(raw, leaf, issuer, stapler.VerifyOptions{})
	if err != nil {
		r.Problems = append(r.Problems, "invalid OCSP response: "+err.Error())
		r.Exit = exitCritical
		return r
	}
	r.ThisUpdate, r.NextUpdate = resp.ThisUpdate, resp.NextUpdate
	left := time.Until(resp.NextUpdate)
	r.SecondsLeft = int64(left / time.Second)
	r.Signer = "issuer"
	if resp.Signer != nil {
		r.Signer, r.SignerExpires = resp.Signer.Subject.String(), resp.Signer.NotAfter
	}
	switch resp.Status {
	case ocsp.Revoked:
		r.Status = "revoked"
		r.Problems = append(r.Problems, fmt.Sprintf("the certificate was revoked at %s (reason %d)", resp.RevokedAt.UTC().Format(time.RFC3339), resp.RevocationReason))
		r.Exit = exitCritical
	default:
		r.Status = "good"
		if left < warn {
			r.Problems = append(r.Problems, fmt.Sprintf("the staple expires in %s", left.Round(time.Second)))
			r.Exit = exitWarning
		}
		if r.Fetched {
			r.Problems = append(r.Problems, "not stapled (the answer above is the responder's)")
			r.Exit = max(r.Exit, exitWarning)
			if r.MustStaple {
				r.Problems = append(r.Problems, "the certificate is must-staple (RFC 7633): clients refuse it without a staple")
				r.Exit = exitCritical
			}
		}
	}
	return r
}

// issuerOf is the leaf's issuer: from the verified chain, else the
// presented chain, checked against the roots and the address dialled when
// no server name was sent (an IP address: the leaf must name it).
func issuerOf(st tls.ConnectionState, roots *x509.CertPool, host string) (*x509.Certificate, error) {
	if len(st.VerifiedChains) > 0 && len(st.VerifiedChains[0]) > 1 {
		return st.VerifiedChains[0][1], nil
	}
	inter := x509.NewCertPool()
	for _, c := range st.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	chains, err := st.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: host})
	if err != nil {
		return nil, fmt.Errorf("the server's chain does not verify: %v", err)
	}
	if len(chains[0]) < 2 {
		return nil, errors.New("the server's certificate is itself a root: no issuer to check a response against")
	}
	return chains[0][1], nil
}

// fetchResponse asks the leaf's responder (its first AIA OCSP URL) by POST.
func fetchResponse(ctx context.Context, leaf, issuer *x509.Certificate) ([]byte, error) {
	if len(leaf.OCSPServer) == 0 {
		return nil, errors.New("the certificate names no OCSP responder")
	}
	req, err := ocsp.CreateRequest(leaf, issuer, &ocsp.RequestOptions{Hash: crypto.SHA1})
	if err != nil {
		return nil, err
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, leaf.OCSPServer[0], bytes.NewReader(req))
	if err != nil {
		return nil, err
	}
	hreq.Header.Set("Content-Type", "application/ocsp-request")
	resp, err := http.DefaultClient.Do(hreq)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, stapler.MaxResponseBytes+1))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %s", resp.Status)
	}
	return body, nil
}

// mustStaple reports whether the leaf has the RFC 7633 TLS feature
// extension asking for status_request.
func mustStaple(leaf *x509.Certificate) bool {
	oid := asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 1, 24}
	for _, ext := range leaf.Extensions {
		if ext.Id.Equal(oid) {
			var features []int
			if _, err := asn1.Unmarshal(ext.Value, &features); err == nil {
				for _, f := range features {
					if f == 5 {
						return true
					}
				}
			}
		}
	}
	return false
}

func printResult(w io.Writer, r result) {
	label := map[int]string{exitOK: "OK", exitWarning: "WARNING", exitCritical: "CRITICAL", exitUnknown: "UNKNOWN"}[r.Exit]
	fmt.Fprintf(w, "%s %s", r.Version, label)
	if r.Subject != "" {
		fmt.Fprintf(w, " %s", r.Subject)
	}
	fmt.Fprintln(w)
	if r.Status != "" {
		fmt.Fprintf(w, "  status %s, thisUpdate %s, nextUpdate %s (%s left), %d bytes, signed by %s",
			r.Status, r.ThisUpdate.UTC().Format(time.RFC3339), r.NextUpdate.UTC().Format(time.RFC3339),
			(time.Duration(r.SecondsLeft) * time.Second).String(), r.Size, r.Signer)
		if !r.SignerExpires.IsZero() {
			fmt.Fprintf(w, " (expires %s)", r.SignerExpires.UTC().Format(time.RFC3339))
		}
		fmt.Fprintln(w)
	}
	for _, p := range r.Problems {
		fmt.Fprintf(w, "  - %s\n", p)
	}
}
