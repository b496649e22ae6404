package stapler

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"hash/maphash"
	"reflect"
	"strings"
	"sync/atomic"
	"unsafe"
)

// Selecting a certificate from a wrapped config's list, as crypto/tls does
// for a config without GetCertificate: the only one; else by
// NameToCertificate; else the first the client supports; else the first.
// With a server name, "supports" includes "is valid for the name", so only
// the certificates valid for the name can be chosen: a name index finds
// them at once, instead of asking every certificate in turn (milliseconds
// at 100,000 certificates), and the first of them the client supports is
// crypto/tls's choice.

// nameIndex maps names to the positions, ascending, of the certificates
// whose leaves are valid for them: exact DNS names that are plain host
// names (so that a server name found there is plain too, and a hit needs no
// check of its characters), and wildcard names ("*.example.com") under the
// name they stand for one label below ("example.com").
type nameIndex struct {
	exact    *nameTable
	wildcard map[string][]int32
	// class[i] is the key class of the certificate at position i
	// (keyClass), for the support cache; 0 when its support is never
	// cached.
	class []uint32
	// supported remembers SupportsCertificate's answers by hello
	// fingerprint and key class: crypto/tls allocates to answer, and a
	// server sees few distinct kinds of hello.
	supported [256]atomic.Uint64
}

func newNameIndex(w *wrapper) *nameIndex {
	x := &nameIndex{wildcard: map[string][]int32{}, class: make([]uint32, len(w.list))}
	leaves := make([]*x509.Certificate, len(w.list))
	managedAt := make([]*managed, len(w.list))
	for i := range w.list {
		c := w.certAt(i)
		leaf := c.Leaf
		if leaf == nil {
			continue // not parsed: never valid for a name
		}
		leaves[i], managedAt[i] = leaf, w.list[i].m.Load()
		x.class[i] = keyClass(c)
		for _, name := range leaf.DNSNames {
			name = strings.ToLower(name)
			if rest, ok := strings.CutPrefix(name, "*."); ok {
				x.wildcard[rest] = appendOnce(x.wildcard[rest], int32(i))
			}
		}
	}
	x.exact = buildExact(leaves, x.class, managedAt)
	return x
}

func appendOnce(list []int32, i int32) []int32 {
	if n := len(list); n > 0 && list[n-1] == i {
		return list
	}
	return append(list, i)
}

// plainHostname reports whether name is a lower-case DNS name of letters,
// digits, '_' and '-' (not first) in non-empty labels, not all digits: the
// names for which the index and x509's VerifyHostname agree exactly. Others (upper case, a trailing
// dot, an IP address, odd characters) are chosen by the slow path, which
// asks every certificate as crypto/tls does.
func plainHostname(name string) bool {
	if name == "" || name[0] == '.' || name[len(name)-1] == '.' {
		return false
	}
	// An all-digit dotted name may parse as an IP address, matched
	// against IP SANs only: it is left to the slow path.
	allDigits := true
	for i := 0; i < len(name); i++ {
		c := name[i]
		labelStart := i == 0 || name[i-1] == '.'
		switch {
		case 'a' <= c && c <= 'z', c == '_':
			allDigits = false
		case '0' <= c && c <= '9':
		case c == '-' && !labelStart: // x509 takes a label starting with '-' as no hostname
			allDigits = false
		case c == '.' && !labelStart:
		default:
			return false
		}
	}
	return !allDigits
}

// selectCertificate picks from the list as crypto/tls does. It returns the
// position in the list, or -1 and the certificate for a NameToCertificate
// entry outside the list.
func (w *wrapper) selectCertificate(hello *tls.ClientHelloInfo) (int, *tls.Certificate) {
	i, _, outside := w.choose(hello)
	if outside != nil {
		return -1, outside
	}
	return i, nil
}

