package stapler

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"math/big"
	"testing"
	"time"
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
