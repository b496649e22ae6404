package stapler

import (
	"crypto/tls"
	"testing"
)

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
