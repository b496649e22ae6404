package certselect

import (
	"crypto/tls"
	"crypto/x509"
	"strings"
	"sync/atomic"
)

// Selecting a certificate from a list, as crypto/tls does for a config
// without GetCertificate: the only one; else by NameToCertificate; else
// the first the client supports; else the first. With a server name,
// "supports" includes "is valid for the name", so only the certificates
// valid for the name can be chosen: the name table finds them at once,
// instead of asking every certificate in turn (milliseconds at 100,000
// certificates), and the first of them the client supports is
// crypto/tls's choice.

// A List is the certificate list an Index chooses from, in the order of a
// Config's Certificates: Len certificates, At(i) the one at position i.
// The Index reads At(i) when it is built and again, on the paths that ask
// crypto/tls, when it chooses; what At returns must select as the
// certificate did when the Index was built (the same leaf, key and
// signature algorithms; its OCSPStaple is never read). Its methods must
// be safe to call from any number of goroutines at once.
type List interface {
	Len() int
	At(i int) *tls.Certificate
}

// A Target is where a NameToCertificate entry points: the certificate at
// position Pos of the list, or, when Pos is negative, Cert, a certificate
// outside the list.
type Target struct {
	Pos  int32
	Cert *tls.Certificate
}

// An Index chooses from one certificate list as crypto/tls would. It is
// built by New and then only read: Choose takes no lock, and any number
// of goroutines may call it at once.
//
// With more than one certificate, the Index maps names to the positions,
// ascending, of the certificates whose leaves are valid for them: exact
// DNS names that are plain host names (so that a server name found there
// is plain too, and a hit needs no check of its characters), in a name
// table that also keeps the caller's value for the first of them; and
// wildcard names ("*.example.com") under the name they stand for one
// label below ("example.com").
type Index[V any] struct {
	list   List
	n      int
	byName map[string]Target
	// byWildcard holds byName's entries that crypto/tls's wildcard
	// lookup can find ("*", and "*." and more), each under what follows
	// the '*': the lookup of "*" + the server name from its first '.' on
	// is then made without building that string.
	byWildcard map[string]Target

	exact    *nameTable[V]
	wildcard map[string][]int32
	// class[i] is the key class of the certificate at position i
	// (keyClass), for the support caches; 0 when its support is never
	// cached.
	class []uint32
	// supported remembers SupportsCertificate's answers by hello
	// fingerprint and key class: crypto/tls allocates to answer, and a
	// server sees few distinct kinds of hello. Nil for a list of fewer
	// than two certificates, where there is nothing to choose.
	supported *[256]atomic.Uint64
}

// New builds the Index of list. vals, when not nil, holds a value for
// each position (len(vals) == list.Len()), handed back by Choose with the
// usual choice; byName is the config's NameToCertificate with its
// entries resolved to positions (nil for none). The Index keeps list and
// byName, and neither may change afterwards.
func New[V any](list List, vals []V, byName map[string]Target) *Index[V] {
	x := &Index[V]{list: list, n: list.Len(), byName: byName}
	for name, t := range byName {
		if name == "*" || strings.HasPrefix(name, "*.") {
			if x.byWildcard == nil {
				x.byWildcard = map[string]Target{}
			}
			x.byWildcard[name[1:]] = t
		}
	}
	if x.n < 2 {
		return x
	}
	x.wildcard = map[string][]int32{}
	x.class = make([]uint32, x.n)
	x.supported = new([256]atomic.Uint64)
	leaves := make([]*x509.Certificate, x.n)
	for i := range x.n {
		c := list.At(i)
		leaf := c.Leaf
		if leaf == nil {
			continue // not parsed: never valid for a name
		}
		leaves[i] = leaf
		x.class[i] = keyClass(c)
		for _, name := range leaf.DNSNames {
			name = lowerASCII(name)
			if rest, ok := strings.CutPrefix(name, "*."); ok {
				x.wildcard[rest] = appendOnce(x.wildcard[rest], int32(i))
			}
		}
	}
	x.exact = buildExact(leaves, x.class, vals)
	return x
}

