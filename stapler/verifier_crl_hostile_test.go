package stapler

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// Hostile CRL servers and odd CRLs the Verifier withstands: the size cap,
// lying lengths, redirects, slow bodies, non-HTTP points, scope, sibling
// CAs, serial encodings, ordering without numbers, clock skew, refreshes
// under load. Found when attacking issue 29's CRL checking.

// A hostile CRL server answers with a gzip bomb (32 MiB of zeros in a few
// kilobytes, Content-Encoding: gzip): the transport inflates it, and the
// download stops at MaxCRLBytes of inflated bytes.
func TestVerifierCRLGzipBombStopsAtTheCap(t *testing.T) {
	p := newCRLPKI(t)
	var bomb bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&bomb, gzip.BestCompression)
	zw.Write(make([]byte, 32<<20))
	zw.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
			w.Write(p.crl(1, nil))
			return
		}
		w.Header().Set("Content-Encoding", "gzip")
		w.Header().Set("Content-Length", strconv.Itoa(bomb.Len()))
		w.Write(bomb.Bytes())
	}))
	t.Cleanup(srv.Close)
	v := p.verifier(true)
	v.MaxCRLBytes = 1 << 20
	if err := v.VerifyConnection(p.state(p.leaf(5, leafOpts{points: []string{srv.URL + "/ca.crl"}}))); !errors.Is(err, ErrCRLTooLarge) {
		t.Fatalf("gzip bomb: %v", err)
	}
	if m := v.CRLMetrics(); m.Fetches[CRLFetchTooLarge] != 1 {
		t.Fatalf("metrics %+v", m.Fetches)
	}
}

// A body of exactly MaxCRLBytes is read, one byte more is refused, with or
// without a Content-Length; the default cap refuses 10 MiB + 1 of junk.
func TestVerifierCRLSizeCapIsExact(t *testing.T) {
	p := newCRLPKI(t)
	der := p.crl(1, []int64{5})
	for _, chunked := range []bool{false, true} {
		p.mu.Lock()
		p.chunked = chunked
		p.mu.Unlock()
		p.serve(der)
		v := p.verifier(true)
		v.MaxCRLBytes = int64(len(der))
		var revoked *RevokedError
		if err := v.VerifyConnection(p.state(p.leaf(5, leafOpts{}))); !errors.As(err, &revoked) {
			t.Fatalf("chunked %v, exactly the cap: %v", chunked, err)
		}
		v = p.verifier(true)
		v.MaxCRLBytes = int64(len(der)) - 1
		if err := v.VerifyConnection(p.state(p.leaf(5, leafOpts{}))); !errors.Is(err, ErrCRLTooLarge) {
			t.Fatalf("chunked %v, one byte over: %v", chunked, err)
		}
	}
	p.serve(make([]byte, DefaultMaxCRLBytes+1))
	v := p.verifier(true)
	if err := v.VerifyConnection(p.state(p.leaf(5, leafOpts{}))); !errors.Is(err, ErrCRLTooLarge) {
		t.Fatalf("10 MiB + 1 under the default cap: %v", err)
	}
}

// A Content-Length that lies, either way, never gives a CRL: a shorter
// announcement truncates the DER (malformed), a longer one ends in an
// unexpected EOF. Neither hangs or panics.
func TestVerifierCRLContentLengthLies(t *testing.T) {
	p := newCRLPKI(t)
	der := p.crl(1, nil)
	for _, delta := range []int{-10, +10} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", strconv.Itoa(len(der)+delta))
			w.Write(der)
		}))
		v := p.verifier(true)
		err := v.VerifyConnection(p.state(p.leaf(5, leafOpts{points: []string{srv.URL + "/ca.crl"}})))
		srv.Close()
		if err == nil {
			t.Fatalf("Content-Length off by %d: accepted", delta)
		}
	}
}

