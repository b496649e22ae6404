package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"net"
	"reflect"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/staplerkit/ocsp/stapler"
)

// probe is one run of the check: where to connect, what to trust, and the
// thresholds.
type probe struct {
	addr, serverName, host string
	roots                  *x509.CertPool
	fetch                  bool
	timeout                time.Duration
	now                    func() time.Time
	th                     thresholds

	// fetched keeps the responder's answer for a leaf, so that the two
	// handshakes ask it once.
	fetched *fetchOutcome
}

type fetchOutcome struct {
	leaf []byte
	raw  []byte
	err  error
}

// result is what one handshake found.
type result struct {
	Version    string    `json:"tls_version"`
	Verdict    string    `json:"verdict"`
	Exit       int       `json:"exit"`
	Reason     string    `json:"reason,omitempty"`
	Handshake  bool      `json:"handshake"`
	Subject    string    `json:"subject,omitempty"`
	MustStaple bool      `json:"must_staple"`
	Stapled    bool      `json:"stapled"`
	Fetched    bool      `json:"fetched,omitempty"` // the answer came from the responder (-fetch)
	Status     string    `json:"status,omitempty"`  // good, revoked
	ThisUpdate time.Time `json:"this_update,omitzero"`
	NextUpdate time.Time `json:"next_update,omitzero"`
	// Expires is when the response stops being relied on (stapler's
	// Response.Expires): nextUpdate, or sooner the leaf's or the delegated
	// signer's NotAfter. SecondsLeft counts to it.
	Expires       time.Time       `json:"expires,omitzero"`
	SecondsLeft   int64           `json:"seconds_left,omitempty"`
	Thresholds    *thresholdsUsed `json:"thresholds,omitempty"`
	Signer        string          `json:"signer,omitempty"` // "issuer" or the delegate's subject
	SignerExpires time.Time       `json:"signer_expires,omitzero"`
	Size          int             `json:"size,omitempty"`
	Problems      []string        `json:"problems,omitempty"`

	// perf is the staple's performance data, when one was stapled and
	// verified.
	perf *stapleFigures
	// spokeTLS: no handshake, but the server answered in TLS (it refused us).
	spokeTLS bool
}

// stapleFigures are a verified staple's performance data, in seconds.
type stapleFigures struct {
	ttl, age   int64
	warn, crit int64
}

// run does one handshake per TLS version and sums them up.
func (p *probe) run(ctx context.Context) report {
	var results []result
	for _, v := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
		results = append(results, p.check(ctx, v))
	}
	return summarize(results)
}

// check does one handshake with version v and judges its staple.
func (p *probe) check(ctx context.Context, v uint16) result {
	r := result{Version: tls.VersionName(v)}
	st, note, err := p.handshake(ctx, v)
	if note != "" {
		r.Problems = append(r.Problems, note)
	}
	if err != nil {
		r.Problems = append(r.Problems, err.Error())
		var he *handshakeError
		r.spokeTLS = errors.As(err, &he) && he.spokeTLS
		if alert, _ := remoteAlert(err); alert == 70 { // protocol_version
			r.Problems = append(r.Problems, "the server does not offer "+r.Version)
		}
		return r.verdict(exitUnknown, err.Error())
	}
	r.Handshake = true
	leaf := st.PeerCertificates[0]
	r.Subject = leaf.Subject.String()
	r.MustStaple = mustStaple(leaf)
	now := p.now()
	issuer, err := p.issuerOf(st, now)
	if err != nil {
		r.Problems = append(r.Problems, err.Error())
		return r.verdict(exitCritical, err.Error())
	}
	raw := st.OCSPResponse
	r.Stapled = len(raw) > 0
	if !r.Stapled {
		return p.judgeUnstapled(ctx, r, leaf, issuer, now)
	}
	r.Size = len(raw)
	resp, err := stapler.VerifyResponse(raw, leaf, issuer, stapler.VerifyOptions{CurrentTime: now})
	if err != nil {
		msg := "invalid OCSP staple: " + err.Error()
		r.Problems = append(r.Problems, msg)
		return r.verdict(exitCritical, msg)
	}
	r.describe(resp, now)
	warn, crit, used := p.th.forResponse(resp)
	r.Thresholds = used
	ttl := resp.Expires.Sub(now)
	r.perf = &stapleFigures{ttl: seconds(ttl), age: seconds(now.Sub(resp.ThisUpdate)), warn: seconds(warn), crit: seconds(crit)}
	if resp.Status == ocsp.Revoked {
		return r.verdict(exitCritical, r.revoked(resp))
	}
	cause := ""
	if resp.Signer != nil && resp.Expires.Equal(resp.Signer.NotAfter) && resp.Expires.Before(resp.NextUpdate) {
		cause = ", when its delegated signer's certificate does,"
		r.Problems = append(r.Problems, fmt.Sprintf("the delegated signer's certificate expires at %s, before the response's nextUpdate", resp.Signer.NotAfter.UTC().Format(time.RFC3339)))
	}
	switch {
	case ttl < crit:
		msg := fmt.Sprintf("staple expires in %s%s (less than %s)", fmtDuration(ttl), cause, used.CritRule)
		r.Problems = append(r.Problems, msg)
		return r.verdict(exitCritical, msg)
	case ttl < warn:
		msg := fmt.Sprintf("staple expires in %s%s (less than %s)", fmtDuration(ttl), cause, used.WarnRule)
		r.Problems = append(r.Problems, msg)
		return r.verdict(exitWarning, msg)
	}
	return r.verdict(exitOK, fmt.Sprintf("staple good, expires in %s", fmtDuration(ttl)))
}