// lowerASCII is name with its ASCII letters in lower case, as x509's
// VerifyHostname folds a leaf's names (and no other characters: with
// strings.ToLower, U+212A KELVIN SIGN would become 'k', and "\u212a.test"
// a name for "k.test", which x509 finds it is not). A name with no upper
// case ASCII letter is returned as it is, without a copy.
func lowerASCII(name string) string {
	for i := 0; i < len(name); i++ {
		if 'A' <= name[i] && name[i] <= 'Z' {
			b := []byte(name)
			for j := i; j < len(b); j++ {
				if 'A' <= b[j] && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return name
}

func appendOnce(list []int32, i int32) []int32 {
	if n := len(list); n > 0 && list[n-1] == i {
		return list
	}
	return append(list, i)
}

// plainHostname reports whether name is a lower-case DNS name of letters,
// digits, '_' and '-' (not first) in non-empty labels, not all digits: the
// names for which the index and x509's VerifyHostname agree exactly.
// Others (upper case, a trailing dot, an IP address, odd characters) are
// chosen by the slow path, which asks every certificate as crypto/tls
// does.
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

// Choose returns what crypto/tls would choose for hello from the list:
// the position of the chosen certificate, or -1 and outside for a
// NameToCertificate entry outside the list. v is the value New was given
// for pos when the name table had it at hand (the usual choice by server
// name), and the zero V otherwise: the caller then finds it by pos. For
// a list of no certificate it returns 0, a position that does not exist:
// crypto/tls reports that no certificate is configured, and so should the
// caller, before asking.
//
// Choose takes no lock. Once a kind of hello has been seen, a choice by
// server name allocates nothing.
func (x *Index[V]) Choose(hello *tls.ClientHelloInfo) (pos int, v V, outside *tls.Certificate) {
	if x.n <= 1 {
		return 0, v, nil
	}
	if x.byName != nil {
		name := strings.ToLower(hello.ServerName)
		t, ok := x.byName[name]
		if !ok && len(name) > 0 {
			// crypto/tls looks up the name with its first label made
			// "*" (strings.Split, then Join): "*" and the rest from the
			// first '.' on, or "*" alone for a single label.
			rest := ""
			if i := strings.IndexByte(name, '.'); i >= 0 {
				rest = name[i:]
			}
			t, ok = x.byWildcard[rest]
		}
		if ok {
			if t.Pos >= 0 {
				return int(t.Pos), v, nil
			}
			return -1, v, t.Cert
		}
	}
	if name := hello.ServerName; name != "" && x.exact != nil {
		entry, hit := x.exact.get(name)
		if !hit && !plainHostname(name) {
			return x.chooseSlowly(hello), v, nil
		}
		var wild []int32
		if len(x.wildcard) > 0 {
			if _, rest, ok := strings.Cut(name, "."); ok {
				wild = x.wildcard[rest]
			}
		}
		var fp uint64 // the hello's fingerprint, made on first use
		if hit && !entry.hasMore() && (len(wild) == 0 || wild[0] >= entry.first) {
			// The usual case: the first candidate is the name's own
			// certificate; nothing else to read unless the client does
			// not support it.
			i := entry.first
			if x.supportsClass(hello, &fp, i, entry.class) {
				return int(i), entry.val, nil
			}
			if len(wild) > 0 && wild[0] == i {
				wild = wild[1:]
			}
			return x.firstSupported(hello, &fp, -1, nil, wild), v, nil
		}
		head, more := int32(-1), []int32(nil)
		if hit {
			head, more = entry.first, x.exact.further(entry)
		}
		return x.firstSupported(hello, &fp, head, more, wild), v, nil
	}
	return x.chooseSlowly(hello), v, nil
}

// firstSupported returns the position of the first of the candidates the
// hello supports, else 0. The exact name's candidates are head (-1 for
// none) and then more; wild are the wildcard's; all ascending positions in
// the list. Nothing is allocated: a name with several certificates is a
// hit too.
func (x *Index[V]) firstSupported(hello *tls.ClientHelloInfo, fp *uint64, head int32, more, wild []int32) int {
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
		if x.supportsClass(hello, fp, i, x.class[i]) {
			return int(i)
		}
	}
	return 0
}

// chooseSlowly is crypto/tls's rule: the first certificate the hello
// supports, asking each in turn, else the first.
func (x *Index[V]) chooseSlowly(hello *tls.ClientHelloInfo) int {
	for i := range x.n {
		if supportsSafely(hello, x.list.At(i)) {
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
