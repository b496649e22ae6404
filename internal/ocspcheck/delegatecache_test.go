package ocspcheck

import (
	"testing"

	"github.com/staplerkit/ocsp/responder"
)

// The remembered delegate signatures are keyed by both certificates: a
// delegate found signed by its CA is not thereby taken as signed by
// another CA, before or after.
func TestRememberedDelegateSignaturesAreKeyedByTheIssuer(t *testing.T) {
	ca, err := responder.NewCA(responder.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	other, err := responder.NewCA(responder.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d, err := ca.NewDelegate(responder.DelegateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // the second time from the cache
		if err := signedBy(d.Cert, ca.Cert); err != nil {
			t.Fatalf("the delegate's own CA: %v", err)
		}
		if err := signedBy(d.Cert, other.Cert); err == nil {
			t.Fatal("a delegate taken as signed by another CA")
		}
	}
}