// Redirects from a hostile CRL server: to file://, in a loop, refused; to
// another host, followed, and the CRL is checked against the distribution
// point the certificate named (an issuing distribution point naming only
// the redirect's target is refused).
func TestVerifierCRLRedirects(t *testing.T) {
	p := newCRLPKI(t)
	mirror := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/idp.crl" {
			w.Write(p.crl(1, []int64{5}, func(rl *x509.RevocationList) {
				rl.ExtraExtensions = []pkix.Extension{crlIDP("http://"+r.Host+"/idp.crl", false, false)}
			}))
			return
		}
		w.Write(p.crl(1, []int64{5}))
	}))
	t.Cleanup(mirror.Close)
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/file.crl":
			http.Redirect(w, r, "file:///etc/passwd", http.StatusFound)
		case "/loop.crl":
			http.Redirect(w, r, srv.URL+"/loop.crl", http.StatusFound)
		case "/mirror.crl":
			http.Redirect(w, r, mirror.URL+"/ca.crl", http.StatusFound)
		case "/mirror-idp.crl":
			http.Redirect(w, r, mirror.URL+"/idp.crl", http.StatusFound)
		}
	}))
	t.Cleanup(srv.Close)
	check := func(path string) error {
		return p.verifier(true).VerifyConnection(p.state(p.leaf(5, leafOpts{points: []string{srv.URL + path}})))
	}
	for _, path := range []string{"/file.crl", "/loop.crl"} {
		if err := check(path); !errors.Is(err, ErrRedirect) {
			t.Errorf("%s: %v", path, err)
		}
	}
	var revoked *RevokedError
	if err := check("/mirror.crl"); !errors.As(err, &revoked) {
		t.Errorf("redirect to a mirror: %v", err)
	}
	if err := check("/mirror-idp.crl"); !errors.Is(err, ErrCRLScope) {
		t.Errorf("redirect to a mirror whose CRL's issuing distribution point names the mirror only: %v", err)
	}
}

