package crl

import (
	"crypto/x509"
	"math/big"
	"math/rand/v2"
	"runtime"
	"testing"
)

// bigCRL is a CRL of n revoked 16-byte serials (as openssl, smallstep
// and ADCS issue them) and some of its certificates' serials.
func bigCRL(b testing.TB, n int) (ca *testCA, der []byte, serials [][]byte) {
	ca = newCA(b, "CA")
	r := rand.New(rand.NewPCG(3, 4))
	entries := make([]x509.RevocationListEntry, n)
	for i := range entries {
		s := make([]byte, 16)
		for j := range s {
			s[j] = byte(r.Uint32())
		}
		s[0] &= 0x7f
		entries[i] = x509.RevocationListEntry{SerialNumber: new(big.Int).SetBytes(s), RevocationTime: revokedAt, ReasonCode: 1}
		if i%1000 == 0 {
			serials = append(serials, intBytes(entries[i].SerialNumber))
		}
	}
	return ca, ca.crl(b, x509.RevocationList{RevokedCertificateEntries: entries}), serials
}

// BenchmarkParse100k parses and verifies a CRL of 100,000 serials and
// builds its index; heap-B/entry is what the index keeps per serial.
func BenchmarkParse100k(b *testing.B) {
	ca, der, _ := bigCRL(b, 100_000)
	b.SetBytes(int64(len(der)))
	b.ReportAllocs()
	var c *CRL
	for b.Loop() {
		var err error
		if c, err = Parse(der, ca.cert, opts()); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(heapPerEntry(b, der, ca), "heap-B/entry")
	b.ReportMetric(float64(c.MemoryBytes())/float64(c.Len()), "counted-B/entry")
	b.ReportMetric(float64(len(der))/float64(c.Len()), "DER-B/entry")
}

// heapPerEntry is what one more parsed copy of der adds to the live heap,
// per entry: the heap with 5 copies kept less the heap with 1, over 4
// (what else lives or dies between two readings cancels out).
func heapPerEntry(b testing.TB, der []byte, ca *testCA) float64 {
	var heap [2]float64
	entries := 0
	for j, n := range []int{1, 5} {
		kept := make([]*CRL, n)
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for i := range kept {
			var err error
			if kept[i], err = Parse(der, ca.cert, opts()); err != nil {
				b.Fatal(err)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		heap[j], entries = float64(after.HeapAlloc)-float64(before.HeapAlloc), kept[0].Len()
		runtime.KeepAlive(kept)
	}
	return (heap[1] - heap[0]) / 4 / float64(entries)
}

// The index keeps a 16-byte serial in at most 40 bytes of heap (the
// serial, its end offset, its time and its reason: 30), whatever the
// CRL's DER cost to parse.
func TestIndexHoldsAtMost40BytesPerEntry(t *testing.T) {
	if testing.Short() {
		t.Skip("makes a CRL of 100,000 entries")
	}
	ca, der, _ := bigCRL(t, 100_000)
	c, err := Parse(der, ca.cert, opts())
	if err != nil {
		t.Fatal(err)
	}
	if per := float64(c.MemoryBytes()) / float64(c.Len()); per > 40 {
		t.Fatalf("MemoryBytes counts %.1f B per entry", per)
	}
	if per := heapPerEntry(t, der, ca); per > 40 {
		t.Fatalf("the heap holds %.1f B per entry", per)
	}
}
