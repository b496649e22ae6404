package certselect

import (
	"crypto/tls"
	"testing"
)

// A hello full of made-up signature schemes must not cost a call into
// crypto/tls per scheme (a handshake made to do thousands of them): the
// TLS 1.3 shortcut asks about at most maxAsks13 new schemes per hello, then
// leaves the hello to the fingerprinted cache, and still answers as
// crypto/tls does.
func TestManyUnknownSchemesCostABoundedNumberOfCalls(t *testing.T) {
	c := ecdsaProbeCertificate()
	class := keyClass(&tls.Certificate{PrivateKey: c.PrivateKey, Leaf: nil})
	if class == 0 {
		class = 1 // keyClass wants a leaf; P-256's class
	}
	schemes := make([]tls.SignatureScheme, 0, 2001)
	for i := range 2000 {
		schemes = append(schemes, tls.SignatureScheme(0x8000+i))
	}
	schemes = append(schemes, tls.ECDSAWithP256AndSHA256)
	hello := &tls.ClientHelloInfo{SupportedVersions: []uint16{tls.VersionTLS13}, SignatureSchemes: schemes}
	list := certList{*c}
	if _, known := supports13(hello, list, 0, class); known {
		t.Fatal("a hello with 2001 schemes was answered by the per-scheme shortcut")
	}
	hello.SignatureSchemes = append(schemes[:10:10], tls.ECDSAWithP256AndSHA256)
	before := 0
	for _, s := range schemes[:10] {
		if _, known := schemeKnown(class, s); known {
			before++
		}
	}
	supported, known := supports13(hello, list, 0, class)
	after := 0
	for _, s := range schemes[:10] {
		if _, known := schemeKnown(class, s); known {
			after++
		}
	}
	if after-before > 4 {
		t.Fatalf("%d new schemes asked of crypto/tls for one hello; the bound is 4", after-before)
	}
	want := hello.SupportsCertificate(c) == nil
	if known && supported != want {
		t.Fatalf("shortcut says %v, crypto/tls %v", supported, want)
	}
}

// TestTheTLS13ShortcutIsOn: the checks of the decomposition pass with this
// crypto/tls. Were one of them wrong, every TLS 1.3 hello would silently
// take the slower fingerprinted path (selection still exact).
func TestTheTLS13ShortcutIsOn(t *testing.T) {
	if !tls13Checked {
		t.Fatal("checkTLS13Decomposition disagrees with crypto/tls: the TLS 1.3 shortcut is off")
	}
	hello := &tls.ClientHelloInfo{SupportedVersions: []uint16{tls.VersionTLS12, 0x0a0a, tls.VersionTLS13}, SignatureSchemes: []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256}}
	list := certList{*ecdsaProbeCertificate()}
	if supported, known := supports13(hello, list, 0, 1); !known || !supported {
		t.Fatalf("a TLS 1.3 hello listing TLS 1.2 first: supported %v, answered by the shortcut %v", supported, known)
	}
}

// TestAllowedCacheRace: goroutines on distinct config bounds race on
// allowedCache's slots (all 81 bound pairs against 16 slots): a slot must
// never answer for other bounds, whatever the interleaving.
func TestAllowedCacheRace(t *testing.T) {
	bounds := []uint16{0, tls.VersionTLS10, tls.VersionTLS11, tls.VersionTLS12, tls.VersionTLS13, 0x0305, 0x0200, 0xffff, 0x0403}
	done := make(chan string, len(bounds))
	for _, lo := range bounds {
		go func() {
			for range 200 {
				for _, hi := range bounds {
					cfg := &tls.Config{MinVersion: lo, MaxVersion: hi}
					h := &tls.ClientHelloInfo{SupportedVersions: []uint16{tls.VersionTLS13}}
					setHelloConfig(t, h, cfg)
					want := h.SupportsCertificate(versionProbe) == nil
					if got := allows13(h, lo, hi); got != want {
						done <- "allows13 wrong"
						return
					}
				}
			}
			done <- ""
		}()
	}
	for range bounds {
		if msg := <-done; msg != "" {
			t.Fatal(msg)
		}
	}
}