// A slow-loris CRL server (headers, then a byte now and then) holds a
// handshake no longer than FetchTimeout.
func TestVerifierCRLSlowLorisBodyIsBoundedByTheDeadline(t *testing.T) {
	p := newCRLPKI(t)
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100000")
		for {
			w.Write([]byte{0x30})
			w.(http.Flusher).Flush()
			select {
			case <-release:
				return
			case <-r.Context().Done():
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	v := &Verifier{HardFail: true, FetchTimeout: 300 * time.Millisecond, Time: p.clock.Now}
	start := time.Now()
	err := v.VerifyConnection(p.state(p.leaf(5, leafOpts{points: []string{srv.URL + "/ca.crl"}})))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("slow loris: %v", err)
	}
	if d := time.Since(start); d > hangLimit/2 {
		t.Fatalf("the handshake waited %v", d)
	}
}

// Only http and https points are fetched: a certificate naming LDAP and
// ftp points only has no CRL; HardFail refuses it, soft fail allows it.
func TestVerifierCRLNonHTTPPointsAreNotFetched(t *testing.T) {
	p := newCRLPKI(t)
	leaf := p.leaf(5, leafOpts{points: []string{"ldap://ldap.test/cn=CA?certificateRevocationList", "ftp://ftp.test/ca.crl", "file:///etc/ca.crl"}})
	if err := p.verifier(true).VerifyConnection(p.state(leaf)); err == nil {
		t.Fatal("HardFail: accepted")
	}
	if err := p.verifier(false).VerifyConnection(p.state(leaf)); err != nil {
		t.Fatalf("soft fail: %v", err)
	}
}

// A hostile CRL server replays the CA's CRL of CA certificates
// (onlyContainsCACerts, naming its URL) for a client certificate: not
// relied on.
func TestVerifierCRLForCACertificatesIsNotUsedForALeaf(t *testing.T) {
	p := newCRLPKI(t)
	p.serve(p.crl(1, nil, func(rl *x509.RevocationList) {
		ext := crlIDP(p.url, false, false)
		// The same issuing distribution point, onlyContainsCACerts [2].
		ext.Value = append(ext.Value[:len(ext.Value):len(ext.Value)], 0x82, 0x01, 0xff)
		ext.Value[1] += 3
		rl.ExtraExtensions = []pkix.Extension{ext}
	}))
	if err := p.verifier(true).VerifyConnection(p.state(p.leaf(5, leafOpts{}))); !errors.Is(err, ErrCRLScope) {
		t.Fatalf("%v", err)
	}
}

// A sibling CA of the same name and another key, whose certificates name
// the same URL: its CRL is not the other's, and the two are held apart.
func TestVerifierCRLSiblingCAOfTheSameNameIsKeptApart(t *testing.T) {
	p := newCRLPKI(t)
	sibling, siblingKey := p.newCA("CRL Test CA")
	p.serve(p.crl(1, []int64{5}))
	v := p.verifier(true)
	var revoked *RevokedError
	if err := v.VerifyConnection(p.state(p.leaf(5, leafOpts{}))); !errors.As(err, &revoked) {
		t.Fatal(err)
	}
	q := &crlPKI{t: t, clock: p.clock, ca: sibling, key: siblingKey, srv: p.srv, url: p.url}
	if err := v.VerifyConnection(q.state(q.leaf(6, leafOpts{}))); !errors.Is(err, ErrCRLWrongIssuer) {
		t.Fatalf("the sibling's client, checked against the CA's CRL: %v", err)
	}
}

// Serials as the certificate encodes them: serials whose first byte has
// the high bit (DER 00 80, 00 80 00) are found; their neighbours (7f,
// 00 80 00 00, 7f ff, 00) are not; a serial listed twice is revoked.
func TestVerifierCRLSerialEncodings(t *testing.T) {
	p := newCRLPKI(t)
	p.serve(p.crl(1, []int64{128, 0x8000, 9, 9}))
	v := p.verifier(true)
	var revoked *RevokedError
	for _, s := range []int64{128, 0x8000, 9} {
		if err := v.VerifyConnection(p.state(p.leaf(s, leafOpts{}))); !errors.As(err, &revoked) {
			t.Fatalf("serial %#x: %v", s, err)
		}
	}
	for _, s := range []int64{127, 0x80 << 16, 0x7fff, 0} {
		if err := v.VerifyConnection(p.state(p.leaf(s, leafOpts{}))); err != nil {
			t.Fatalf("serial %#x: %v", s, err)
		}
	}
}

// A CRL whose thisUpdate is ahead of the clock within ClockSkew is used.
func TestVerifierCRLThisUpdateAheadWithinSkew(t *testing.T) {
	p := newCRLPKI(t)
	p.serve(p.crl(1, []int64{5}, func(rl *x509.RevocationList) { rl.ThisUpdate = p.clock.Now().Add(4 * time.Minute) }))
	var revoked *RevokedError
	if err := p.verifier(true).VerifyConnection(p.state(p.leaf(5, leafOpts{}))); !errors.As(err, &revoked) {
		t.Fatal(err)
	}
}

// Many handshakes while refreshes replace the CRL (run with -race): a
// good client is never refused, a revoked one never accepted.
func TestVerifierCRLHandshakesDuringRefreshes(t *testing.T) {
	p := newCRLPKI(t)
	p.serve(p.crl(1, []int64{5}))
	v := p.verifier(true)
	good, bad := p.leaf(6, leafOpts{}), p.leaf(5, leafOpts{})
	var wg sync.WaitGroup
	stop := make(chan struct{})
	errs := make(chan error, 64)
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := v.VerifyConnection(p.state(good)); err != nil {
					errs <- err
					return
				}
				var revoked *RevokedError
				if err := v.VerifyConnection(p.state(bad)); !errors.As(err, &revoked) {
					errs <- err
					return
				}
			}
		})
	}
	ok := func() uint64 { return v.CRLMetrics().Fetches[CRLFetchOK] }
	for n := uint64(2); n < 30; n++ {
		// The previous download is in before the clock moves (else its
		// refresh is planned from the later time).
		eventually(t, "the previous download", func() bool { return ok() >= n-1 && !v.crlRefreshing(p.url) })
		p.serve(p.crl(int64(n), []int64{5}))
		p.clock.Advance(61 * time.Minute)
		eventually(t, "a refresh", func() bool { return ok() >= n })
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// crlRefreshing reports whether a refresh of url (any issuer) is under way.
func (v *Verifier) crlRefreshing(url string) bool { return v.crls.Refreshing(url) }

// Two CAs issue a client certificate of the same serial and name the same
// CRL URL; only one of them lists it. The known revocation is kept by the
// certificate (its DER's hash) and the CRL by the issuer: the other CA's
// client is never refused, before or after the revocation is learnt.
func TestVerifierCRLRevocationOfOneIssuerDoesNotRefuseTheSameSerialOfAnother(t *testing.T) {
	p := newCRLPKI(t)
	s := newPointServer(t)
	other, otherKey := p.newCA("Other CA")
	p.serve(p.crl(1, []int64{5}))
	revokedLeaf := p.leaf(5, leafOpts{})
	// The other CA's CRL, at its own URL, lists nothing; its client names
	// both URLs (the first CA's too).
	rl := &x509.RevocationList{Number: big.NewInt(1), ThisUpdate: p.clock.Now().Add(-time.Minute), NextUpdate: p.clock.Now().Add(24 * time.Hour)}
	der, err := x509.CreateRevocationList(rand.Reader, rl, other, otherKey)
	if err != nil {
		t.Fatal(err)
	}
	s.serve("/other.crl", der)
	// The other CA's client names both URLs (the first CA's first).
	savedCA, savedKey := p.ca, p.key
	p.ca, p.key = other, otherKey
	otherLeaf := p.leaf(5, leafOpts{points: []string{p.url, s.url("/other.crl")}})
	p.ca, p.key = savedCA, savedKey
	v := p.verifier(true)
	var revoked *RevokedError
	if err := v.VerifyConnection(p.state(revokedLeaf)); !errors.As(err, &revoked) {
		t.Fatalf("the first CA's revoked client: %v", err)
	}
	cs := tls.ConnectionState{PeerCertificates: []*x509.Certificate{otherLeaf}, VerifiedChains: [][]*x509.Certificate{{otherLeaf, other}}}
	if err := v.VerifyConnection(cs); err != nil {
		t.Fatalf("the other CA's client of the same serial: %v", err)
	}
}

// crlIDP is an issuingDistributionPoint naming url, with onlyContainsUserCerts
// when users.
func crlIDP(url string, users, indirect bool) pkix.Extension {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.Tag(6).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes([]byte(url)) })
			})
		})
		if users {
			b.AddASN1(cbasn1.Tag(1).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddUint8(0xff) })
		}
		if indirect {
			b.AddASN1(cbasn1.Tag(4).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddUint8(0xff) })
		}
	})
	return pkix.Extension{Id: asn1.ObjectIdentifier{2, 5, 29, 28}, Critical: true, Value: b.BytesOrPanic()}
}

