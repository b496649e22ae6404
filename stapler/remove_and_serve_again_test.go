package stapler

import (
	"crypto/tls"
	"testing"
	"time"

	"github.com/staplerkit/ocsp/responder"
)

// FINDING (fixed), OLDER (fails at a08ca52 too). TestListedServedAgainAfterRemoveNeverRetires: "Listed
// certificates never retire" (WithMaxCertificates). A listed certificate
// that was Removed and is then served again by its wrapped config ("managed
// afresh, as on first sight") is managed afresh as a certificate found on
// its own: serveManaged's removed branch calls s.add (addAll with no
// homes), so the new state is not marked listed, while the list entry keeps
// pointing at the removed state. A flood of certificates from an
// application's GetCertificate then retires it under the bound, and the
// listed config's handshakes go cold again (a fetch each time it is
// retired).
func TestListedServedAgainAfterRemoveNeverRetires(t *testing.T) {
	e := newEnv(t, on, WithMaxCertificates(2))
	listed := e.s.Wrap(tlsConfigFor(e.leaf))
	e.mustGetStaple(e.serve(listed), e.leaf, 0)
	id := CertificateID(e.leaf.Cert.Raw)
	if err := e.s.Remove(id); err != nil {
		t.Fatal(err)
	}
	if c, err := listed.GetCertificate(helloFor()); err != nil || c.OCSPStaple == nil {
		t.Fatalf("served again after Remove: not stapled (%v)", err)
	}
	var flood []tls.Certificate
	for range 3 {
		l, err := e.srv.Issue(responder.LeafOptions{DNSNames: []string{"flood.test"}})
		if err != nil {
			t.Fatal(err)
		}
		flood = append(flood, l.Certificate)
	}
	next := 0
	app := e.s.Wrap(&tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		c := &flood[next]
		next++
		return c, nil
	}})
	for range flood {
		e.clock.Advance(2 * time.Second) // each served later than the listed one
		if _, err := app.GetCertificate(&tls.ClientHelloInfo{ServerName: "flood.test"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.s.StatusOf(id); err != nil {
		t.Fatalf("the listed certificate, served again after Remove, retired under the bound: %v", err)
	}
}

// FINDING (fixed), OLDER (fails at a08ca52 too). TestAFixedChainIsStapled: an
// application first wraps a leaf with a broken chain (the issuer missing,
// no AIA caIssuers to fetch it from), sees it unstapled, fixes its chain
// and wraps again: the wrapped config now holds the issuer, and must be
// stapled ("every handshake gets the staple for the certificate it is
// served"). The issuer is taken from the chain once, at first sight
// (newManaged -> chainIssuer); adopt (a re-Wrap with another chain) never
// looks at the new chain, so the certificate stays without a staple until
// the process restarts (or the certificate is Removed).
func TestAFixedChainIsStapled(t *testing.T) {
	e := newEnv(t, on)
	broken := leafOnly(e.leaf)
	e.s.Wrap(&tls.Config{Certificates: []tls.Certificate{broken}})
	if st := e.waitQueries(e.leaf, 1); st.Stapled {
		t.Fatal("stapled without an issuer")
	}
	fixed := e.s.Wrap(tlsConfigFor(e.leaf))
	before := e.advanceToNextRefresh(e.leaf)
	e.waitQueries(e.leaf, before+1)
	if c, err := fixed.GetCertificate(helloFor()); err != nil || c.OCSPStaple == nil {
		t.Fatalf("the config wrapped with the fixed chain is not stapled (%v): %s", err, e.status(e.leaf).LastError)
	}
}

// FINDING (fixed), OLDER (fails at a08ca52 too). TestRemoveThenLeafOnlyFirstLosesTheIssuer: two configs
// list one leaf, A with its issuer in the chain, B with the leaf alone (a
// server that sends a short chain to some clients; B is stapled because
// the state learned the issuer from A's chain). After Remove ("served
// again, it is managed afresh, as on first sight"), the first handshake to
// come decides: when it is B's, serveManaged's removed branch registers the
// state anew from B's chain (s.add of the entry's bare copy, no issuer in
// it), and from then on neither config is stapled, not even A, whose chain
// holds the issuer: adopt/viewFor never take the issuer from another chain
// (see TestAFixedChainIsStapled). Under concurrent handshakes this is
// a race (TestSameLeafConfigsUnderChurn hit it in 2 runs out of 8
// before its second chain was made to hold the issuer).
func TestRemoveThenLeafOnlyFirstLosesTheIssuer(t *testing.T) {
	e := newEnv(t, on)
	a := e.s.Wrap(tlsConfigFor(e.leaf))
	b := e.s.Wrap(&tls.Config{Certificates: []tls.Certificate{leafOnly(e.leaf)}})
	hello := helloFor()
	for _, cfg := range []*tls.Config{a, b} {
		if c, err := cfg.GetCertificate(hello); err != nil || c.OCSPStaple == nil {
			t.Fatalf("before Remove: not stapled (%v)", err)
		}
	}
	if err := e.s.Remove(CertificateID(e.leaf.Cert.Raw)); err != nil {
		t.Fatal(err)
	}
	b.GetCertificate(hello) // served again: B's handshake first
	e.waitQueries(e.leaf, 1)
	a.GetCertificate(hello)
	before := e.advanceToNextRefresh(e.leaf)
	e.waitQueries(e.leaf, before+1)
	if c, err := a.GetCertificate(hello); err != nil || c.OCSPStaple == nil {
		t.Fatalf("A, whose chain holds the issuer, is not stapled after Remove (%v): %s", err, e.status(e.leaf).LastError)
	}
}