// choose is selectCertificate, and also returns the chosen certificate's
// state when the name index had it at hand (nil otherwise: see listEntry).
func (w *wrapper) choose(hello *tls.ClientHelloInfo) (int, *managed, *tls.Certificate) {
	if len(w.list) == 1 {
		return 0, nil, nil
	}
	if w.byName != nil {
		name := strings.ToLower(hello.ServerName)
		t, ok := w.byName[name]
		if !ok && len(name) > 0 {
			labels := strings.Split(name, ".")
			labels[0] = "*"
			t, ok = w.byName[strings.Join(labels, ".")]
		}
		if ok {
			if t.i >= 0 {
				return int(t.i), nil, nil
			}
			return -1, nil, t.c
		}
	}
	if name := hello.ServerName; name != "" && w.names != nil {
		entry, hit := w.names.exact.get(name)
		if !hit && !plainHostname(name) {
			return w.selectSlowly(hello), nil, nil
		}
		var wild []int32
		if len(w.names.wildcard) > 0 {
			if _, rest, ok := strings.Cut(name, "."); ok {
				wild = w.names.wildcard[rest]
			}
		}
		var fp uint64 // the hello's fingerprint, made on first use
		if hit && !entry.hasMore() && (len(wild) == 0 || wild[0] >= entry.first) {
			// The usual case: the first candidate is the name's own
			// certificate; nothing else to read unless the client does
			// not support it.
			i := entry.first
			if w.names.supportsClass(hello, &fp, w, i, entry.class) {
				return int(i), entry.m, nil
			}
			if len(wild) > 0 && wild[0] == i {
				wild = wild[1:]
			}
			return w.firstSupported(hello, &fp, -1, nil, wild), nil, nil
		}
		head, more := int32(-1), []int32(nil)
		if hit {
			head, more = entry.first, w.names.exact.further(entry)
		}
		return w.firstSupported(hello, &fp, head, more, wild), nil, nil
	}
	return w.selectSlowly(hello), nil, nil
}

// firstSupported returns the position of the first of the candidates the
// hello supports, else 0. The exact name's candidates are head (-1 for
// none) and then more; wild are the wildcard's; all ascending positions in
// the list. Nothing is allocated: a name with several certificates is a
// hit too.
func (w *wrapper) firstSupported(hello *tls.ClientHelloInfo, fp *uint64, head int32, more, wild []int32) int {
	for head >= 0 || len(more) > 0 || len(wild) > 0 {
		if head < 0 && len(more) > 0 {
			head, more = more[0], more[1:]
		}
		var i int32
		switch {
		case head >= 0 && (len(wild) == 0 || head < wild[0]):
			i, head = head, -1
		case head < 0 || wild[0] < head:
			i, wild = wild[0], wild[1:]
		default: // the same certificate in both
			i, head, wild = head, -1, wild[1:]
		}
		if w.names.supportsClass(hello, fp, w, i, w.names.class[i]) {
			return int(i)
		}
	}
	return 0
}

// selectSlowly is crypto/tls's rule: the first certificate the hello
// supports, asking each in turn, else the first.
func (w *wrapper) selectSlowly(hello *tls.ClientHelloInfo) int {
	for i := range w.list {
		if c := w.certAt(i); supportsSafely(hello, c) {
			return i
		}
	}
	return 0
}

// supportsSafely is hello.SupportsCertificate(c) == nil, except that an
// entry with no certificate, for which crypto/tls may panic (its own
// selection would then end the server), counts as unsupported when it
// does.
func supportsSafely(hello *tls.ClientHelloInfo, c *tls.Certificate) (ok bool) {
	if len(c.Certificate) == 0 {
		defer func() {
			if recover() != nil {
				ok = false
			}
		}()
	}
	return hello.SupportsCertificate(c) == nil
}

// supportsClass is hello.SupportsCertificate for the certificate at
// position i of w's list, of key class class, one already known to be
// valid for the hello's server name; remembered by the hello's fingerprint
// (*fp, computed once per hello) and the key class.
func (x *nameIndex) supportsClass(hello *tls.ClientHelloInfo, fp *uint64, w *wrapper, i int32, class uint32) bool {
	if class == 0 {
		return supportsIgnoringName(hello, w.certAt(int(i)))
	}
	if ok, known := supports13(hello, w, i, class); known {
		return ok
	}
	c := w.certAt(int(i))
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
		fp = (uint64(cfg.MinVersion)<<16 | uint64(cfg.MaxVersion) | 1<<32) * k
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