// Every CRL the Verifier must not rely on leaves the status unknown:
// allowed without HardFail, refused with it for the reason given.
func TestVerifierCRLRefusesWhatCannotBeReliedOn(t *testing.T) {
	p := newCRLPKI(t)
	otherCA, otherKey := p.newCA("CRL Test CA") // the CA's name, another key
	deltaValue, _ := asn1.Marshal(big.NewInt(1))
	withExt := func(e pkix.Extension) func(*x509.RevocationList) {
		return func(rl *x509.RevocationList) { rl.ExtraExtensions = append(rl.ExtraExtensions, e) }
	}
	for _, tc := range []struct {
		name     string
		der      func() []byte
		v        func(*Verifier)
		chunked  bool
		want     error
		accepted bool
	}{
		{name: "an issuing distribution point naming the URL fetched", der: func() []byte { return p.crl(1, nil, withExt(crlIDP(p.url, true, false))) }, accepted: true},
		{name: "an issuing distribution point naming another URL", der: func() []byte { return p.crl(1, nil, withExt(crlIDP("http://other.test/ca.crl", false, false))) }, want: ErrCRLScope},
		{name: "an indirect CRL", der: func() []byte { return p.crl(1, nil, withExt(crlIDP(p.url, false, true))) }, want: ErrIndirectCRL},
		{name: "a delta CRL", der: func() []byte {
			return p.crl(1, nil, withExt(pkix.Extension{Id: asn1.ObjectIdentifier{2, 5, 29, 27}, Critical: true, Value: deltaValue}))
		}, want: ErrDeltaCRL},
		{name: "an unknown critical extension", der: func() []byte {
			return p.crl(1, nil, withExt(pkix.Extension{Id: asn1.ObjectIdentifier{1, 2, 3}, Critical: true, Value: []byte{5, 0}}))
		}, want: ErrCRLCriticalExtension},
		{name: "expired", der: func() []byte {
			return p.crl(1, nil, func(rl *x509.RevocationList) {
				rl.ThisUpdate, rl.NextUpdate = p.clock.Now().Add(-48*time.Hour), p.clock.Now().Add(-time.Second)
			})
		}, want: ErrCRLExpired},
		{name: "not yet valid", der: func() []byte {
			return p.crl(1, nil, func(rl *x509.RevocationList) { rl.ThisUpdate = p.clock.Now().Add(10 * time.Minute) })
		}, want: ErrCRLNotYetValid},
		{name: "signed by another key", der: func() []byte {
			rl := &x509.RevocationList{Number: big.NewInt(1), ThisUpdate: p.clock.Now().Add(-time.Minute), NextUpdate: p.clock.Now().Add(time.Hour)}
			der, _ := x509.CreateRevocationList(nil, rl, otherCA, otherKey)
			return der
		}, want: ErrCRLWrongIssuer},
		{name: "not a CRL", der: func() []byte { return []byte("<html>maintenance</html>") }, want: ErrCRLMalformed},
		{name: "over MaxCRLBytes, by its Content-Length", der: func() []byte { return p.crl(1, []int64{1, 2, 3}) }, v: func(v *Verifier) { v.MaxCRLBytes = 200 }, want: ErrCRLTooLarge},
		{name: "over MaxCRLBytes, as it is read", der: func() []byte { return p.crl(1, []int64{1, 2, 3}) }, v: func(v *Verifier) { v.MaxCRLBytes = 200 }, chunked: true, want: ErrCRLTooLarge},
		{name: "an index over MaxCRLMemory", der: func() []byte { return p.crl(1, []int64{1, 2, 3}) }, v: func(v *Verifier) { v.MaxCRLMemory = 100 }, want: ErrCRLTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p.serve(tc.der())
			p.mu.Lock()
			p.chunked = tc.chunked
			p.mu.Unlock()
			leaf := p.leaf(5, leafOpts{})
			soft, hard := p.verifier(false), p.verifier(true)
			if tc.v != nil {
				tc.v(soft)
				tc.v(hard)
			}
			if err := soft.VerifyConnection(p.state(leaf)); err != nil {
				t.Fatalf("soft fail refused: %v", err)
			}
			err := hard.VerifyConnection(p.state(leaf))
			if tc.accepted {
				if err != nil || hard.CRLMetrics().Held != 1 {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var se *StapleError
			if !errors.Is(err, tc.want) || !errors.As(err, &se) || !se.HardFail {
				t.Fatalf("hard fail: %v, want %v", err, tc.want)
			}
			if m := hard.CRLMetrics(); m.Held != 0 || m.Fetches[CRLFetchOK] != 0 {
				t.Fatalf("a refused CRL held: %+v", m)
			}
		})
	}
}

func TestVerifierCRLFailuresAreRememberedWithBackoff(t *testing.T) {
	p := newCRLPKI(t)
	p.mu.Lock()
	p.status = http.StatusServiceUnavailable
	p.mu.Unlock()
	v := p.verifier(true)
	leaf := p.leaf(5, leafOpts{})
	for i, step := range []struct {
		advance time.Duration
		hits    int
	}{{0, 1}, {0, 1}, {4 * time.Second, 1}, {time.Second, 2}, {9 * time.Second, 2}, {time.Second, 3}} {
		p.clock.Advance(step.advance)
		if err := v.VerifyConnection(p.state(leaf)); !errors.Is(err, ErrHTTPStatus) {
			t.Fatalf("step %d: %v", i, err)
		}
		if n := p.crlHits(); n != step.hits {
			t.Fatalf("step %d: %d downloads, want %d", i, n, step.hits)
		}
	}
}

// The CRLs held together stay within MaxCRLMemory: the one looked up
// longest ago makes room.
func TestVerifierCRLMemoryCapDropsTheLeastRecentlyUsed(t *testing.T) {
	a, b := newCRLPKI(t), newCRLPKI(t)
	b.clock = a.clock
	a.serve(a.crl(1, []int64{7, 8, 9}))
	b.serve(b.crl(1, []int64{7, 8, 9}))
	v := a.verifier(true)
	la, lb := a.leaf(5, leafOpts{}), b.leaf(5, leafOpts{})
	if err := v.VerifyConnection(a.state(la)); err != nil {
		t.Fatal(err)
	}
	one := v.CRLMetrics().Bytes
	v2 := a.verifier(true)
	v2.MaxCRLMemory = one + one/2
	for _, step := range []struct {
		p    *crlPKI
		leaf *x509.Certificate
	}{{a, la}, {b, lb}, {a, la}} {
		a.clock.Advance(time.Second)
		if err := v2.VerifyConnection(step.p.state(step.leaf)); err != nil {
			t.Fatal(err)
		}
		if m := v2.CRLMetrics(); m.Held != 1 || m.Bytes > v2.MaxCRLMemory || len(m.NextUpdate) != 1 || m.NextUpdate[step.p.url].IsZero() {
			t.Fatalf("metrics %+v", m)
		}
	}
	if a.crlHits() != 3 || b.crlHits() != 1 {
		t.Fatalf("downloads: %d and %d, want 3 (one of them v's) and 1", a.crlHits(), b.crlHits())
	}
}

// One deadline bounds the check of a certificate whose CRL server hangs.
func TestVerifierCRLServerThatHangsIsBoundedByTheDeadline(t *testing.T) {
	p := newCRLPKI(t)
	p.mu.Lock()
	p.hang = make(chan struct{})
	p.mu.Unlock()
	leaf := p.leaf(5, leafOpts{})
	for _, hard := range []bool{false, true} {
		v := &Verifier{HardFail: hard, FetchTimeout: 100 * time.Millisecond, Time: p.clock.Now}
		done := make(chan error, 1)
		go func() { done <- v.VerifyConnection(p.state(leaf)) }()
		select {
		case err := <-done:
			if hard != (err != nil) || hard && !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("hard fail %v: %v", hard, err)
			}
		case <-time.After(hangLimit):
			t.Fatalf("hard fail %v: the check outlived its deadline", hard)
		}
	}
}

