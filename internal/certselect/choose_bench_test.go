package certselect

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"runtime"
	"testing"
)

// BenchmarkChoose is a choice by server name from lists of 100 and 100,000
// certificates, each valid for its own name (one key shared: selection
// reads a key's kind), by TLS 1.3 hellos: the name table and the TLS 1.3
// shortcut, without the stapler package around them. Each iteration asks
// for the next of 1,000 names spread over the list.
func BenchmarkChoose(b *testing.B) {
	key := issue(b, p256)
	for _, n := range []int{100, 100_000} {
		b.Run(fmt.Sprintf("certs=%d", n), func(b *testing.B) {
			certs := make(certList, n)
			vals := make([]*value, n)
			for i := range certs {
				certs[i] = tls.Certificate{Certificate: key.Certificate, PrivateKey: key.PrivateKey,
					Leaf: &x509.Certificate{DNSNames: []string{fmt.Sprintf("c%d.test", i)}}}
				vals[i] = &value{i}
			}
			x := New(certs, vals, nil)
			hellos := make([]*tls.ClientHelloInfo, 1000)
			for k := range hellos {
				hellos[k] = &tls.ClientHelloInfo{
					ServerName:        fmt.Sprintf("c%d.test", k*(n/len(hellos))),
					SupportedVersions: []uint16{tls.VersionTLS13},
					SignatureSchemes:  []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256},
					SupportedCurves:   []tls.CurveID{tls.X25519, tls.CurveP256},
				}
				if pos, v, _ := x.Choose(hellos[k]); pos != k*(n/len(hellos)) || v != vals[pos] {
					b.Fatalf("%s: chose %d", hellos[k].ServerName, pos)
				}
			}
			runtime.GC()
			b.ReportAllocs()
			k := 0
			for b.Loop() {
				x.Choose(hellos[k])
				if k++; k == len(hellos) {
					k = 0
				}
			}
		})
	}
}
