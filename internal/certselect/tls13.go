package certselect

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"sync/atomic"
	"unsafe"
)

// A faster answer to "does this hello support this certificate" for the
// usual hello, whose mutual version is TLS 1.3. There, crypto/tls's
// SupportsCertificate (the server name aside) reads only the mutual
// version and whether any one of the hello's signature schemes suits the
// certificate's key: the answer is an OR over the schemes, each asked of
// crypto/tls once and remembered by key class and scheme, and "is the
// mutual version TLS 1.3" is "does the client list TLS 1.3", with "does
// the config allow it" asked of crypto/tls once per config version bounds. No hashing of the hello's lists on the
// handshake path. The decomposition is checked against crypto/tls itself
// when the package starts (tls13Checked); if it ever disagrees, every
// answer comes from the fingerprinted cache instead.

var (
	// schemeCache remembers whether a TLS 1.3 signature scheme suits a
	// key class: each slot packs class<<17 | scheme<<1 | suits, with
	// 1<<63 set (0 is an empty slot), in one word that a handshake reads
	// with one load.
	schemeCache [512]atomic.Uint64
	// versionProbe is a certificate every TLS 1.3 hello supports when it
	// offers no signature schemes, and no TLS 1.2 hello offering no curves
	// does (Ed25519 needs ECDHE there): asking for it tells TLS 1.3 apart.
	versionProbe = func() *tls.Certificate {
		_, key, err := ed25519.GenerateKey(nil)
		if err != nil {
			return nil
		}
		return &tls.Certificate{PrivateKey: key}
	}()
	tls13Checked = checkTLS13Decomposition()
)

// supports13 answers hello.SupportsCertificate ignoring the name, for the
// certificate at position i of list, of key class class (not 0). ok is
// false when it cannot: not TLS 1.3, more than maxVersions13 versions, or
// the decomposition is off.
func supports13(hello *tls.ClientHelloInfo, list List, i int32, class uint32) (supported, ok bool) {
	if !tls13Checked || len(hello.SupportedVersions) > maxVersions13 || helloConfigOffset == ^uintptr(0) {
		return false, false
	}
	cfg := (*tls.Config)(*(*unsafe.Pointer)(unsafe.Add(unsafe.Pointer(hello), helloConfigOffset)))
	var minV, maxV uint16
	if cfg != nil {
		minV, maxV = cfg.MinVersion, cfg.MaxVersion
	}
	if !mutual13(hello, minV, maxV) {
		return false, false
	}
	if len(hello.SignatureSchemes) == 0 {
		return true, true // crypto/tls asks nothing more in TLS 1.3
	}
	if len(hello.SignatureSchemes) > maxSchemes13 {
		return false, false
	}
	asked := 0
	for _, s := range hello.SignatureSchemes {
		suits, known := schemeKnown(class, s)
		if !known {
			// A scheme not seen before costs a call into crypto/tls:
			// a hello full of made-up schemes must not cost one each.
			if asked++; asked > maxAsks13 {
				return false, false
			}
			suits = schemeSuits(hello, list.At(int(i)), class, s)
		}
		if suits {
			return true, true
		}
	}
	return false, true
}

// A hello with more signature schemes than maxSchemes13 (real ones send
// about ten), or with more than maxAsks13 never seen before, is answered
// by the fingerprinted cache: one call into crypto/tls, whatever it holds.
// A hello listing more versions than maxVersions13 (real ones list two to
// five) is answered by the fingerprinted cache too.
const (
	maxVersions13 = 16
	maxSchemes13  = 64
	maxAsks13     = 4
)

// mutual13 reports whether TLS 1.3 is the mutual version of hello and a
// config with the given version bounds. crypto/tls takes the highest
// version both support, whatever the order of the client's list: TLS 1.3
// whenever the client lists it and the config allows it (checked at start
// by tls13Checked, which would fail if a later version were supported).
func mutual13(hello *tls.ClientHelloInfo, minV, maxV uint16) bool {
	for _, v := range hello.SupportedVersions {
		if v == tls.VersionTLS13 {
			return allows13(hello, minV, maxV)
		}
	}
	return false
}

// allowedCache remembers, for a few config version bounds, whether they
// allow TLS 1.3: each slot packs min<<32 | max<<16 | allowed<<1 | 1.
var allowedCache [16]atomic.Uint64

// allows13 reports whether a config with version bounds minV and maxV (0
// for the defaults) supports TLS 1.3; hello, whose config has them, asks
// crypto/tls the first time.
func allows13(hello *tls.ClientHelloInfo, minV, maxV uint16) bool {
	key := uint64(minV)<<32 | uint64(maxV)<<16 | 1
	slot := &allowedCache[((uint64(minV)<<16|uint64(maxV))*0x9e3779b97f4a7c15)>>60]
	if e := slot.Load(); e&^2 == key {
		return e&2 != 0
	}
	probe := *hello
	probe.ServerName = ""
	probe.SupportedVersions = []uint16{tls.VersionTLS13}
	probe.SignatureSchemes, probe.SupportedCurves, probe.SupportedPoints, probe.CipherSuites = nil, nil, nil, nil
	allowed := versionProbe != nil && probe.SupportsCertificate(versionProbe) == nil
	if allowed {
		key |= 2
	}
	slot.Store(key)
	return allowed
}

