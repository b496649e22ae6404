package certselect

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	crand "crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"math/rand/v2"
	"strings"
	"testing"
)

// TestSelectionMatchesCryptoTLSOnRandomHellos compares Choose with
// crypto/tls's rule (the first certificate the hello supports, else the
// first) over thousands of random hellos: versions (TLS 1.0 to 1.3,
// GREASE, unknown, in any order), signature schemes, curves, points and
// suites, drawn from real and made-up values, against a list of ECDSA and
// RSA certificates for overlapping names. The TLS 1.3 shortcut and the
// support cache must never change the answer.
func TestSelectionMatchesCryptoTLSOnRandomHellos(t *testing.T) {
	certs := sixCerts(t)
	x := New[*value](certs, nil, nil)
	rng := rand.New(rand.NewPCG(1, 2))
	pick := func(pool []uint16, max int) []uint16 {
		n := rng.IntN(max + 1)
		out := make([]uint16, n)
		for i := range out {
			out[i] = pool[rng.IntN(len(pool))]
		}
		return out
	}
	versions := []uint16{tls.VersionTLS10, tls.VersionTLS11, tls.VersionTLS12, tls.VersionTLS13, 0x0a0a, 0x7a7a, 0x0305}
	schemes := []uint16{0x0403, 0x0503, 0x0603, 0x0804, 0x0805, 0x0806, 0x0401, 0x0501, 0x0601, 0x0807, 0x0201, 0x0203, 0x1234}
	curves := []uint16{29, 23, 24, 25, 0x11ec, 0x2a2a}
	suites := []uint16{0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013, 0x009c, 0x002f, 0x0a0a}
	names := []string{"a.test", "x.b.test", "y.b.test", "c.test", "other.test", "none.test", ""}
	for i := range 5000 {
		h := &tls.ClientHelloInfo{
			ServerName:        names[rng.IntN(len(names))],
			SupportedVersions: pick(versions, 4),
			CipherSuites:      pick(suites, 6),
			SupportedPoints:   []uint8{0},
		}
		if rng.IntN(4) == 0 {
			h.SupportedVersions = pick(versions, 6) // more than the shortcut takes
		}
		for _, s := range pick(schemes, 5) {
			h.SignatureSchemes = append(h.SignatureSchemes, tls.SignatureScheme(s))
		}
		for _, c := range pick(curves, 3) {
			h.SupportedCurves = append(h.SupportedCurves, tls.CurveID(c))
		}
		want := cryptoTLSChoice(h, certs)
		if got, _, _ := x.Choose(h); got != want {
			t.Fatalf("hello %d (%+v): chose certificate %d, crypto/tls %d", i, h, got, want)
		}
	}
}

// TestSelectionWithConfigBoundsMatchesCryptoTLS: the certificate chosen is
// exactly crypto/tls's choice for every hello, including configs whose
// bounds exclude TLS 1.3. Random hellos are given, as crypto/tls does, the
// config they belong to: configs with MinVersion/MaxVersion over 0, TLS
// 1.0 to 1.3, Max < Min, unknown values (0x0305, 0x0200, 0xffff). Far more
// than 16 bound pairs, interleaved, so the 16-slot allowedCache collides
// and is overwritten all the time, and versions lists up to 20 long,
// duplicated, GREASE-laden.
func TestSelectionWithConfigBoundsMatchesCryptoTLS(t *testing.T) {
	certs := sixCerts(t)
	x := New[*value](certs, nil, nil)
	bounds := []uint16{0, tls.VersionTLS10, tls.VersionTLS11, tls.VersionTLS12, tls.VersionTLS13, 0x0305, 0x0200, 0xffff, 0x0303 + 0x100}
	var cfgs []*tls.Config
	for _, lo := range bounds {
		for _, hi := range bounds {
			cfgs = append(cfgs, &tls.Config{Certificates: certs, MinVersion: lo, MaxVersion: hi})
		}
	}
	rng := rand.New(rand.NewPCG(6, 6))
	pick := func(pool []uint16, max int) []uint16 {
		out := make([]uint16, rng.IntN(max+1))
		for i := range out {
			out[i] = pool[rng.IntN(len(pool))]
		}
		return out
	}
	versions := []uint16{tls.VersionTLS10, tls.VersionTLS11, tls.VersionTLS12, tls.VersionTLS13, 0x0a0a, 0x0305, 0x0300, 0x7f1c}
	schemes := []uint16{0x0403, 0x0503, 0x0603, 0x0804, 0x0805, 0x0806, 0x0401, 0x0501, 0x0601, 0x0807, 0x0201, 0x0203}
	curves := []uint16{29, 23, 24, 25, 0x11ec}
	suites := []uint16{0x1301, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013, 0xc009, 0x009c, 0x002f, 0x000a}
	names := []string{"a.test", "x.b.test", "y.b.test", "c.test", "other.test", "none.test", ""}
	for i := range 20000 {
		cfg := cfgs[rng.IntN(len(cfgs))]
		h := &tls.ClientHelloInfo{
			ServerName:        names[rng.IntN(len(names))],
			SupportedVersions: pick(versions, 20),
			CipherSuites:      pick(suites, 6),
			SupportedPoints:   []uint8{0},
		}
		for _, s := range pick(schemes, 4) {
			h.SignatureSchemes = append(h.SignatureSchemes, tls.SignatureScheme(s))
		}
		for _, c := range pick(curves, 3) {
			h.SupportedCurves = append(h.SupportedCurves, tls.CurveID(c))
		}
		setHelloConfig(t, h, cfg)
		want := cryptoTLSChoice(h, certs)
		if got, _, _ := x.Choose(h); got != want {
			t.Fatalf("hello %d (versions %x, config %#x..%#x): chose %d, crypto/tls %d", i, h.SupportedVersions, cfg.MinVersion, cfg.MaxVersion, got, want)
		}
	}
}

