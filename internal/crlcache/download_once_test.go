package crlcache

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sync/singleflight"
)

// testHost is a Host on a fixed clock whose downloads are counted and
// answered by answer; Share is a plain singleflight.
type testHost struct {
	now       time.Time
	downloads atomic.Int64
	answer    func() ([]byte, error)
	flight    singleflight.Group
}

func (h *testHost) host() Host {
	return Host{
		Download: func(context.Context, string) ([]byte, error) {
			h.downloads.Add(1)
			return h.answer()
		},
		Share: func(ctx context.Context, key string, fetch func() any) (any, error) {
			ch := h.flight.DoChan(key, func() (any, error) { return fetch(), nil })
			select {
			case r := <-ch:
				return r.Val, r.Err
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		},
		Now: func() time.Time { return h.now },
	}
}

func testOptions() Options {
	return Options{Skew: 5 * time.Minute, MaxMemory: 1 << 20, FetchTimeout: time.Second, RetryMin: 5 * time.Second, RetryMax: time.Minute}
}

// issuerCA makes a CA certificate and its key.
func issuerCA(t *testing.T) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "crlcache test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return ca, key
}

// A download that failed is remembered: a caller that looked before the
// failure was recorded, and asks for the download just after it ended,
// gets the remembered failure and starts no second download before the
// backoff has passed (the Verifier's handshakes: "downloaded once however
// many wait", then the failure's backoff).
func TestACallerThatMissedAFailedDownloadDoesNotStartAnother(t *testing.T) {
	ca, _ := issuerCA(t)
	h := &testHost{now: time.Now(), answer: func() ([]byte, error) { return nil, errors.New("connection refused") }}
	cc := New(h.host())
	issuer := sha256.Sum256(ca.Raw)
	const url = "http://crl.test/ca.crl"
	if _, err := cc.Get(context.Background(), testOptions(), issuer, url, ca, User); err == nil {
		t.Fatal("a failed download gave a CRL")
	}
	// Another caller's Get checked for a remembered failure before the
	// first download ended, and asks for the download now.
	if _, err := cc.shared(context.Background(), testOptions(), issuer, url, ca, User, true); err == nil {
		t.Fatal("the second caller got no error")
	}
	if n := h.downloads.Load(); n != 1 {
		t.Fatalf("%d downloads, want 1: a caller that missed the failure downloaded again within its backoff", n)
	}
}
