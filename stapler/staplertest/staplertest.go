// Package staplertest is what net/http/httptest is for HTTP, for testing a
// server that staples with package stapler: a CA with a live OCSP responder
// on loopback, leaves it answers for, a Stapler that logs nothing, a TLS
// server on loopback for a wrapped config, and a client that trusts the CA
// and reports the staple it got.
//
// A test that a server staples GOOD, then REVOKED after a revocation, and
// that a client with a stapler.Verifier refuses it then, is a dozen lines:
// see the package example.
package staplertest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/staplerkit/ocsp/config"
	"github.com/staplerkit/ocsp/responder"
	"github.com/staplerkit/ocsp/stapler"
)

// Reason is an RFC 5280 revocation reason.
type Reason int

// The revocation reasons (RFC 5280 5.3.1).
const (
	Unspecified          Reason = ocsp.Unspecified
	KeyCompromise        Reason = ocsp.KeyCompromise
	CACompromise         Reason = ocsp.CACompromise
	AffiliationChanged   Reason = ocsp.AffiliationChanged
	Superseded           Reason = ocsp.Superseded
	CessationOfOperation Reason = ocsp.CessationOfOperation
	CertificateHold      Reason = ocsp.CertificateHold
	PrivilegeWithdrawn   Reason = ocsp.PrivilegeWithdrawn
)

// PKI is a test CA with a live OCSP responder on loopback. Close it when
// done.
type PKI struct {
	// CA is the certificate authority; CA.Cert is the root clients trust.
	CA *responder.CA
	// Responder answers the OCSP requests: set statuses, faults and
	// windows on it at will.
	Responder *responder.Responder
	server    *responder.Server
	roots     *x509.CertPool
}

// NewPKI makes a CA and starts its responder. It panics if it cannot, as
// httptest.NewServer does.
func NewPKI() *PKI {
	ca, err := responder.NewCA(responder.CAOptions{})
	if err != nil {
		panic("staplertest: " + err.Error())
	}
	r := responder.New(ca)
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	return &PKI{CA: ca, Responder: r, server: responder.NewServer(r), roots: roots}
}

// Close stops the responder.
func (p *PKI) Close() { p.server.Close() }

// Issue mints a leaf for names (an ECDSA server and client certificate,
// "localhost" when none) whose AIA names the responder, which answers
// good for it. It panics if it cannot.
func (p *PKI) Issue(names ...string) *responder.Leaf {
	leaf, err := p.server.Issue(responder.LeafOptions{DNSNames: names})
	if err != nil {
		panic("staplertest: " + err.Error())
	}
	return leaf
}

// IssueMustStaple is Issue with the RFC 7633 must-staple extension.
func (p *PKI) IssueMustStaple(names ...string) *responder.Leaf {
	leaf, err := p.server.Issue(responder.LeafOptions{DNSNames: names, MustStaple: true})
	if err != nil {
		panic("staplertest: " + err.Error())
	}
	return leaf
}

// Revoke makes the responder answer revoked for leaf from now on, for
// reason.
func (p *PKI) Revoke(leaf *responder.Leaf, reason Reason) {
	p.Responder.SetStatus(leaf.Cert.SerialNumber, responder.Revoked(time.Now().Add(-time.Second), int(reason)))
}

// NewStapler returns a Stapler with OCSP on and logs discarded (quiet
// tests), changed by opts. Close it when done. It panics on an invalid
// option, as a test helper should fail loudly.
func (p *PKI) NewStapler(opts ...stapler.Option) *stapler.Stapler {
	quiet := stapler.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))
	s, err := stapler.New(config.OCSP{OCSPFunctionality: true}, append([]stapler.Option{quiet}, opts...)...)
	if err != nil {
		panic("staplertest: " + err.Error())
	}
	return s
}