// judgeUnstapled judges a handshake that carried no staple: WARNING for a
// plain leaf, CRITICAL for a must-staple one. With -fetch the responder's
// own answer is shown; only a verified answer that the certificate is
// revoked or unknown to its CA raises the verdict: a responder that fails
// to answer the probe (HTTP errors, tryLater, garbage) is the passing
// trouble that the missing staple already reports.
func (p *probe) judgeUnstapled(ctx context.Context, r result, leaf, issuer *x509.Certificate, now time.Time) result {
	code, reason := exitWarning, "no OCSP response stapled"
	r.Problems = append(r.Problems, reason)
	if r.MustStaple {
		code, reason = exitCritical, "no OCSP response stapled for a must-staple certificate"
		r.Problems = append(r.Problems, "the certificate is must-staple (RFC 7633): clients refuse it without a staple")
	}
	if !p.fetch {
		return r.verdict(code, reason)
	}
	raw, err := p.fetchOnce(ctx, leaf, issuer)
	if err != nil {
		msg := "the responder gave no answer: " + err.Error()
		r.Problems = append(r.Problems, msg)
		return r.verdict(code, reason+"; "+msg)
	}
	r.Fetched = true
	r.Size = len(raw)
	resp, err := stapler.VerifyResponse(raw, leaf, issuer, stapler.VerifyOptions{CurrentTime: now})
	switch {
	case errors.Is(err, stapler.ErrUnknownStatus):
		msg := "the responder does not know the certificate (a signed unknown answer)"
		r.Problems = append(r.Problems, msg)
		return r.verdict(exitCritical, reason+"; "+msg)
	case err != nil:
		msg := "the responder's answer is unusable: " + err.Error()
		r.Problems = append(r.Problems, msg)
		return r.verdict(code, reason+"; "+msg)
	}
	r.describe(resp, now)
	r.Problems = append(r.Problems, "the answer above is the responder's, not a staple")
	if resp.Status == ocsp.Revoked {
		return r.verdict(exitCritical, r.revoked(resp)+" (the responder says so; nothing is stapled)")
	}
	return r.verdict(code, reason+" (the responder answers good)")
}

// describe records a verified response's fields.
func (r *result) describe(resp *stapler.Response, now time.Time) {
	r.ThisUpdate, r.NextUpdate, r.Expires = resp.ThisUpdate, resp.NextUpdate, resp.Expires
	r.SecondsLeft = seconds(resp.Expires.Sub(now))
	r.Signer = "issuer"
	if resp.Signer != nil {
		r.Signer, r.SignerExpires = resp.Signer.Subject.String(), resp.Signer.NotAfter
	}
	r.Status = "good"
	if resp.Status == ocsp.Revoked {
		r.Status = "revoked"
	}
}

func (r *result) revoked(resp *stapler.Response) string {
	msg := fmt.Sprintf("the certificate was revoked at %s (reason %d)", resp.RevokedAt.UTC().Format(time.RFC3339), resp.RevocationReason)
	r.Problems = append(r.Problems, msg)
	return msg
}

func (r result) verdict(code int, reason string) result {
	r.Exit, r.Verdict, r.Reason = code, verdictWord(code), reason
	return r
}

// handshakeError is a handshake that did not complete; spokeTLS says the
// server answered in TLS before it failed (an alert, a message the client
// refused) rather than being unreachable, silent or something else.
type handshakeError struct {
	err      error
	spokeTLS bool
}

