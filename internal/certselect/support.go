package certselect

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/tls"
	"hash/maphash"
	"reflect"
	"unsafe"
)

// supportsClass is hello.SupportsCertificate for the certificate at
// position i of the list, of key class class, one already known to be
// valid for the hello's server name; remembered by the hello's fingerprint
// (*fp, computed once per hello) and the key class.
func (x *Index[V]) supportsClass(hello *tls.ClientHelloInfo, fp *uint64, i int32, class uint32) bool {
	if class == 0 {
		return supportsIgnoringName(hello, x.list.At(int(i)))
	}
	if ok, known := supports13(hello, x.list, i, class); known {
		return ok
	}
	c := x.list.At(int(i))
	if *fp == 0 {
		cfg, ok := helloConfig(hello)
		if !ok {
			return supportsIgnoringName(hello, c)
		}
		*fp = helloFingerprint(hello, cfg)
	}
	key := (*fp ^ uint64(class)*0x9e3779b97f4a7c15) | 1 // never 0: 0 is an empty slot
	slot := &x.supported[key%uint64(len(x.supported))]
	if e := slot.Load(); e&^2 == key&^2 {
		return e&2 != 0
	}
	ok := supportsIgnoringName(hello, c)
	e := key &^ 2
	if ok {
		e |= 2
	}
	slot.Store(e)
	return ok
}

// supportsIgnoringName is hello.SupportsCertificate(c) for a certificate
// already known to be valid for the hello's server name: the name check
// (which allocates) is skipped.
func supportsIgnoringName(hello *tls.ClientHelloInfo, c *tls.Certificate) bool {
	h := *hello
	h.ServerName = ""
	return h.SupportsCertificate(c) == nil
}

// keyClass names what SupportsCertificate looks at in a certificate: its
// private key's public half (algorithm, curve or size), and whether the
// key can decrypt (static RSA key exchange needs it). 0 (never cached) for
// a certificate that restricts its signature algorithms or whose key is
// of another kind.
func keyClass(c *tls.Certificate) uint32 {
	priv, ok := c.PrivateKey.(crypto.Signer)
	if c.SupportedSignatureAlgorithms != nil || c.Leaf == nil || !ok {
		return 0
	}
	var class uint32
	switch k := priv.Public().(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			class = 1
		case elliptic.P384():
			class = 2
		case elliptic.P521():
			class = 3
		}
	case ed25519.PublicKey:
		class = 4
	case *rsa.PublicKey:
		class = 1<<16 | uint32(min(k.N.BitLen(), 1<<15))
	}
	if _, decrypts := c.PrivateKey.(crypto.Decrypter); decrypts && class != 0 {
		class |= 1 << 31
	}
	return class
}

// helloConfig finds the config a hello belongs to (the connection's,
// which SupportsCertificate consults: versions, cipher suites, curves):
// crypto/tls keeps it in an unexported field, whose offset reflection
// finds once; it is then read without reflection (no allocation). ok is
// false if a future crypto/tls has no such field; then answers are not
// cached.
var helloConfigOffset = func() uintptr {
	f, ok := reflect.TypeFor[tls.ClientHelloInfo]().FieldByName("config")
	if !ok || len(f.Index) != 1 || f.Type != reflect.TypeFor[*tls.Config]() {
		return ^uintptr(0)
	}
	return f.Offset
}()

func helloConfig(h *tls.ClientHelloInfo) (*tls.Config, bool) {
	if helloConfigOffset == ^uintptr(0) {
		return nil, false
	}
	return (*tls.Config)(*(*unsafe.Pointer)(unsafe.Add(unsafe.Pointer(h), helloConfigOffset))), true
}

// fingerprintSeed keys the hellos' fingerprints: a client cannot make its
// hello's fingerprint equal another kind of hello's to plant a wrong answer
// in the support cache, since it cannot know the seed.
var fingerprintSeed = maphash.MakeSeed()

// helloFingerprint hashes (maphash, keyed by a random seed) what
// SupportsCertificate reads of a hello besides the server name, and of the
// config it belongs to: its version bounds, cipher suites and curve
// preferences (by content: a config's address may be another config's
// once it is collected, and a clone of a wrapped config may allow other
// versions, suites or curves). Never 0.
func helloFingerprint(h *tls.ClientHelloInfo, cfg *tls.Config) uint64 {
	// One keyed hash per list (fewer calls into a buffer cost more in
	// copies than they save), chained by an odd multiplier: equal
	// fingerprints need equal hashes of every list.
	const k = 0x9e3779b97f4a7c15
	var fp uint64 = 1
	if cfg != nil {
		// A nil CipherSuites is crypto/tls's defaults, an empty one no
		// TLS 1.2 suite at all: their hashes are alike, so say which.
		var noSuites uint64
		if cfg.CipherSuites != nil && len(cfg.CipherSuites) == 0 {
			noSuites = 1 << 33
		}
		fp = (uint64(cfg.MinVersion)<<16 | uint64(cfg.MaxVersion) | 1<<32 | noSuites) * k
		fp = (fp ^ maphash.Bytes(fingerprintSeed, uint16Bytes(cfg.CipherSuites))) * k
		fp = (fp ^ maphash.Bytes(fingerprintSeed, uint16Bytes(cfg.CurvePreferences))) * k
	}
	fp = (fp ^ maphash.Bytes(fingerprintSeed, uint16Bytes(h.SupportedVersions))) * k
	fp = (fp ^ maphash.Bytes(fingerprintSeed, uint16Bytes(h.SignatureSchemes))) * k
	fp = (fp ^ maphash.Bytes(fingerprintSeed, uint16Bytes(h.SupportedCurves))) * k
	fp = (fp ^ maphash.Bytes(fingerprintSeed, h.SupportedPoints)) * k
	fp = (fp ^ maphash.Bytes(fingerprintSeed, uint16Bytes(h.CipherSuites))) * k
	return fp | 1<<63
}

// uint16Bytes is the memory of s as bytes, without a copy.
func uint16Bytes[T ~uint16](s []T) []byte {
	if len(s) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(s))), len(s)*2)
}