// RefreshNow queries the responder for every certificate s manages, now,
// and staples the answers, as scheduled refreshes would: the way for a test
// to see a revocation without waiting for the schedule. It waits for the
// answers, and returns the first failure.
func RefreshNow(ctx context.Context, s *stapler.Stapler) error {
	if err := s.Ready(ctx); err != nil {
		return err
	}
	var first error
	for _, st := range s.Status() {
		if st.State == stapler.StateNotApplicable || st.State == stapler.StateDisabled {
			continue
		}
		if _, err := s.Test(ctx, st.ID); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// Server is a TLS server on loopback serving an http.Handler with a
// config, for example a wrapped one. Unlike httptest.Server it adds no
// certificate of its own to the config: a wrapped config selects every
// certificate itself.
type Server struct {
	// Addr is the server's host:port.
	Addr string
	srv  *http.Server
	done chan struct{}
}

// NewTLSServer serves h over TLS with cfg on a free loopback port. It
// panics if it cannot listen.
func NewTLSServer(cfg *tls.Config, h http.Handler) *Server {
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		panic("staplertest: " + err.Error())
	}
	quiet := log.New(io.Discard, "", 0) // refused handshakes are what tests provoke
	s := &Server{Addr: ln.Addr().String(), srv: &http.Server{Handler: h, ReadHeaderTimeout: time.Minute, ErrorLog: quiet}, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		s.srv.Serve(ln)
	}()
	return s
}

// Close stops the server and waits for it.
func (s *Server) Close() {
	s.srv.Close()
	<-s.done
}

// Staple is what a client got in one handshake.
type Staple struct {
	// Status is GOOD, REVOKED, NONE (nothing stapled) or INVALID (a staple
	// that does not verify; Err says why).
	Status string
	// Response is the verified staple (nil for NONE and INVALID).
	Response *stapler.Response
	Err      error
}

// String is the status, and the reason for INVALID.
func (s Staple) String() string {
	if s.Err != nil {
		return s.Status + ": " + s.Err.Error()
	}
	return s.Status
}

// Check does a handshake with srv for serverName as a client that trusts
// the CA would (TLS 1.3), and verifies the staple it got with
// stapler.VerifyResponse. A failed handshake is an error.
func (p *PKI) Check(srv *Server, serverName string) (Staple, error) {
	st, err := p.Dial(srv, serverName, nil)
	if err != nil {
		return Staple{}, err
	}
	if st.OCSPResponse == nil {
		return Staple{Status: "NONE"}, nil
	}
	if len(st.VerifiedChains) == 0 || len(st.VerifiedChains[0]) < 2 {
		return Staple{}, errors.New("staplertest: no verified chain")
	}
	chain := st.VerifiedChains[0]
	resp, err := stapler.VerifyResponse(st.OCSPResponse, chain[0], chain[1], stapler.VerifyOptions{})
	switch {
	case err != nil:
		return Staple{Status: "INVALID", Err: err}, nil
	case resp.Status == ocsp.Revoked:
		return Staple{Status: "REVOKED", Response: resp}, nil
	}
	return Staple{Status: "GOOD", Response: resp}, nil
}

// Dial does a handshake with srv for serverName (none for ""), as a client
// that trusts the CA; with v, the client checks the staple with it (a
// refusal is the error). It returns the connection's state.
func (p *PKI) Dial(srv *Server, serverName string, v *stapler.Verifier) (*tls.ConnectionState, error) {
	cfg := &tls.Config{RootCAs: p.roots, ServerName: serverName}
	var chains [][]*x509.Certificate
	if serverName == "" {
		// No name to check: verify the chain against the CA alone, as a
		// client dialling an IP address with no IP SAN to match would.
		cfg.InsecureSkipVerify = true
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			var err error
			if chains, err = cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: p.roots, Intermediates: inter}); err != nil {
				return err
			}
			if v == nil {
				return nil
			}
			cs.VerifiedChains = chains
			return v.VerifyConnection(cs)
		}
	} else if v != nil {
		cfg.VerifyConnection = v.VerifyConnection
	}
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: time.Minute}, Config: cfg}
	conn, err := d.DialContext(context.Background(), "tcp", srv.Addr)
	if err != nil {
		return nil, fmt.Errorf("staplertest: handshake with %s: %w", srv.Addr, err)
	}
	defer conn.Close()
	st := conn.(*tls.Conn).ConnectionState()
	if st.VerifiedChains == nil {
		st.VerifiedChains = chains
	}
	return &st, nil
}