func TestVerifierAsksTheResponderFirstAndTheCRLWhenItFails(t *testing.T) {
	p := newCRLPKI(t)
	p.serve(p.crl(1, []int64{5}))
	leaf := p.leaf(5, leafOpts{ocsp: true})
	p.mu.Lock()
	p.ocspState = 0 // good
	p.mu.Unlock()
	if err := p.verifier(true).VerifyConnection(p.state(leaf)); err != nil || p.crlHits() != 0 {
		t.Fatalf("the responder's good answer: %v, %d CRL downloads", err, p.crlHits())
	}
	p.mu.Lock()
	p.ocspState = -1 // down
	p.mu.Unlock()
	var revoked *RevokedError
	if err := p.verifier(false).VerifyConnection(p.state(leaf)); !errors.As(err, &revoked) {
		t.Fatalf("responder down: the CRL's revocation not seen: %v", err)
	}
	// Must-staple rules are as they were: no staple, no connection,
	// whatever the CRL says.
	ms := p.leaf(6, leafOpts{mustStaple: true})
	if err := p.verifier(false).VerifyConnection(p.state(ms)); !errors.Is(err, ErrNoStaple) {
		t.Fatalf("must-staple without a staple: %v", err)
	}
}

// Once a CRL is held, the check of a certificate it does or does not
// list allocates nothing.
func TestVerifierCRLLookupOfAHeldCRLAllocatesNothing(t *testing.T) {
	p := newCRLPKI(t)
	p.serve(p.crl(1, []int64{5}))
	v := p.verifier(true)
	revoked, good := p.leaf(5, leafOpts{}), p.leaf(6, leafOpts{})
	if err := v.VerifyConnection(p.state(good)); err != nil {
		t.Fatal(err)
	}
	check := func(leaf *x509.Certificate) *peerCheck {
		return &peerCheck{v: v, ctx: context.Background(), leaf: leaf, issuer: p.ca, now: p.clock.Now()}
	}
	cr, cg := check(revoked), check(good)
	if n := testing.AllocsPerRun(100, func() {
		if cg.checkCRL() != nil {
			panic("good refused")
		}
	}); n != 0 {
		t.Fatalf("%v allocations per lookup of a good certificate", n)
	}
	if _, ok := cr.checkCRL().(*RevokedError); !ok {
		t.Fatal("revoked certificate not found")
	}
}