// TestEmptyEntryChosenByCryptoTLS: for a TLS 1.3 hello with no server name
// and no signature_algorithms, crypto/tls's SupportsCertificate accepts an
// empty tls.Certificate{} entry (no key is looked at), so crypto/tls
// chooses it, and so must Choose (it once skipped empty entries and chose
// the next one).
func TestEmptyEntryChosenByCryptoTLS(t *testing.T) {
	list := append(certList{{}}, sixCerts(t)...)
	x := New[*value](list, nil, nil)
	h := &tls.ClientHelloInfo{SupportedVersions: []uint16{tls.VersionTLS13}}
	if got, want := func() int { p, _, _ := x.Choose(h); return p }(), cryptoTLSChoice(h, list); got != want {
		t.Fatalf("chose %d, crypto/tls chooses %d (the empty entry)", got, want)
	}
}

// TestEmptyEntryAfterUnsupportedOnesIsNeverAskedToPanic: an empty entry
// after certificates the hello does not match makes crypto/tls's
// SupportsCertificate index Certificate[0] (crypto/tls itself would end
// the server); Choose counts it as unsupported and chooses the first.
func TestEmptyEntryAfterUnsupportedOnesIsNeverAskedToPanic(t *testing.T) {
	list := certList{issue(t, p256, "a.test"), {}}
	x := New[*value](list, nil, nil)
	for _, name := range []string{"", "b.test", "B.TEST", "1.2.3.4"} {
		h := &tls.ClientHelloInfo{ServerName: name, SupportedVersions: []uint16{tls.VersionTLS12}, CipherSuites: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}}
		if got, _, _ := x.Choose(h); got != 0 {
			t.Fatalf("server name %q: chose %d, want the first", name, got)
		}
	}
}

// TestChooseHonoursNameToCertificate: an entry for the server name (lower
// case), else for its wildcard, decides before any name of the leaves, a
// position in the list or a certificate outside it; without one, the
// leaves' names decide.
func TestChooseHonoursNameToCertificate(t *testing.T) {
	certs := sixCerts(t)
	outside := issue(t, p256, "outside.test")
	byName := map[string]Target{
		"a.test":   {Pos: 5},
		"*.b.test": {Pos: -1, Cert: &outside},
	}
	x := New[*value](certs, nil, byName)
	h13 := func(name string) *tls.ClientHelloInfo {
		return &tls.ClientHelloInfo{ServerName: name, SupportedVersions: []uint16{tls.VersionTLS13},
			SignatureSchemes: []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256}}
	}
	for _, tc := range []struct {
		name    string
		pos     int
		outside *tls.Certificate
	}{
		{"A.Test", 5, nil},         // an RSA certificate this hello does not support: still the entry's
		{"x.b.test", -1, &outside}, // the wildcard entry, before the leaf for x.b.test
		{"y.b.test", -1, &outside}, // the wildcard entry, before the leaf for *.b.test
		{"b.test", 0, nil},         // no entry: the leaves decide (none is valid; the first)
		{"other.test", 0, nil},     // no entry: the leaf for other.test
	} {
		pos, _, out := x.Choose(h13(tc.name))
		if pos != tc.pos || out != tc.outside {
			t.Errorf("%s: chose (%d, %p), want (%d, %p)", tc.name, pos, out, tc.pos, tc.outside)
		}
	}
}

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
	p224, err := ecdsa.GenerateKey(elliptic.P224(), crand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p521, err := ecdsa.GenerateKey(elliptic.P521(), crand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	r1024, err := rsa.GenerateKey(crand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	names := []string{"a.test", "A.TEST", "*.b.test", "x.b.test", "*.test", "c.test", "*.A.test", "k.test", "\u212a.test", "*.\u212a.test", "1.2.3.4", "_x.test"}
	base := []tls.Certificate{issue(t, p256, "zz"), issue(t, p384, "zz"), issue(t, rsa2048, "zz"), issue(t, ed25519Key, "zz")}
	keys := []crypto.PrivateKey{base[0].PrivateKey, base[1].PrivateKey, base[2].PrivateKey, base[3].PrivateKey, p224, p521, r1024, signerOnly{base[2].PrivateKey.(crypto.Signer)}, signerOnly{r1024}}
	rng := rand.New(rand.NewPCG(3, 4))
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
