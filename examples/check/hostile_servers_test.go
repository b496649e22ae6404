package main

import (
	"bytes"
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/staplerkit/ocsp/responder"
)

// TestServerThatHangsAfterTheHandshakeIsJudged: the probe needs nothing
// after the handshake, so a server that then neither reads nor writes
// nor closes is judged on its staple like any other.
func TestServerThatHangsAfterTheHandshakeIsJudged(t *testing.T) {
	p, t0 := fixedPKI(t)
	leaf, _ := p.srv.Issue(responder.LeafOptions{})
	cert := leaf.Certificate
	cert.OCSPStaple = respond(t, p, leaf, responder.Window{})
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}}
	ctx := t.Context()
	addr := listen(t, func(c net.Conn) {
		tc := tls.Server(c, cfg)
		if tc.Handshake() == nil {
			<-ctx.Done() // neither read, write nor close until the test ends
		}
	})
	if code, out, errOut := probeAt(t, t0, "-connect", addr, "-servername", "localhost", "-CAfile", p.caFile); code != exitOK {
		t.Fatalf("exit %d, want OK:\n%s%s", code, out, errOut)
	}
}

// TestStapleForAnotherCertificateIsCritical: a staple that is a valid
// response about another certificate of the same CA is no staple for
// this one: clients refuse it.
func TestStapleForAnotherCertificateIsCritical(t *testing.T) {
	p, t0 := fixedPKI(t)
	leaf, _ := p.srv.Issue(responder.LeafOptions{})
	other, _ := p.srv.Issue(responder.LeafOptions{})
	addr := serveStaple(t, leaf, respond(t, p, other, responder.Window{}))
	code, out, _ := probeAt(t, t0, "-connect", addr, "-servername", "localhost", "-CAfile", p.caFile)
	if code != exitCritical || !strings.HasPrefix(out, "OCSP CRITICAL - invalid OCSP staple: OCSP response is for another certificate") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
}

// TestHugeStapleIsCritical: a staple over stapler.MaxResponseBytes is
// refused as a staple; one too big for a TLS handshake message breaks the
// handshake itself, which the server did answer in TLS: CRITICAL, not
// UNKNOWN, either way.
func TestHugeStapleIsCritical(t *testing.T) {
	p, t0 := fixedPKI(t)
	leaf, _ := p.srv.Issue(responder.LeafOptions{})
	for _, tc := range []struct {
		name string
		size int
		want string
	}{
		{"over MaxResponseBytes", 20 << 10, "invalid OCSP staple: OCSP response larger than the cap"},
		{"over a handshake message", 70 << 10, "TLS handshake failed: tls: handshake message of length"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := serveStaple(t, leaf, bytes.Repeat([]byte{0x30}, tc.size))
			code, out, errOut := probeAt(t, t0, "-connect", addr, "-servername", "localhost", "-CAfile", p.caFile)
			if code != exitCritical || !strings.HasPrefix(out, "OCSP CRITICAL - ") || !strings.Contains(firstLine(out), tc.want) {
				t.Fatalf("exit %d, want CRITICAL %q:\n%s%s", code, tc.want, out, errOut)
			}
		})
	}
}

// TestServerWithNoCertificateForTheNameIsCritical: a server that refuses
// a handshake for a name it has no certificate for (or for no name at
// all) answers in TLS, with an alert: it is up and failing its clients,
// CRITICAL, not UNKNOWN.
func TestServerWithNoCertificateForTheNameIsCritical(t *testing.T) {
	p, t0 := fixedPKI(t)
	leaf, _ := p.srv.Issue(responder.LeafOptions{})
	addr := serveTLS(t, &tls.Config{GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		if hello.ServerName == "localhost" {
			return &leaf.Certificate, nil
		}
		return nil, errors.New("no certificate for " + hello.ServerName)
	}})
	for _, args := range [][]string{{"-servername", "nowhere.test"}, {}} {
		code, out, errOut := probeAt(t, t0, append([]string{"-connect", addr, "-CAfile", p.caFile}, args...)...)
		if code != exitCritical || !strings.HasPrefix(out, "OCSP CRITICAL - TLS handshake failed: ") {
			t.Fatalf("%v: exit %d, want CRITICAL:\n%s%s", args, code, out, errOut)
		}
	}
	// The name it does serve: nothing stapled, WARNING.
	if code, out, _ := probeAt(t, t0, "-connect", addr, "-servername", "localhost", "-CAfile", p.caFile); code != exitWarning {
		t.Fatalf("localhost: exit %d:\n%s", code, out)
	}
}

// TestVersionsThatDisagreeNameTheWorse: a server that staples on one TLS
// version and not the other is judged by the worse, and the reason says
// which version it concerns.
func TestVersionsThatDisagreeNameTheWorse(t *testing.T) {
	p, t0 := fixedPKI(t)
	leaf, _ := p.srv.Issue(responder.LeafOptions{})
	stapled := leaf.Certificate
	stapled.OCSPStaple = respond(t, p, leaf, responder.Window{})
	addr := serveTLS(t, &tls.Config{GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		for _, v := range hello.SupportedVersions {
			if v == tls.VersionTLS13 {
				return &leaf.Certificate, nil // no staple on TLS 1.3
			}
		}
		return &stapled, nil
	}})
	code, out, _ := probeAt(t, t0, "-connect", addr, "-servername", "localhost", "-CAfile", p.caFile)
	// The perfdata is the TLS 1.2 staple's: the only one there is.
	want := "OCSP WARNING - TLS 1.3: no OCSP response stapled | staple_ttl=86340s;21600:;8640: response_age=60s staple_ttl_tls12=86340s;21600:;8640: response_age_tls12=60s"
	if code != exitWarning || firstLine(out) != want {
		t.Fatalf("exit %d, first line\n%q, want\n%q", code, firstLine(out), want)
	}
}

// TestServerThatDemandsAClientCertificateIsJudgedOnItsStaple: a TLS
// 1.2 server that refuses a client without a certificate has sent its
// own certificate and staple before it does: the probe judges them.
func TestServerThatDemandsAClientCertificateIsJudgedOnItsStaple(t *testing.T) {
	p, t0 := fixedPKI(t)
	leaf, _ := p.srv.Issue(responder.LeafOptions{})
	cert := leaf.Certificate
	cert.OCSPStaple = respond(t, p, leaf, responder.Window{})
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		addr := serveTLS(t, &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequireAnyClientCert, MinVersion: v, MaxVersion: v})
		code, out, errOut := probeAt(t, t0, "-connect", addr, "-servername", "localhost", "-CAfile", p.caFile)
		if code != exitOK || !strings.HasPrefix(out, "OCSP OK - staple good") {
			t.Fatalf("%s only: exit %d, want OK:\n%s%s", tls.VersionName(v), code, out, errOut)
		}
		if v == tls.VersionTLS12 && (!strings.Contains(out, "asks for a client certificate") || !strings.Contains(out, "does not offer TLS 1.3")) {
			t.Fatalf("TLS 1.2 only: the details do not say what happened:\n%s", out)
		}
	}
}
