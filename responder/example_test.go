package responder_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/staplerkit/ocsp/responder"
)

// A few lines give a test a CA, a certificate whose AIA points at a live
// responder, and control over what the responder answers.
func Example() {
	ca, err := responder.NewCA(responder.CAOptions{})
	if err != nil {
		panic(err)
	}
	srv := responder.NewServer(responder.New(ca))
	defer srv.Close()

	leaf, err := srv.Issue(responder.LeafOptions{DNSNames: []string{"example.test"}})
	if err != nil {
		panic(err)
	}
	ask := func() string {
		req, _ := ocsp.CreateRequest(leaf.Cert, ca.Cert, nil)
		resp, err := http.Post(leaf.Cert.OCSPServer[0], "application/ocsp-request", bytes.NewReader(req))
		if err != nil {
			return err.Error()
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		parsed, err := ocsp.ParseResponseForCert(body, leaf.Cert, ca.Cert)
		if err != nil {
			return err.Error()
		}
		return map[int]string{ocsp.Good: "good", ocsp.Revoked: "revoked", ocsp.Unknown: "unknown"}[parsed.Status]
	}
	fmt.Println(ask())

	srv.Responder.SetStatus(leaf.Cert.SerialNumber, responder.Revoked(time.Now(), ocsp.KeyCompromise))
	fmt.Println(ask())

	srv.Responder.SetFault(responder.Fault{Kind: responder.FaultTryLater})
	fmt.Println(ask())
	fmt.Println(srv.Responder.RequestCount(), "requests")
	// Output:
	// good
	// revoked
	// ocsp: error from server: try later
	// 3 requests
}
