package main

import (
	"crypto/tls"
	"testing"

	"github.com/staplerkit/ocsp/config"
	"github.com/staplerkit/ocsp/responder"
	"github.com/staplerkit/ocsp/stapler"
)

// serveWrapped serves leaf through a Stapler-wrapped config changed by mod.
func serveWrapped(t *testing.T, leaf *responder.Leaf, mod func(*tls.Config)) string {
	t.Helper()
	s, err := stapler.New(config.OCSP{OCSPFunctionality: true}, stapler.WithColdWait(hangLimit))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	cfg := &tls.Config{Certificates: []tls.Certificate{leaf.Certificate}}
	mod(cfg)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", s.Wrap(cfg))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { c.(*tls.Conn).Handshake(); c.Close() }()
		}
	}()
	return ln.Addr().String()
}

// TestTLS13OnlyServerIsNotUnknown: a server with MinVersion TLS 1.3
// (a common modern setting) stapling a good response is judged UNKNOWN
// (exit 3) for ever, because the probe also insists on a TLS 1.2
// handshake and counts its refusal as "no handshake". A version the
// server does not offer is no problem with its staple: the probe should
// judge the versions that do handshake (and be UNKNOWN only when none
// does).
func TestTLS13OnlyServerIsNotUnknown(t *testing.T) {
	p := newPKI(t)
	good, _ := p.srv.Issue(responder.LeafOptions{})
	addr := serveWrapped(t, good, func(c *tls.Config) { c.MinVersion = tls.VersionTLS13 })
	if code, obj := runCheck(t, "-connect", addr, "-servername", "localhost", "-CAfile", p.caFile, "-warn", "1h"); code != exitOK {
		t.Fatalf("a TLS 1.3-only server stapling a good response: exit %d, want %d (OK): %v", code, exitOK, obj)
	}
}

// TestTLS12OnlyServerIsNotUnknown: the same for a server that
// speaks TLS 1.2 only.
func TestTLS12OnlyServerIsNotUnknown(t *testing.T) {
	p := newPKI(t)
	good, _ := p.srv.Issue(responder.LeafOptions{})
	addr := serveWrapped(t, good, func(c *tls.Config) { c.MaxVersion = tls.VersionTLS12 })
	if code, obj := runCheck(t, "-connect", addr, "-servername", "localhost", "-CAfile", p.caFile, "-warn", "1h"); code != exitOK {
		t.Fatalf("a TLS 1.2-only server stapling a good response: exit %d, want %d (OK): %v", code, exitOK, obj)
	}
}

// TestIPTargetChecksTheAddress: dialled by IP address, the probe
// checks the chain against the roots but not against the address: a
// server at 127.0.0.1 presenting a certificate for another host only (no
// IP SAN) is judged OK, where any client verifying the address refuses it.
func TestIPTargetChecksTheAddress(t *testing.T) {
	p := newPKI(t)
	other, _ := p.srv.Issue(responder.LeafOptions{DNSNames: []string{"somewhere-else.test"}})
	addr := serveWrapped(t, other, func(*tls.Config) {})
	if code, obj := runCheck(t, "-connect", addr, "-CAfile", p.caFile, "-warn", "1h"); code != exitCritical {
		t.Fatalf("a certificate not valid for the address dialled: exit %d, want %d (CRITICAL): %v", code, exitCritical, obj)
	}
}

// TestFetchKeepsAMissingMustStapleCritical: a must-staple certificate
// served with no staple is refused by the clients that honour RFC 7633
// (CRITICAL without -fetch), but with -fetch the probe asks the responder
// itself, gets a good answer, and says WARNING: the outage is downgraded.
func TestFetchKeepsAMissingMustStapleCritical(t *testing.T) {
	p := newPKI(t)
	must, err := p.srv.Issue(responder.LeafOptions{MustStaple: true})
	if err != nil {
		t.Fatal(err)
	}
	// A server that staples nothing: crypto/tls alone.
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{must.Certificate}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { c.(*tls.Conn).Handshake(); c.Close() }()
		}
	}()
	if code, obj := runCheck(t, "-connect", ln.Addr().String(), "-servername", "localhost", "-CAfile", p.caFile); code != exitCritical {
		t.Fatalf("control, without -fetch: exit %d: %v", code, obj)
	}
	if code, obj := runCheck(t, "-connect", ln.Addr().String(), "-servername", "localhost", "-CAfile", p.caFile, "-fetch"); code != exitCritical {
		t.Fatalf("must-staple served without a staple, with -fetch: exit %d, want %d (CRITICAL): %v", code, exitCritical, obj)
	}
}
