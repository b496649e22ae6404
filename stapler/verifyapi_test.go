package stapler_test

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/staplerkit/ocsp/responder"
	"github.com/staplerkit/ocsp/stapler"
)

func ExampleVerifyResponse() {
	ca, _ := responder.NewCA(responder.CAOptions{})
	leaf, _ := ca.Issue(responder.LeafOptions{})
	r := responder.New(ca)
	r.SetStatus(leaf.Cert.SerialNumber, responder.Revoked(time.Now().Add(-time.Hour), ocsp.KeyCompromise))
	raw, _ := r.Respond(leaf.Cert) // the DER response, as a responder or a staple gives it

	resp, err := stapler.VerifyResponse(raw, leaf.Cert, ca.Cert, stapler.VerifyOptions{})
	if err != nil {
		fmt.Println("refused:", err)
		return
	}
	fmt.Println("revoked:", resp.Status == ocsp.Revoked, "reason:", resp.RevocationReason)

	// The same bytes are refused for a certificate they do not answer for.
	other, _ := ca.Issue(responder.LeafOptions{})
	_, err = stapler.VerifyResponse(raw, other.Cert, ca.Cert, stapler.VerifyOptions{})
	fmt.Println(errors.Is(err, stapler.ErrWrongCertificate))
	// Output:
	// revoked: true reason: 1
	// true
}

func readVector(t *testing.T, name string) []byte {
	t.Helper()
	b64, err := os.ReadFile(filepath.Join("..", "internal", "ocspcheck", "testdata", "openssl-ocsp", name))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(string(b64)), ""))
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func readCert(t *testing.T, name string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "internal", "ocspcheck", "testdata", "openssl-ocsp", name))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// OpenSSL's WSNIC vector, a response checked against an issuer with the
// right key but another name. x/crypto's ParseResponseForCert accepts it
// (it matches the serial and the signature); VerifyResponse matches the
// full CertID and refuses.
func TestVerifyResponseRefusesAnIssuerWithAnotherName(t *testing.T) {
	raw := readVector(t, "ND1.ors")
	leaf := readCert(t, "ND1_Cert_EE.pem")
	opts := stapler.VerifyOptions{CurrentTime: time.Date(2012, 10, 12, 0, 0, 0, 0, time.UTC), AllowSHA1: true}
	if _, err := stapler.VerifyResponse(raw, leaf, readCert(t, "ND1_Issuer_ICA.pem"), opts); err != nil {
		t.Fatalf("the right issuer: %v", err)
	}
	wrong := readCert(t, "WSNIC_ND1_Issuer_ICA.pem")
	if _, err := ocsp.ParseResponseForCert(raw, leaf, wrong); err != nil {
		t.Logf("x/crypto refuses it too: %v", err)
	}
	if _, err := stapler.VerifyResponse(raw, leaf, wrong, opts); !errors.Is(err, stapler.ErrWrongCertificate) {
		t.Fatalf("an issuer with another name: got %v, want ErrWrongCertificate", err)
	}
}

// FuzzVerifyResponseAgainstXCrypto is a differential test: whatever
// VerifyResponse accepts, x/crypto's ParseResponseForCert parses too, with
// the same status, serial and times. (The reverse does not hold: the
// stricter rules are documented on VerifyResponse.)
func FuzzVerifyResponseAgainstXCrypto(f *testing.F) {
	ca, err := responder.NewCA(responder.CAOptions{})
	if err != nil {
		f.Fatal(err)
	}
	leaf, err := ca.Issue(responder.LeafOptions{})
	if err != nil {
		f.Fatal(err)
	}
	r := responder.New(ca)
	now := time.Now()
	r.SetClock(func() time.Time { return now })
	good, _ := r.Respond(leaf.Cert)
	f.Add(good)
	r.SetStatus(leaf.Cert.SerialNumber, responder.Revoked(now.Add(-time.Hour), ocsp.Superseded))
	revoked, _ := r.Respond(leaf.Cert)
	f.Add(revoked)
	d, err := ca.NewDelegate(responder.DelegateOptions{})
	if err != nil {
		f.Fatal(err)
	}
	r.UseDelegate(d)
	delegated, _ := r.Respond(leaf.Cert)
	f.Add(delegated)
	f.Fuzz(func(t *testing.T, raw []byte) {
		ours, err := stapler.VerifyResponse(raw, leaf.Cert, ca.Cert, stapler.VerifyOptions{CurrentTime: now})
		if err != nil {
			return
		}
		theirs, err := ocsp.ParseResponseForCert(raw, leaf.Cert, ca.Cert)
		if err != nil {
			t.Fatalf("accepted here, refused by x/crypto: %v", err)
		}
		if theirs.Status != ours.Status || theirs.SerialNumber.Cmp(leaf.Cert.SerialNumber) != 0 ||
			!theirs.ThisUpdate.Equal(ours.ThisUpdate) || !theirs.NextUpdate.Equal(ours.NextUpdate) || !theirs.ProducedAt.Equal(ours.ProducedAt) {
			t.Fatalf("x/crypto reads %+v, we read %+v", theirs, ours)
		}
		// What we would staple parses the same way.
		if again, err := ocsp.ParseResponseForCert(ours.Raw, leaf.Cert, ca.Cert); err != nil || again.Status != ours.Status {
			t.Fatalf("the canonical form does not parse: %v", err)
		}
	})
}
