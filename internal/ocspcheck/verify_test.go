package ocspcheck

import (
	"crypto"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"github.com/staplerkit/ocsp/internal/ocsptest"
	"math/big"
	"testing"
	"time"

	"github.com/staplerkit/ocsp/internal/record"
	"github.com/staplerkit/ocsp/responder"
	"golang.org/x/crypto/ocsp"
)

func TestVerifyResponse(t *testing.T) {
	f := ocsptest.NewOCSPFixture(t)
	opts := Options{Skew: 5 * time.Minute}
	caSigned := func(mod func(*ocsp.Response)) []byte { return f.Sign(t, f.CA.Cert, f.CA.Key, false, mod) }
	for _, tc := range []struct {
		name string
		raw  []byte
		want error
	}{
		{"CA signed, nothing embedded", caSigned(nil), nil},
		{"CA signed, CA embedded", f.Sign(t, f.CA.Cert, f.CA.Key, true, nil), nil},
		{"delegate embedded", f.Sign(t, f.Delegate.Cert, f.Delegate.Key, true, nil), nil},
		{"SHA-256 CertID", caSigned(func(r *ocsp.Response) { r.IssuerHash = crypto.SHA256 }), nil},
		{"delegate not embedded", f.Sign(t, f.Delegate.Cert, f.Delegate.Key, false, nil), ErrUnauthorizedSigner},
		{"another serial", caSigned(func(r *ocsp.Response) { r.SerialNumber = big.NewInt(42) }), ErrWrongCertificate},
		{"critical extension", caSigned(func(r *ocsp.Response) {
			r.ExtraExtensions = []pkix.Extension{{Id: asn1.ObjectIdentifier{1, 2, 3, 4}, Critical: true, Value: []byte{5, 0}}}
		}), ErrCriticalExtension},
		{"non-critical extension", caSigned(func(r *ocsp.Response) {
			r.ExtraExtensions = []pkix.Extension{{Id: asn1.ObjectIdentifier{1, 2, 3, 4}, Value: []byte{5, 0}}}
		}), nil},
		{"thisUpdate within skew", caSigned(func(r *ocsp.Response) { r.ThisUpdate = f.Now.Add(4 * time.Minute) }), nil},
		{"thisUpdate beyond skew", caSigned(func(r *ocsp.Response) { r.ThisUpdate = f.Now.Add(6 * time.Minute) }), ErrNotYetValid},
		{"nextUpdate passed", caSigned(func(r *ocsp.Response) { r.ThisUpdate, r.NextUpdate = f.Now.Add(-2*time.Hour), f.Now.Add(-time.Second) }), ErrExpired},
		{"no nextUpdate, recent thisUpdate", caSigned(func(r *ocsp.Response) { r.NextUpdate = time.Time{} }), nil},
		{"no nextUpdate, thisUpdate an hour ago", caSigned(func(r *ocsp.Response) { r.ThisUpdate, r.NextUpdate = f.Now.Add(-time.Hour), time.Time{} }), ErrExpired},
		{"tryLater", ocsp.TryLaterErrorResponse, &ResponseStatusError{}},
		{"empty", nil, ErrMalformedResponse},
		{"trailing data", append(caSigned(nil), 0), ErrMalformedResponse},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := Verify(tc.raw, f.Leaf.Cert, f.CA.Cert, f.Now, opts)
			switch want := tc.want.(type) {
			case nil:
				if err != nil {
					t.Fatalf("rejected: %v", err)
				}
				if e.Status != record.Good {
					t.Fatalf("status %v", e.Status)
				}
			case *ResponseStatusError:
				var rse *ResponseStatusError
				if !errors.As(err, &rse) || rse.Status != ocsp.TryLater {
					t.Fatalf("got %v", err)
				}
			default:
				if !errors.Is(err, want) {
					t.Fatalf("got %v, want %v", err, want)
				}
			}
		})
	}
}

func TestVerifyCapsLifetimeAtLeafAndSignerNotAfter(t *testing.T) {
	f := ocsptest.NewOCSPFixture(t)
	shortLeaf, _ := f.CA.Issue(responder.LeafOptions{NotBefore: f.Now.Add(-time.Hour), NotAfter: f.Now.Add(10 * time.Minute)})
	f.Leaf = shortLeaf
	e, err := Verify(f.Sign(t, f.CA.Cert, f.CA.Key, false, nil), shortLeaf.Cert, f.CA.Cert, f.Now, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !e.Expires.Time().Equal(shortLeaf.Cert.NotAfter) {
		t.Fatalf("expires %v, want the leaf's NotAfter %v", e.Expires, shortLeaf.Cert.NotAfter)
	}
	shortDelegate, _ := f.CA.NewDelegate(responder.DelegateOptions{NotBefore: f.Now.Add(-time.Hour), NotAfter: f.Now.Add(5 * time.Minute)})
	e, err = Verify(f.Sign(t, shortDelegate.Cert, shortDelegate.Key, true, nil), shortLeaf.Cert, f.CA.Cert, f.Now, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !e.Expires.Time().Equal(shortDelegate.Cert.NotAfter) {
		t.Fatalf("expires %v, want the delegate's NotAfter %v", e.Expires, shortDelegate.Cert.NotAfter)
	}
}

func TestSkipVerifySkipsOnlyTheSigner(t *testing.T) {
	f := ocsptest.NewOCSPFixture(t)
	rogue, _ := responder.NewCA(responder.CAOptions{CommonName: "rogue"})
	raw := f.Sign(t, rogue.Cert, rogue.Key, true, nil)
	opts := Options{SkipSignature: true}
	if _, err := Verify(raw, f.Leaf.Cert, f.CA.Cert, f.Now, opts); err != nil {
		t.Fatalf("skip_verify rejected a rogue signer: %v", err)
	}
	if _, err := Verify(raw, f.Leaf.Cert, f.CA.Cert, f.Now, Options{}); !errors.Is(err, ErrUnauthorizedSigner) {
		t.Fatalf("got %v", err)
	}
	other := f.Sign(t, rogue.Cert, rogue.Key, true, func(r *ocsp.Response) { r.SerialNumber = big.NewInt(7) })
	if _, err := Verify(other, f.Leaf.Cert, f.CA.Cert, f.Now, opts); !errors.Is(err, ErrWrongCertificate) {
		t.Fatalf("skip_verify accepted another certificate's response: %v", err)
	}
}

// FuzzVerifyResponse checks that no input panics and that nothing is
// accepted unless it is a valid response for the leaf.
func FuzzVerifyResponse(f *testing.F) {
	fx := ocsptest.NewOCSPFixture(f)
	good := fx.Sign(f, fx.CA.Cert, fx.CA.Key, false, nil)
	f.Add(good)
	f.Add(fx.Sign(f, fx.Delegate.Cert, fx.Delegate.Key, true, nil))
	f.Add(ocsp.TryLaterErrorResponse)
	f.Add([]byte{0x30, 0x00})
	f.Fuzz(func(t *testing.T, raw []byte) {
		e, err := Verify(raw, fx.Leaf.Cert, fx.CA.Cert, fx.Now, Options{Skew: time.Minute})
		if err != nil {
			return
		}
		// Whatever was accepted must verify with x/crypto too.
		if _, perr := ocsp.ParseResponseForCert(raw, fx.Leaf.Cert, fx.CA.Cert); perr != nil {
			t.Fatalf("accepted a response x/crypto rejects: %v", perr)
		}
		if !e.Expires.Time().After(fx.Now) {
			t.Fatal("accepted an expired response")
		}
	})
}