func schemeKey(class uint32, s tls.SignatureScheme) uint64 {
	return uint64(class)<<17 | uint64(s)<<1 | 1<<63
}

// schemeSlot is where scheme s and key class class are remembered.
func schemeSlot(key uint64) *atomic.Uint64 {
	return &schemeCache[(key*0x9e3779b97f4a7c15)>>55]
}

// schemeKnown returns what the cache remembers of scheme s for key class
// class, if anything.
func schemeKnown(class uint32, s tls.SignatureScheme) (suits, known bool) {
	key := schemeKey(class, s)
	if e := schemeSlot(key).Load(); e&^1 == key {
		return e&1 != 0, true
	}
	return false, false
}

// schemeSuits reports whether scheme s suits c (key class class) in TLS
// 1.3, asking crypto/tls with hello (whose mutual version is TLS 1.3) the
// first time.
func schemeSuits(hello *tls.ClientHelloInfo, c *tls.Certificate, class uint32, s tls.SignatureScheme) bool {
	if ok, known := schemeKnown(class, s); known {
		return ok
	}
	key := schemeKey(class, s)
	slot := schemeSlot(key)
	probe := *hello
	probe.ServerName = ""
	probe.SignatureSchemes = []tls.SignatureScheme{s}
	ok := probe.SupportsCertificate(c) == nil
	if ok {
		key |= 1
	}
	slot.Store(key)
	return ok
}

// checkTLS13Decomposition asks crypto/tls, with hellos of its default
// config, whether the answers above are what it would give: the version
// probe tells TLS 1.3 from 1.2, and a list of schemes is supported when
// one of them is.
func checkTLS13Decomposition() bool {
	if versionProbe == nil {
		return false
	}
	const v13, v12 = tls.VersionTLS13, tls.VersionTLS12
	ecdsaCert := ecdsaProbeCertificate()
	if ecdsaCert == nil {
		return false
	}
	pss, p256 := tls.PSSWithSHA256, tls.ECDSAWithP256AndSHA256
	checks := []struct {
		hello tls.ClientHelloInfo
		cert  *tls.Certificate
		want  bool
	}{
		{tls.ClientHelloInfo{SupportedVersions: []uint16{v13}}, versionProbe, true},
		{tls.ClientHelloInfo{SupportedVersions: []uint16{v12}}, versionProbe, false},
		{tls.ClientHelloInfo{SupportedVersions: []uint16{v12, v13}}, versionProbe, true},
		// What mutual13 relies on: TLS 1.3 is chosen wherever the client
		// lists it (the highest version both support), and nothing above
		// it is supported (a TLS 1.4 to come would fail this check).
		{tls.ClientHelloInfo{SupportedVersions: []uint16{v12, 0x0a0a, v13}}, versionProbe, true},
		{tls.ClientHelloInfo{SupportedVersions: []uint16{0x0305, v13}}, versionProbe, true},
		{tls.ClientHelloInfo{SupportedVersions: []uint16{0x0305}}, versionProbe, false},
		// What the probe relies on: without curves, TLS 1.2 supports no
		// signed key exchange, so only TLS 1.3 answers yes.
		{tls.ClientHelloInfo{SupportedVersions: []uint16{v12}, SignatureSchemes: []tls.SignatureScheme{p256}}, ecdsaCert, false},
		{tls.ClientHelloInfo{SupportedVersions: []uint16{v12, v13}, SignatureSchemes: []tls.SignatureScheme{p256}}, ecdsaCert, true},
		{tls.ClientHelloInfo{SupportedVersions: []uint16{v13}, SignatureSchemes: []tls.SignatureScheme{pss}}, ecdsaCert, false},
		{tls.ClientHelloInfo{SupportedVersions: []uint16{v13}, SignatureSchemes: []tls.SignatureScheme{p256}}, ecdsaCert, true},
		{tls.ClientHelloInfo{SupportedVersions: []uint16{v13}, SignatureSchemes: []tls.SignatureScheme{pss, p256}}, ecdsaCert, true},
		// TLS 1.3 reads neither curves nor cipher suites.
		{tls.ClientHelloInfo{SupportedVersions: []uint16{v13}, SignatureSchemes: []tls.SignatureScheme{p256}, SupportedCurves: []tls.CurveID{0x1234}, CipherSuites: []uint16{0x1234}}, ecdsaCert, true},
	}
	for _, c := range checks {
		if got := c.hello.SupportsCertificate(c.cert) == nil; got != c.want {
			return false
		}
	}
	return true
}

// ecdsaProbeCertificate is a P-256 key, enough for SupportsCertificate
// without a server name.
func ecdsaProbeCertificate() *tls.Certificate {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil
	}
	return &tls.Certificate{PrivateKey: key}
}