// A responder that hangs leaves the CRL half the deadline.
func TestVerifierHungResponderLeavesTheCRLHalfTheDeadline(t *testing.T) {
	p := newCRLPKI(t)
	p.serve(p.crl(1, []int64{5}))
	p.mu.Lock()
	p.ocspState = -2
	p.mu.Unlock()
	v := &Verifier{HardFail: true, FetchTimeout: 2 * time.Second, Time: p.clock.Now}
	if err := v.VerifyConnection(p.state(p.leaf(6, leafOpts{ocsp: true}))); err != nil {
		t.Fatalf("good by its CRL, responder hung: %v", err)
	}
}

func TestVerifierNegativeMaxCRLBytesTurnsCRLsOff(t *testing.T) {
	p := newCRLPKI(t)
	p.serve(p.crl(1, []int64{5}))
	v := p.verifier(false)
	v.MaxCRLBytes = -1
	if err := v.VerifyConnection(p.state(p.leaf(5, leafOpts{}))); err != nil || p.crlHits() != 0 {
		t.Fatalf("%v, %d downloads", err, p.crlHits())
	}
}

// MaxCRLBytes set to math.MaxInt64 (an operator's "no cap") reads the CRL:
// a revoked client is refused. Found when limit+1 overflowed and every CRL
// was refused as malformed (a revoked client accepted under soft fail,
// every client refused under HardFail).
func TestVerifierCRLHugeMaxCRLBytesStillReadsTheCRL(t *testing.T) {
	p := newCRLPKI(t)
	p.serve(p.crl(1, []int64{5}))
	v := p.verifier(false)
	v.MaxCRLBytes = 1<<63 - 1
	var revoked *RevokedError
	if err := v.VerifyConnection(p.state(p.leaf(5, leafOpts{}))); !errors.As(err, &revoked) {
		t.Fatalf("MaxCRLBytes = math.MaxInt64, a revoked client: %v (fetches %v)", err, v.CRLMetrics().Fetches)
	}
}

