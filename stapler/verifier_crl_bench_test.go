package stapler

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"math/big"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"
)

// BenchmarkVerifierCRLLookup100k is the CRL part of a handshake's check
// once the CRL, of 100,000 revoked serials, is held: the distribution
// point walked, the CRL found, the serial looked up.
func BenchmarkVerifierCRLLookup100k(b *testing.B) {
	p := newCRLPKI(b)
	now := p.clock.Now()
	rl := &x509.RevocationList{Number: big.NewInt(1), ThisUpdate: now.Add(-time.Minute), NextUpdate: now.Add(24 * time.Hour)}
	for i := range 100_000 {
		s := new(big.Int).Lsh(big.NewInt(int64(i)*7919+1), 64) // 9-byte serials and longer, as CAs issue
		rl.RevokedCertificateEntries = append(rl.RevokedCertificateEntries, x509.RevocationListEntry{SerialNumber: s, RevocationTime: now.Add(-time.Hour), ReasonCode: 1})
	}
	der, err := x509.CreateRevocationList(rand.Reader, rl, p.ca, p.key)
	if err != nil {
		b.Fatal(err)
	}
	p.serve(der)
	v := p.verifier(true)
	good := p.leaf(3, leafOpts{})
	if err := v.VerifyConnection(p.state(good)); err != nil {
		b.Fatal(err)
	}
	c := &peerCheck{v: v, ctx: context.Background(), leaf: good, issuer: p.ca, now: p.clock.Now()}
	b.ReportAllocs()
	for b.Loop() {
		if c.checkCRL() != nil {
			b.Fatal("refused")
		}
	}
	b.ReportMetric(float64(v.CRLMetrics().Bytes)/100_000, "held-B/entry")
}

// BenchmarkVerifierCheckWithAndWithoutCRLs compares, in one run, the
// whole VerifyConnection of one client: with a good staple and CRLs off
// (staple/no-CRL-held), the same with its CA's CRL of 100,000 serials held
// (staple/CRL-held), a CRL-only client whose CRL is held
// (crl-only/CRL-held), and the CRL part of that check alone
// (crl-only/CRL-part-alone, as BenchmarkVerifierCRLLookup100k).
func BenchmarkVerifierCheckWithAndWithoutCRLs(b *testing.B) {
	p := newCRLPKI(b)
	now := p.clock.Now()
	rl := &x509.RevocationList{Number: big.NewInt(1), ThisUpdate: now.Add(-time.Minute), NextUpdate: now.Add(24 * time.Hour)}
	for i := range 100_000 {
		s := new(big.Int).Lsh(big.NewInt(int64(i)*7919+1), 64)
		rl.RevokedCertificateEntries = append(rl.RevokedCertificateEntries, x509.RevocationListEntry{SerialNumber: s, RevocationTime: now.Add(-time.Hour), ReasonCode: 1})
	}
	der, err := x509.CreateRevocationList(rand.Reader, rl, p.ca, p.key)
	if err != nil {
		b.Fatal(err)
	}
	p.serve(der)
	leaf := p.leaf(3, leafOpts{ocsp: true})
	staple, err := ocsp.CreateResponse(p.ca, p.ca, ocsp.Response{Status: ocsp.Good, SerialNumber: leaf.SerialNumber,
		ThisUpdate: now.Add(-time.Minute), NextUpdate: now.Add(24 * time.Hour)}, p.key)
	if err != nil {
		b.Fatal(err)
	}
	stapled := p.state(leaf)
	stapled.OCSPResponse = staple
	run := func(b *testing.B, v *Verifier, cs tls.ConnectionState) {
		if err := v.VerifyConnection(cs); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if err := v.VerifyConnection(cs); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("staple/no-CRL-held", func(b *testing.B) {
		run(b, &Verifier{FetchTimeout: 10 * time.Second, Time: p.clock.Now, MaxCRLBytes: -1}, stapled)
	})
	b.Run("staple/CRL-held", func(b *testing.B) {
		v := p.verifier(true)
		if err := v.VerifyConnection(p.state(p.leaf(4, leafOpts{}))); err != nil {
			b.Fatal(err)
		}
		run(b, v, stapled)
	})
	b.Run("crl-only/CRL-held", func(b *testing.B) {
		run(b, p.verifier(true), p.state(p.leaf(4, leafOpts{})))
	})
	b.Run("crl-only/CRL-part-alone", func(b *testing.B) {
		v := p.verifier(true)
		l := p.leaf(4, leafOpts{})
		if err := v.VerifyConnection(p.state(l)); err != nil {
			b.Fatal(err)
		}
		c := &peerCheck{v: v, ctx: context.Background(), leaf: l, issuer: p.ca, now: p.clock.Now()}
		b.ReportAllocs()
		for b.Loop() {
			if c.checkCRL() != nil {
				b.Fatal("refused")
			}
		}
	})
}
