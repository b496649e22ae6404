package stapler

import (
	"crypto/tls"
	"math/rand/v2"
	"testing"
	"unsafe"

	"github.com/staplerkit/ocsp/responder"
)

// setHelloConfig sets the unexported config of a hello, as crypto/tls does
// for the connection's config (the one SupportsCertificate consults).
func setHelloConfig(t testing.TB, h *tls.ClientHelloInfo, cfg *tls.Config) {
	t.Helper()
	if helloConfigOffset == ^uintptr(0) {
		t.Skip("no config field in tls.ClientHelloInfo")
	}
	*(*unsafe.Pointer)(unsafe.Add(unsafe.Pointer(h), helloConfigOffset)) = unsafe.Pointer(cfg)
}

func attack6Certs(e *env) []tls.Certificate {
	issue := func(kt responder.KeyType, names ...string) tls.Certificate {
		return e.mustIssue(kt, names...).Certificate
	}
	return []tls.Certificate{
		issue(responder.ECDSA, "other.test"),
		issue(responder.RSA, "a.test"),
		issue(responder.ECDSA, "a.test"),
		issue(responder.ECDSA, "*.b.test"),
		issue(responder.RSA, "x.b.test"),
		issue(responder.RSA, "c.test"),
	}
}

// PROBE (passes): promise "the certificate chosen from a wrapped config's
// list is exactly crypto/tls's choice for every hello, including configs
// whose bounds exclude TLS 1.3". Random hellos are given, as crypto/tls
// does, the config they belong to: clones of the wrapped config with
// MinVersion/MaxVersion over 0, TLS 1.0 to 1.3, Max < Min, unknown values
// (0x0305, 0x0200, 0xffff). Far more than 16 bound pairs, interleaved, so
// the 16-slot allowedCache collides and is overwritten all the time, and
// versions lists up to 20 long, duplicated, GREASE-laden.
func TestSelectionWithConfigBoundsMatchesCryptoTLS(t *testing.T) {
	e := newEnv(t, on)
	certs := attack6Certs(e)
	wrapped := e.s.Wrap(&tls.Config{Certificates: certs})
	w := e.s.wrapperOf(wrapped)
	if w == nil {
		t.Fatal("no wrapper")
	}
	bounds := []uint16{0, tls.VersionTLS10, tls.VersionTLS11, tls.VersionTLS12, tls.VersionTLS13, 0x0305, 0x0200, 0xffff, 0x0303 + 0x100}
	var cfgs []*tls.Config
	for _, lo := range bounds {
		for _, hi := range bounds {
			c := wrapped.Clone()
			c.MinVersion, c.MaxVersion = lo, hi
			cfgs = append(cfgs, c)
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
		want := 0
		for j := range certs {
			if h.SupportsCertificate(w.certAt(j)) == nil {
				want = j
				break
			}
		}
		if got, _ := w.selectCertificate(h); got != want {
			t.Fatalf("hello %d (versions %x, config %#x..%#x): chose %d, crypto/tls %d", i, h.SupportedVersions, cfg.MinVersion, cfg.MaxVersion, got, want)
		}
	}
}

// PROBE (passes): the same, with goroutines on distinct bounds racing on
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

// FINDING (fixed; it was a deliberate divergence, reported for the record): promise "the
// certificate chosen ... is exactly crypto/tls's choice". For a TLS 1.3
// hello with no server name and no signature_algorithms, crypto/tls's
// SupportsCertificate accepts an empty tls.Certificate{} entry (no key is
// looked at), so crypto/tls chooses it; the wrapper skips empty entries and
// serves the next one.
func TestEmptyEntryChosenByCryptoTLS(t *testing.T) {
	e := newEnv(t, on)
	certs := attack6Certs(e)
	list := append([]tls.Certificate{{}}, certs...)
	w := e.s.wrapperOf(e.s.Wrap(&tls.Config{Certificates: list}))
	h := &tls.ClientHelloInfo{SupportedVersions: []uint16{tls.VersionTLS13}}
	want := 0
	for j := range list {
		if h.SupportsCertificate(&list[j]) == nil {
			want = j
			break
		}
	}
	if got, _ := w.selectCertificate(h); got != want {
		t.Fatalf("chose %d, crypto/tls chooses %d (the empty entry)", got, want)
	}
}
