package stapler

import (
	"crypto/tls"
	"errors"
	"testing"

	"golang.org/x/crypto/ocsp"

	"github.com/staplerkit/ocsp/config"
	"github.com/staplerkit/ocsp/responder"
)

// issueNamed issues a leaf whose AIA OCSP URL is aia, known good to e's
// responder.
func (e *env) issueNamed(aia, name string) *responder.Leaf {
	e.t.Helper()
	l, err := e.ca.Issue(responder.LeafOptions{OCSPServer: []string{aia}, DNSNames: []string{name}})
	if err != nil {
		e.t.Fatal(err)
	}
	e.r.SetStatus(l.Cert.SerialNumber, responder.Good())
	return l
}

// An override keyed by a certificate's own AIA URL rewrites its responder
// or, empty, disables fetching for it; the others are untouched; Status
// shows both URLs.
func TestResponderOverridesRewriteOrDisableByAIAURL(t *testing.T) {
	const internal, retired = "http://ocsp.internal.invalid/ca1", "http://ocsp.retired.invalid/"
	e := newEnv(t, on)
	e.restart(WithResponderOverrides(map[string]string{internal: e.srv.URL, retired: ""}))
	rewritten := e.issueNamed(internal, "rewritten.test")
	disabled := e.issueNamed(retired, "disabled.test")
	plain := e.leaf
	addr := e.wrapAndServe(plain.Certificate, rewritten.Certificate, disabled.Certificate)

	e.mustGetStaple(addr, plain, ocsp.Good)
	if st := e.status(plain); st.ResponderURL != e.srv.URL || st.AIAResponderURL != "" {
		t.Fatalf("no override: responder %q, aia %q", st.ResponderURL, st.AIAResponderURL)
	}
	staple, _, err := e.handshake(addr, func(c *tls.Config) { c.ServerName = "rewritten.test" })
	if err != nil || staple == nil {
		t.Fatalf("rewritten: no staple (%v)", err)
	}
	if st := e.status(rewritten); st.ResponderURL != e.srv.URL || st.AIAResponderURL != internal || st.State != StateGood {
		t.Fatalf("rewritten: %+v", st)
	}
	if staple, _, err := e.handshake(addr, func(c *tls.Config) { c.ServerName = "disabled.test" }); err != nil || staple != nil {
		t.Fatalf("disabled: stapled %v (%v)", staple != nil, err)
	}
	if st := e.status(disabled); st.ResponderURL != "" || st.AIAResponderURL != retired || st.State != StateNotApplicable {
		t.Fatalf("disabled: %+v", st)
	}
	if n := e.r.CountFor(disabled.Cert.SerialNumber); n != 0 {
		t.Fatalf("the disabled certificate was asked about %d times", n)
	}
	if _, err := e.s.Test(t.Context(), CertificateID(disabled.Cert.Raw)); !errors.Is(err, ErrNoResponderURL) {
		t.Fatalf("Test of a disabled certificate: %v", err)
	}
}

// An override is more specific than WithResponderURL.
func TestResponderOverrideWinsOverWithResponderURL(t *testing.T) {
	const retired = "http://ocsp.retired.invalid/"
	e := newEnv(t, on)
	e.restart(WithResponderURL(e.srv.URL), WithResponderOverrides(map[string]string{retired: ""}))
	disabled := e.issueNamed(retired, "disabled.test")
	elsewhere := e.issueNamed("http://ocsp.elsewhere.invalid/", "elsewhere.test")
	e.wrapAndServe(elsewhere.Certificate, disabled.Certificate)
	e.waitStapled(elsewhere)
	if st := e.status(disabled); st.State != StateNotApplicable || st.ResponderURL != "" {
		t.Fatalf("disabled by an override beside WithResponderURL: %+v", st)
	}
}

func TestResponderOverridesAreValidated(t *testing.T) {
	for _, bad := range []map[string]string{
		{"ocsp.example.com": "http://proxy.test/"},
		{"http://ocsp.example.com/": "ldap://proxy.test/"},
		{"http://ocsp.example.com/": "http:///no-host"},
		{"": "http://proxy.test/"},
	} {
		_, err := New(on, WithResponderOverrides(bad))
		var ce *config.Error
		if !errors.As(err, &ce) || ce.Code != config.CodeInvalidSchema {
			t.Fatalf("%v: New returned %v, want invalid_schema", bad, err)
		}
	}
	s, err := New(on, WithResponderOverrides(map[string]string{"http://ocsp.example.com/": "", "https://a.test/x": "http://b.test:8080/y"}))
	if err != nil {
		t.Fatalf("valid overrides refused: %v", err)
	}
	s.Close()
}

// The Verifier's own requests follow its overrides.
func TestVerifierFollowsResponderOverrides(t *testing.T) {
	const internal = "http://ocsp.internal.invalid/ca1"
	e := newEnv(t, on)
	leaf := e.issueNamed(internal, "localhost")
	plain := e.serve(tlsConfigFor(leaf)) // staples nothing: the Verifier asks
	v := &Verifier{HardFail: true, FetchTimeout: hangLimit, Time: e.clock.Now, ResponderOverrides: map[string]string{internal: e.srv.URL}}
	if err := e.dialVerified(plain, v); err != nil {
		t.Fatalf("refused: %v", err)
	}
	if n := e.r.CountFor(leaf.Cert.SerialNumber); n != 1 {
		t.Fatalf("the overriding responder was asked %d times, want 1", n)
	}
	off := &Verifier{HardFail: true, FetchTimeout: hangLimit, Time: e.clock.Now, ResponderOverrides: map[string]string{internal: ""}}
	if err := e.dialVerified(plain, off); !errors.Is(err, ErrNoStaple) {
		t.Fatalf("with fetching disabled: %v, want ErrNoStaple", err)
	}
}
