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
	"runtime"
	"sync"
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

// gatedHost is a Host on a settable clock whose shared requests are
// counted per key (callers that joined, callers answered), and whose
// first request of the key held is held, before its fetch starts, until
// release is closed.
type gatedHost struct {
	mu        sync.Mutex
	now       time.Time
	held      string        // the key whose first fetch waits for release
	entered   chan struct{} // closed when that fetch is waiting
	release   chan struct{}
	flights   map[string]*gatedFlight
	joined    map[string]int
	answered  map[string]int
	downloads atomic.Int64
	answer    func() ([]byte, error)
}

type gatedFlight struct {
	done chan struct{}
	val  any
}

func (h *gatedHost) clock() time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.now
}

func (h *gatedHost) set(now time.Time) {
	h.mu.Lock()
	h.now = now
	h.mu.Unlock()
}

// counts returns how many callers joined and were answered for key.
func (h *gatedHost) counts(key string) (joined, answered int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.joined[key], h.answered[key]
}

func (h *gatedHost) host() Host {
	return Host{
		Download: func(context.Context, string) ([]byte, error) {
			h.downloads.Add(1)
			return h.answer()
		},
		Share: func(ctx context.Context, key string, fetch func() any) (any, error) {
			h.mu.Lock()
			h.joined[key]++
			f := h.flights[key]
			if f == nil {
				f = &gatedFlight{done: make(chan struct{})}
				h.flights[key] = f
				gate := key == h.held && h.entered != nil
				if gate {
					close(h.entered)
					h.entered = nil
				}
				go func() {
					if gate {
						<-h.release
					}
					f.val = fetch()
					h.mu.Lock()
					delete(h.flights, key)
					h.mu.Unlock()
					close(f.done)
				}()
			}
			h.mu.Unlock()
			defer func() {
				h.mu.Lock()
				h.answered[key]++
				h.mu.Unlock()
			}()
			select {
			case <-f.done:
				return f.val, nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		},
		Now: h.clock,
	}
}

// makeCRL is a CRL of ca (no issuing distribution point: it covers user
// and CA certificates) numbered n, valid from thisUpdate for validity.
func makeCRL(t *testing.T, ca *x509.Certificate, key *ecdsa.PrivateKey, n int64, thisUpdate time.Time, validity time.Duration) []byte {
	t.Helper()
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(n), ThisUpdate: thisUpdate, NextUpdate: thisUpdate.Add(validity)}, ca, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// A background refresh that Lookup starts for a held CRL due for it
// downloads, even when it joins a caller's shared download (same issuer,
// point and kind) whose look again found that CRL held, brought meanwhile
// by the download for the other kind of certificate: the caller's flight
// downloads nothing, and the refresh must not then be forgotten with the
// kind left "refreshing" for good (no refresh ever again until the CRL
// expires, so that revocations published meanwhile are not seen).
func TestARefreshThatJoinsACallersRecheckedDownloadStillDownloads(t *testing.T) {
	ca, key := issuerCA(t)
	t0 := time.Now().Truncate(time.Second)
	const url = "http://crl.test/ca.crl"
	issuer := sha256.Sum256(ca.Raw)
	userKey := flightKey(issuer, url, User)
	h := &gatedHost{now: t0, held: userKey, entered: make(chan struct{}), release: make(chan struct{}),
		flights: map[string]*gatedFlight{}, joined: map[string]int{}, answered: map[string]int{}}
	var number atomic.Int64
	h.answer = func() ([]byte, error) {
		return makeCRL(t, ca, key, number.Add(1), h.clock().Add(-time.Minute), time.Hour), nil
	}
	cc := New(h.host())
	opts := testOptions()

	// A handshake of a user certificate finds nothing held and starts the
	// download for user certificates (held before its look again).
	entered := h.entered
	userDone := make(chan error, 1)
	go func() {
		_, err := cc.Get(context.Background(), opts, issuer, url, ca, User)
		userDone <- err
	}()
	<-entered
	// Meanwhile a handshake of a CA certificate downloads the CRL, which
	// covers user certificates too.
	if _, err := cc.Get(context.Background(), opts, issuer, url, ca, CA); err != nil {
		t.Fatal(err)
	}
	// Later, the CRL held is due for its refresh (at half its validity):
	// a lookup for a user certificate starts it, which joins the user
	// download still under way.
	later := t0.Add(40 * time.Minute)
	h.set(later)
	if cc.Lookup(opts, issuer, []byte(url), ca, User, later) == nil {
		t.Fatal("the CRL downloaded for a CA certificate is not held for a user certificate")
	}
	for j, _ := h.counts(userKey); j < 2; j, _ = h.counts(userKey) {
		runtime.Gosched()
	}
	close(h.release)
	if err := <-userDone; err != nil {
		t.Fatal(err)
	}
	for _, a := h.counts(userKey); a < 2; _, a = h.counts(userKey) {
		runtime.Gosched()
	}
	// The refresh has ended: it downloaded the CRL again, or (having
	// downloaded nothing) left the kind free for the next lookup's.
	for deadline := time.Now().Add(10 * time.Second); h.downloads.Load() < 2; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the due refresh never downloaded (%d downloads; refreshing %v): it joined a caller's download that looked again, found the CRL held and downloaded nothing, and the kind stays refreshing for good",
				h.downloads.Load(), cc.Refreshing(url))
		}
		cc.Lookup(opts, issuer, []byte(url), ca, User, later)
	}
}
