package stapler

// How CRL downloads are counted in CRLMetrics.

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// A distribution point whose TLS handshake fails (an https CRL server
// with a certificate the Verifier does not trust) is counted as
// CRLFetchConnection, as its doc says ("DNS, refused, reset, a TLS
// failure"). Found by an attack session: it was counted as "other".
func TestVerifierCRLTLSFailureIsCountedAsAConnectionFailure(t *testing.T) {
	p := newCRLPKI(t)
	tlsSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(p.crl(1, nil)) }))
	t.Cleanup(tlsSrv.Close)
	v := p.verifier(true)
	if err := v.VerifyConnection(p.state(p.leaf(5, leafOpts{points: []string{tlsSrv.URL + "/ca.crl"}}))); err == nil {
		t.Fatal("accepted with no CRL")
	}
	if m := v.CRLMetrics(); m.Fetches[CRLFetchConnection] != 1 {
		t.Fatalf("a TLS failure counted as %+v", m.Fetches)
	}
}
