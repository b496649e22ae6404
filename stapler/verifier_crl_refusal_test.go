package stapler

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"math/big"
	"net/http"
	"testing"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

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

// MaxCRLBytes set to math.MaxInt64 (an operator's "no cap") reads the CRL.
// Found by an attack session: limit+1 overflowed in downloadCRL, and
// io.LimitReader with a negative limit read nothing, so every CRL was
// refused as malformed: a revoked client was accepted under soft fail,
// every client refused under HardFail.
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
// LDAP points were skipped. Found by an attack session: ask() dropped it
// whenever the responder had failed, and it always had ("no OCSP
// responder URL").
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
