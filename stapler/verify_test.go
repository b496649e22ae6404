package stapler

import (
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"math/big"
	"testing"
	"time"

	"github.com/staplerkit/ocsp/internal/record"
	"github.com/staplerkit/ocsp/responder"
	"golang.org/x/crypto/ocsp"
)

type verifyFixture struct {
	ca       *responder.CA
	leaf     *responder.Leaf
	delegate *responder.Signer
	now      time.Time
}

func newVerifyFixture(t testing.TB) *verifyFixture {
	t.Helper()
	ca, err := responder.NewCA(responder.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue(responder.LeafOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d, err := ca.NewDelegate(responder.DelegateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return &verifyFixture{ca: ca, leaf: leaf, delegate: d, now: time.Now().Truncate(time.Second)}
}

// sign makes a response about the leaf, changed by mod, signed by key with
// signerCert named as the responder and embedded when embed is set.
func (f *verifyFixture) sign(t testing.TB, signerCert *x509.Certificate, key crypto.Signer, embed bool, mod func(*ocsp.Response)) []byte {
	t.Helper()
	tmpl := ocsp.Response{
		Status:       ocsp.Good,
		SerialNumber: f.leaf.Cert.SerialNumber,
		ThisUpdate:   f.now.Add(-time.Minute),
		NextUpdate:   f.now.Add(time.Hour),
	}
	if embed {
		tmpl.Certificate = signerCert
	}
	if mod != nil {
		mod(&tmpl)
	}
	der, err := ocsp.CreateResponse(f.ca.Cert, signerCert, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestVerifyResponse(t *testing.T) {
	f := newVerifyFixture(t)
	opts := verifyOptions{skew: 5 * time.Minute}
	caSigned := func(mod func(*ocsp.Response)) []byte { return f.sign(t, f.ca.Cert, f.ca.Key, false, mod) }
	for _, tc := range []struct {
		name string
		raw  []byte
		want error
	}{
		{"CA signed, nothing embedded", caSigned(nil), nil},
		{"CA signed, CA embedded", f.sign(t, f.ca.Cert, f.ca.Key, true, nil), nil},
		{"delegate embedded", f.sign(t, f.delegate.Cert, f.delegate.Key, true, nil), nil},
		{"SHA-256 CertID", caSigned(func(r *ocsp.Response) { r.IssuerHash = crypto.SHA256 }), nil},
		{"delegate not embedded", f.sign(t, f.delegate.Cert, f.delegate.Key, false, nil), ErrUnauthorizedSigner},
		{"another serial", caSigned(func(r *ocsp.Response) { r.SerialNumber = big.NewInt(42) }), ErrWrongCertificate},
		{"critical extension", caSigned(func(r *ocsp.Response) {
			r.ExtraExtensions = []pkix.Extension{{Id: asn1.ObjectIdentifier{1, 2, 3, 4}, Critical: true, Value: []byte{5, 0}}}
		}), ErrCriticalExtension},
		{"non-critical extension", caSigned(func(r *ocsp.Response) {
			r.ExtraExtensions = []pkix.Extension{{Id: asn1.ObjectIdentifier{1, 2, 3, 4}, Value: []byte{5, 0}}}
		}), nil},
		{"thisUpdate within skew", caSigned(func(r *ocsp.Response) { r.ThisUpdate = f.now.Add(4 * time.Minute) }), nil},
		{"thisUpdate beyond skew", caSigned(func(r *ocsp.Response) { r.ThisUpdate = f.now.Add(6 * time.Minute) }), ErrNotYetValid},
		{"nextUpdate passed", caSigned(func(r *ocsp.Response) { r.ThisUpdate, r.NextUpdate = f.now.Add(-2*time.Hour), f.now.Add(-time.Second) }), ErrExpired},
		{"no nextUpdate, recent thisUpdate", caSigned(func(r *ocsp.Response) { r.NextUpdate = time.Time{} }), nil},
		{"no nextUpdate, thisUpdate an hour ago", caSigned(func(r *ocsp.Response) { r.ThisUpdate, r.NextUpdate = f.now.Add(-time.Hour), time.Time{} }), ErrExpired},
		{"tryLater", ocsp.TryLaterErrorResponse, &ResponseStatusError{}},
		{"empty", nil, ErrMalformedResponse},
		{"trailing data", append(caSigned(nil), 0), ErrMalformedResponse},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := verifyResponse(tc.raw, f.leaf.Cert, f.ca.Cert, f.now, opts)
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
	f := newVerifyFixture(t)
	shortLeaf, _ := f.ca.Issue(responder.LeafOptions{NotBefore: f.now.Add(-time.Hour), NotAfter: f.now.Add(10 * time.Minute)})
	f.leaf = shortLeaf
	e, err := verifyResponse(f.sign(t, f.ca.Cert, f.ca.Key, false, nil), shortLeaf.Cert, f.ca.Cert, f.now, verifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !e.Expires.Time().Equal(shortLeaf.Cert.NotAfter) {
		t.Fatalf("expires %v, want the leaf's NotAfter %v", e.Expires, shortLeaf.Cert.NotAfter)
	}
	shortDelegate, _ := f.ca.NewDelegate(responder.DelegateOptions{NotBefore: f.now.Add(-time.Hour), NotAfter: f.now.Add(5 * time.Minute)})
	e, err = verifyResponse(f.sign(t, shortDelegate.Cert, shortDelegate.Key, true, nil), shortLeaf.Cert, f.ca.Cert, f.now, verifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !e.Expires.Time().Equal(shortDelegate.Cert.NotAfter) {
		t.Fatalf("expires %v, want the delegate's NotAfter %v", e.Expires, shortDelegate.Cert.NotAfter)
	}
}

func TestSkipVerifySkipsOnlyTheSigner(t *testing.T) {
	f := newVerifyFixture(t)
	rogue, _ := responder.NewCA(responder.CAOptions{CommonName: "rogue"})
	raw := f.sign(t, rogue.Cert, rogue.Key, true, nil)
	opts := verifyOptions{skipSignature: true}
	if _, err := verifyResponse(raw, f.leaf.Cert, f.ca.Cert, f.now, opts); err != nil {
		t.Fatalf("skip_verify rejected a rogue signer: %v", err)
	}
	if _, err := verifyResponse(raw, f.leaf.Cert, f.ca.Cert, f.now, verifyOptions{}); !errors.Is(err, ErrUnauthorizedSigner) {
		t.Fatalf("got %v", err)
	}
	other := f.sign(t, rogue.Cert, rogue.Key, true, func(r *ocsp.Response) { r.SerialNumber = big.NewInt(7) })
	if _, err := verifyResponse(other, f.leaf.Cert, f.ca.Cert, f.now, opts); !errors.Is(err, ErrWrongCertificate) {
		t.Fatalf("skip_verify accepted another certificate's response: %v", err)
	}
}

// FuzzVerifyResponse checks that no input panics and that nothing is
// accepted unless it is a valid response for the leaf.
func FuzzVerifyResponse(f *testing.F) {
	fx := newVerifyFixture(f)
	good := fx.sign(f, fx.ca.Cert, fx.ca.Key, false, nil)
	f.Add(good)
	f.Add(fx.sign(f, fx.delegate.Cert, fx.delegate.Key, true, nil))
	f.Add(ocsp.TryLaterErrorResponse)
	f.Add([]byte{0x30, 0x00})
	f.Fuzz(func(t *testing.T, raw []byte) {
		e, err := verifyResponse(raw, fx.leaf.Cert, fx.ca.Cert, fx.now, verifyOptions{skew: time.Minute})
		if err != nil {
			return
		}
		// Whatever was accepted must verify with x/crypto too.
		if _, perr := ocsp.ParseResponseForCert(raw, fx.leaf.Cert, fx.ca.Cert); perr != nil {
			t.Fatalf("accepted a response x/crypto rejects: %v", perr)
		}
		if !e.Expires.Time().After(fx.now) {
			t.Fatal("accepted an expired response")
		}
	})
}