func (e *handshakeError) Error() string {
	if e.spokeTLS {
		return "TLS handshake failed: " + e.err.Error()
	}
	return "no TLS handshake: " + e.err.Error()
}

func (e *handshakeError) Unwrap() error { return e.err }

// handshake connects and completes a handshake with version v only. It
// verifies nothing: the chain and the name are checked afterwards (see
// issuerOf), so that a server with a bad certificate is judged CRITICAL
// however it is reached, and UNKNOWN is kept for "no handshake at all".
// A server that asks for a client certificate and refuses the handshake
// without one (TLS 1.2 ends there; TLS 1.3 only after the client is done)
// has sent its certificate and staple by then: those are returned, and
// note says what happened.
func (p *probe) handshake(ctx context.Context, v uint16) (st tls.ConnectionState, note string, err error) {
	dctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	nc, err := (&net.Dialer{}).DialContext(dctx, "tcp", p.addr)
	if err != nil {
		return st, "", &handshakeError{err: err}
	}
	sc := &sniffConn{Conn: nc}
	var seen *tls.ConnectionState
	askedForCert := false
	conn := tls.Client(sc, &tls.Config{
		ServerName: p.serverName, MinVersion: v, MaxVersion: v,
		InsecureSkipVerify: true, // verified by issuerOf, against the roots and the name
		VerifyConnection: func(cs tls.ConnectionState) error {
			seen = &cs
			return nil
		},
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			askedForCert = true
			return &tls.Certificate{}, nil
		},
	})
	defer conn.Close()
	if err := conn.HandshakeContext(dctx); err != nil {
		if _, remote := remoteAlert(err); remote && askedForCert && seen != nil && len(seen.PeerCertificates) > 0 {
			return *seen, "the server asks for a client certificate and refused the handshake without one (" + err.Error() + "); its certificate and staple are judged as sent", nil
		}
		timedOut := dctx.Err() != nil
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			timedOut = true
		}
		return st, "", &handshakeError{err: err, spokeTLS: sc.tls() && !timedOut}
	}
	st = conn.ConnectionState()
	if len(st.PeerCertificates) == 0 {
		return st, "", &handshakeError{err: errors.New("the server sent no certificate"), spokeTLS: true}
	}
	return st, "", nil
}

// remoteAlert returns the alert the server sent, if err is one: crypto/tls
// reports it as a *net.OpError "remote error" around its unexported alert
// type (a uint8); tls.AlertError is only for QUIC.
func remoteAlert(err error) (code uint8, ok bool) {
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "remote error" || oe.Err == nil {
		return 0, false
	}
	if v := reflect.ValueOf(oe.Err); v.Kind() == reflect.Uint8 {
		return uint8(v.Uint()), true
	}
	return 0, true
}

// sniffConn remembers the first byte the server sent: a TLS server
// answers with a handshake (22) or alert (21) record.
type sniffConn struct {
	net.Conn
	first byte
	seen  bool
}

func (c *sniffConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 && !c.seen {
		c.first, c.seen = b[0], true
	}
	return n, err
}

func (c *sniffConn) tls() bool { return c.seen && (c.first == 22 || c.first == 21) }

// issuerOf verifies the presented chain against the roots, at now, for the
// name sent (or, when none was, the address dialled: the leaf must name
// it), and returns the leaf's issuer.
func (p *probe) issuerOf(st tls.ConnectionState, now time.Time) (*x509.Certificate, error) {
	inter := x509.NewCertPool()
	for _, c := range st.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	name := p.serverName
	if name == "" {
		name = p.host
	}
	chains, err := st.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: p.roots, Intermediates: inter, DNSName: name, CurrentTime: now})
	if err != nil {
		return nil, fmt.Errorf("the server's certificate does not verify: %v", err)
	}
	if len(chains[0]) < 2 {
		return nil, errors.New("the server's certificate is itself a root: no issuer to check a response against")
	}
	return chains[0][1], nil
}

// fetchOnce is fetchResponse, asked once per leaf.
func (p *probe) fetchOnce(ctx context.Context, leaf, issuer *x509.Certificate) ([]byte, error) {
	if f := p.fetched; f != nil && bytes.Equal(f.leaf, leaf.Raw) {
		return f.raw, f.err
	}
	fctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	raw, err := fetchResponse(fctx, leaf, issuer)
	p.fetched = &fetchOutcome{leaf: leaf.Raw, raw: raw, err: err}
	return raw, err
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
