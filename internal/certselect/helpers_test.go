package certselect

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"sync"
	"testing"
	"time"
	"unsafe"
)

// certList is a List over a slice of certificates.
type certList []tls.Certificate

func (l certList) Len() int                  { return len(l) }
func (l certList) At(i int) *tls.Certificate { return &l[i] }

// keyKind is a kind of key a test certificate can have.
type keyKind int

const (
	p256 keyKind = iota
	p384
	rsa2048
	ed25519Key
)

// testKeys holds one key of each kind, made on first use: selection looks
// at a key's kind, never at which key it is, so certificates share them
// (RSA keys are slow to make, under -race above all).
var testKeys = struct {
	sync.Mutex
	keys map[keyKind]crypto.Signer
}{keys: map[keyKind]crypto.Signer{}}

func testKey(t testing.TB, kind keyKind) crypto.Signer {
	t.Helper()
	testKeys.Lock()
	defer testKeys.Unlock()
	if k, ok := testKeys.keys[kind]; ok {
		return k
	}
	var k crypto.Signer
	var err error
	switch kind {
	case p256:
		k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case p384:
		k, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case rsa2048:
		k, err = rsa.GenerateKey(rand.Reader, 2048)
	case ed25519Key:
		_, k, err = ed25519.GenerateKey(rand.Reader)
	}
	if err != nil {
		t.Fatal(err)
	}
	testKeys.keys[kind] = k
	return k
}

// issue makes a self-signed leaf for names with a key of the given kind,
// parsed into Leaf: selection reads the names and the key, and checks no
// chain.
func issue(t testing.TB, kind keyKind, names ...string) tls.Certificate {
	t.Helper()
	key := testKey(t, kind)
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	cn := ""
	if len(names) > 0 {
		cn = names[0]
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		DNSNames:     names,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if kind == rsa2048 {
		tmpl.KeyUsage |= x509.KeyUsageKeyEncipherment
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// sixCerts is a list of ECDSA and RSA certificates for overlapping names,
// exact and wildcard.
func sixCerts(t testing.TB) certList {
	return certList{
		issue(t, p256, "other.test"),
		issue(t, rsa2048, "a.test"),
		issue(t, p256, "a.test"),
		issue(t, p256, "*.b.test"),
		issue(t, rsa2048, "x.b.test"),
		issue(t, rsa2048, "c.test"),
	}
}

// cryptoTLSChoice is crypto/tls's rule for a list without
// NameToCertificate: the first certificate the hello supports, else the
// first.
func cryptoTLSChoice(h *tls.ClientHelloInfo, list certList) int {
	for j := range list {
		if h.SupportsCertificate(&list[j]) == nil {
			return j
		}
	}
	return 0
}

// setHelloConfig sets the unexported config of a hello, as crypto/tls does
// for the connection's config (the one SupportsCertificate consults).
func setHelloConfig(t testing.TB, h *tls.ClientHelloInfo, cfg *tls.Config) {
	t.Helper()
	if helloConfigOffset == ^uintptr(0) {
		t.Skip("no config field in tls.ClientHelloInfo")
	}
	*(*unsafe.Pointer)(unsafe.Add(unsafe.Pointer(h), helloConfigOffset)) = unsafe.Pointer(cfg)
}
