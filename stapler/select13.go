package stapler

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
// mutual version TLS 1.3" is asked of crypto/tls once per config version
// bounds and list of versions. No hashing of the hello's lists on the
// handshake path. The decomposition is checked against crypto/tls itself
// when the package starts (tls13Checked); if it ever disagrees, every
// answer comes from the fingerprinted cache instead.

// versionEntry remembers whether a config's version bounds and a hello's
// list of versions (at most four, packed) make TLS 1.3 the mutual version.
type versionEntry struct {
	key  uint64 // packed versions
	meta uint64 // min<<32 | max<<16 | count, |1<<63 so that it is never 0
	is13 bool
}

var (
	versionCache [64]atomic.Pointer[versionEntry]
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
// certificate at position i of w's list, of key class class (not 0). ok is false when it cannot: not
// TLS 1.3, more than four versions, or the decomposition is off.
func supports13(hello *tls.ClientHelloInfo, w *wrapper, i int32, class uint32) (supported, ok bool) {
	if !tls13Checked || len(hello.SupportedVersions) > 4 || helloConfigOffset == ^uintptr(0) {
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
			suits = schemeSuits(hello, w.certAt(int(i)), class, s)
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
const (
	maxSchemes13 = 64
	maxAsks13    = 4
)

// mutual13 reports whether TLS 1.3 is the mutual version of hello and a
// config with the given version bounds.
func mutual13(hello *tls.ClientHelloInfo, minV, maxV uint16) bool {
	var packed uint64
	for i, v := range hello.SupportedVersions {
		packed |= uint64(v) << (16 * i)
	}
	meta := uint64(minV)<<32 | uint64(maxV)<<16 | uint64(len(hello.SupportedVersions)) | 1<<63
	slot := &versionCache[(packed^meta*0x9e3779b97f4a7c15)>>58]
	if e := slot.Load(); e != nil && e.key == packed && e.meta == meta {
		return e.is13
	}
	probe := *hello
	probe.ServerName = ""
	probe.SignatureSchemes, probe.SupportedCurves, probe.SupportedPoints, probe.CipherSuites = nil, nil, nil, nil
	is13 := versionProbe != nil && probe.SupportsCertificate(versionProbe) == nil
	slot.Store(&versionEntry{key: packed, meta: meta, is13: is13})
	return is13
}

// schemeKey is what a schemeCache slot holds for scheme s and key class
// class, suits aside.
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
