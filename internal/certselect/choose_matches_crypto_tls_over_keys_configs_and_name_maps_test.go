package certselect

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	mrand "math/rand/v2"
	"strings"
	"testing"
)

// signerOnly is a key that signs but cannot decrypt (as a key in a
// hardware module may be): no static RSA key exchange.
type signerOnly struct{ crypto.Signer }

// refChoice is crypto/tls's Config.getCertificate for a config without
// GetCertificate, NameToCertificate given as positions: the only one; else
// the entry for the lower-cased name, else for it with its first label made
// "*"; else the first the hello supports (an empty entry, on which
// crypto/tls may panic, counted unsupported); else the first.
func refChoice(h *tls.ClientHelloInfo, list certList, byName map[string]Target) (pos int, out *tls.Certificate) {
	if len(list) == 1 {
		return 0, nil
	}
	if byName != nil {
		name := strings.ToLower(h.ServerName)
		t, ok := byName[name]
		if !ok && len(name) > 0 {
			labels := strings.Split(name, ".")
			labels[0] = "*"
			t, ok = byName[strings.Join(labels, ".")]
		}
		if ok {
			if t.Pos >= 0 {
				return int(t.Pos), nil
			}
			return -1, t.Cert
		}
	}
	for j := range list {
		if supportsSafely(h, &list[j]) {
			return j, nil
		}
	}
	return 0, nil
}

// TestSelectionMatchesCryptoTLSOverKeysConfigsAndNameMaps: random lists of
// 2 to 6 certificates with keys of every kind crypto/tls looks at (P-256,
// P-384, P-521, P-224, Ed25519, RSA 2048 and 1024, RSA signers that cannot
// decrypt), some restricting their signature algorithms, for names exact,
// wildcard, upper case, an IP address, '_', and names with a character
// whose Unicode lower case is ASCII; some entries repeated or empty; some
// with a NameToCertificate whose keys include "*", "*." and wildcards;
// hellos of every version, with odd server names ("Q", ".test", "a..test",
// "x.", upper case), from configs with no, empty or restricted cipher
// suites, curve preferences and version bounds. Choose must agree with
// crypto/tls on every one.
func TestSelectionMatchesCryptoTLSOverKeysConfigsAndNameMaps(t *testing.T) {
	p224, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p521, err := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	r1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	names := []string{"a.test", "A.TEST", "*.b.test", "x.b.test", "*.test", "c.test", "*.A.test", "k.test", "\u212a.test", "*.\u212a.test", "1.2.3.4", "_x.test"}
	base := []tls.Certificate{issue(t, p256, "zz"), issue(t, p384, "zz"), issue(t, rsa2048, "zz"), issue(t, ed25519Key, "zz")}
	keys := []crypto.PrivateKey{base[0].PrivateKey, base[1].PrivateKey, base[2].PrivateKey, base[3].PrivateKey, p224, p521, r1024, signerOnly{base[2].PrivateKey.(crypto.Signer)}, signerOnly{r1024}}
	rng := mrand.New(mrand.NewPCG(3, 4))
	pick := func(pool []uint16, max int) []uint16 {
		out := make([]uint16, rng.IntN(max+1))
		for i := range out {
			out[i] = pool[rng.IntN(len(pool))]
		}
		return out
	}
	versions := []uint16{tls.VersionTLS10, tls.VersionTLS11, tls.VersionTLS12, tls.VersionTLS13, 0x0a0a}
	schemes := []uint16{0x0403, 0x0503, 0x0603, 0x0804, 0x0805, 0x0806, 0x0401, 0x0501, 0x0601, 0x0807, 0x0201, 0x0203, 0x0809, 0x080a, 0x080b}
	curves := []uint16{29, 23, 24, 25, 0x11ec}
	suites := []uint16{0x1301, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013, 0xc009, 0x009c, 0x002f, 0x000a, 0x0035}
	hnames := []string{"Q", ".test", "..test", "a..test", "x.", ".", "X.B.TEST", "a.test", "A.test", "x.b.test", "y.b.test", "b.test", "c.test", "k.test", "a.k.test", "q.test", "", "1.2.3.4", "_x.test", "a.a.test"}
	var cfgs []*tls.Config
	cfgs = append(cfgs, nil, &tls.Config{}, &tls.Config{CipherSuites: []uint16{}}, &tls.Config{CurvePreferences: []tls.CurveID{tls.CurveP384}},
		&tls.Config{CipherSuites: []uint16{0xc02f}}, &tls.Config{CipherSuites: []uint16{0x009c}}, &tls.Config{MaxVersion: tls.VersionTLS12}, &tls.Config{MinVersion: tls.VersionTLS10})
	for round := range 1000 {
		n := 2 + rng.IntN(5)
		list := make(certList, n)
		for i := range list {
			c := base[0]
			c.PrivateKey = keys[rng.IntN(len(keys))]
			leaf := *c.Leaf
			leaf.DNSNames = nil
			for range 1 + rng.IntN(2) {
				leaf.DNSNames = append(leaf.DNSNames, names[rng.IntN(len(names))])
			}
			c.Leaf = &leaf
			if rng.IntN(6) == 0 {
				c.SupportedSignatureAlgorithms = []tls.SignatureScheme{tls.SignatureScheme(schemes[rng.IntN(len(schemes))])}
			}
			list[i] = c
		}
		var byName map[string]Target
		if rng.IntN(3) == 0 {
			byName = map[string]Target{}
			for range rng.IntN(3) {
				keys := []string{"*", "*.", "*.test", "*.b.test", "*test", "*.k.test", ".test", "*..test", "a.test"}
				byName[keys[rng.IntN(len(keys))]] = Target{Pos: int32(rng.IntN(n))}
			}
		}
		if rng.IntN(4) == 0 {
			list[rng.IntN(n)] = list[rng.IntN(n)]
		}
		if rng.IntN(8) == 0 {
			list[rng.IntN(n)] = tls.Certificate{}
		}
		x := New[*value](list, nil, byName)
		for i := range 100 {
			h := &tls.ClientHelloInfo{
				ServerName:        hnames[rng.IntN(len(hnames))],
				SupportedVersions: pick(versions, 3),
				CipherSuites:      pick(suites, 5),
				SupportedPoints:   []uint8{0},
			}
			for _, s := range pick(schemes, 4) {
				h.SignatureSchemes = append(h.SignatureSchemes, tls.SignatureScheme(s))
			}
			for _, c := range pick(curves, 3) {
				h.SupportedCurves = append(h.SupportedCurves, tls.CurveID(c))
			}
			setHelloConfig(t, h, cfgs[rng.IntN(len(cfgs))])
			want, _ := refChoice(h, list, byName)
			if got, _, _ := x.Choose(h); got != want {
				var ns [][]string
				for _, c := range list {
					if c.Leaf == nil {
						ns = append(ns, nil)
						continue
					}
					ns = append(ns, c.Leaf.DNSNames)
				}
				t.Fatalf("round %d hello %d (%q %x %x): chose %d, want %d; names %q", round, i, h.ServerName, h.SupportedVersions, h.CipherSuites, got, want, ns)
			}
		}
	}
}
