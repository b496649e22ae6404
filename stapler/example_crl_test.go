package stapler_test

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"time"

	"github.com/staplerkit/ocsp/stapler"
)

// An mTLS server whose clients' CA publishes CRLs and runs no OCSP
// responder.
func ExampleVerifier_crl() {
	clientCAs := x509.NewCertPool() // the CA's certificate: clientCAs.AppendCertsFromPEM(caPEM)
	v := &stapler.Verifier{
		// The Verifier may fetch each client certificate's CRL (its
		// http or https CRL distribution point), and this bounds the
		// whole check of one handshake.
		FetchTimeout: 3 * time.Second,
		// Refuse a client whose status could not be established (the
		// CRL server down, the CRL expired or refused). Without it,
		// only a known revocation is refused.
		HardFail: true,
	}
	server := &http.Server{
		Addr: ":8443",
		TLSConfig: &tls.Config{
			ClientAuth:       tls.RequireAndVerifyClientCert,
			ClientCAs:        clientCAs,
			VerifyConnection: v.VerifyConnection,
		},
	}
	_ = server // server.ListenAndServeTLS("server.pem", "server.key")
}