// A certificate that names neither an OCSP responder nor an http(s) CRL
// distribution point (LDAP only) is refused under HardFail with an error
// that matches ErrNoCRLDistributionPoint, so that the operator is told the
// LDAP points were skipped. Found when that error was dropped whenever the
// responder had failed, which it always had ("no OCSP responder URL").
func TestVerifierCRLNoHTTPPointIsNamedInTheRefusal(t *testing.T) {
	p := newCRLPKI(t)
	leaf := p.leaf(5, leafOpts{points: []string{"ldap://ldap.test/cn=CA?certificateRevocationList"}})
	if err := p.verifier(true).VerifyConnection(p.state(leaf)); !errors.Is(err, ErrNoCRLDistributionPoint) {
		t.Fatalf("HardFail, LDAP points only: %v", err)
	}
}

// A CRL thisUpdate beyond the skew is refused, so a CA-signed CRL dated far
// ahead never becomes "newer" than every OCSP answer.
func TestVerifierCRLFarFutureThisUpdateIsRefused(t *testing.T) {
	p := newCRLPKI(t)
	p.serve(p.crl(1, []int64{5}, func(rl *x509.RevocationList) {
		rl.ThisUpdate = p.clock.Now().Add(365 * 24 * time.Hour)
		rl.NextUpdate = rl.ThisUpdate.Add(24 * time.Hour)
	}))
	v := p.verifier(false)
	if err := v.VerifyConnection(p.state(p.leaf(5, leafOpts{}))); err != nil {
		t.Fatalf("soft fail, a CRL dated a year ahead: %v", err)
	}
	if n := v.CRLMetrics().Fetches[CRLFetchInvalid]; n != 1 {
		t.Fatalf("a CRL dated a year ahead was not refused: %+v", v.CRLMetrics())
	}
}
