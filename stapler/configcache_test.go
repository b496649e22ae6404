package stapler

import (
	"bytes"
	"crypto/tls"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"weak"

	"github.com/staplerkit/ocsp/internal/weakcache"
	"github.com/staplerkit/ocsp/responder"
	"golang.org/x/crypto/ocsp"
)

// collected counts the objects given to track that the garbage collector
// has reclaimed.
type collected struct{ n atomic.Int64 }

func (c *collected) track(cfg *tls.Config) {
	runtime.AddCleanup(cfg, func(n *atomic.Int64) { n.Add(1) }, &c.n)
}

// waitCollected runs the collector until want objects were reclaimed.
func (c *collected) wait(t *testing.T, what string, want int64) {
	t.Helper()
	deadline := time.Now().Add(hangLimit)
	for c.n.Load() < want {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d %s collected: the rest are held alive", c.n.Load(), want, what)
		}
		runtime.GC()
		time.Sleep(time.Millisecond)
	}
}

func TestWrapHoldsNoConfigAlive(t *testing.T) {
	e := newEnv(t, on)
	addr := e.serve(e.s.Wrap(tlsConfigFor(e.leaf)))
	e.mustGetStaple(addr, e.leaf, ocsp.Good)
	var apps, wrapped collected
	const n = 2000
	func() {
		for range n { // a config wrapped per reload, or per handshake
			app := tlsConfigFor(e.leaf)
			apps.track(app)
			wrapped.track(e.s.Wrap(app))
		}
	}()
	apps.wait(t, "application configs", n)
	wrapped.wait(t, "wrapped configs", n)
	e.mustGetStaple(addr, e.leaf, ocsp.Good)
}

func TestConfigsFromGetConfigForClientAreNotPinned(t *testing.T) {
	e := newEnv(t, on)
	var apps, wrapped collected
	cfg := e.s.Wrap(&tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
		app := tlsConfigFor(e.leaf) // a new config every handshake
		apps.track(app)
		return app, nil
	}})
	addr := e.serve(cfg)
	e.mustGetStaple(addr, e.leaf, ocsp.Good)
	const n = 300
	for range n - 1 {
		inner, err := cfg.GetConfigForClient(helloFor())
		if err != nil {
			t.Fatal(err)
		}
		wrapped.track(inner)
	}
	apps.wait(t, "application configs", n)
	wrapped.wait(t, "wrapped configs", n-1)
	eventually(t, "the entries of collected configs to go", func() bool { runtime.GC(); return e.s.wrapperOf(cfg).inner.Len() == 0 })
}

func TestAStableConfigFromGetConfigForClientIsWrappedOnce(t *testing.T) {
	e := newEnv(t, on)
	stable := tlsConfigFor(e.leaf)
	var fresh atomic.Bool
	cfg := e.s.Wrap(&tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
		if fresh.Load() {
			return tlsConfigFor(e.leaf), nil
		}
		return stable, nil
	}})
	get := func() *tls.Config {
		t.Helper()
		inner, err := cfg.GetConfigForClient(helloFor())
		if err != nil || inner == nil {
			t.Fatal(err)
		}
		return inner
	}
	// Over a process's life, many configs came and went: more than the cache holds.
	fresh.Store(true)
	for range 3 * weakcache.Slots {
		get()
	}
	if got := e.s.wrapperOf(cfg).inner.Len(); got > weakcache.Slots {
		t.Fatalf("%d configs remembered, bound %d", got, weakcache.Slots)
	}
	// A stable config is still wrapped once, and stays so while fresh ones churn.
	fresh.Store(false)
	first := get()
	seen := map[*tls.Config]bool{first: true}
	for range 2 * weakcache.Slots {
		fresh.Store(true)
		get()
		fresh.Store(false)
		seen[get()] = true
	}
	if len(seen) != 1 {
		t.Fatalf("a stable config was wrapped %d times", len(seen))
	}
	hello := helloFor()
	if n := testing.AllocsPerRun(1000, func() { cfg.GetConfigForClient(hello) }); n != 0 {
		t.Fatalf("%v allocations per remembered config, want 0", n)
	}
	e.mustGetStaple(e.serve(cfg), e.leaf, ocsp.Good)
}

func TestAWrappedConfigAndItsClonesAreNotWrappedTwice(t *testing.T) {
	e := newEnv(t, on)
	other, err := e.srv.Issue(responder.LeafOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var appCalls atomic.Int32
	app := tlsConfigFor(e.leaf)
	app.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		appCalls.Add(1)
		return nil, nil // fall back to Certificates
	}
	wrapped := e.s.Wrap(app)
	if e.s.Wrap(wrapped) != wrapped {
		t.Fatal("a wrapped config was wrapped again")
	}
	// An unchanged clone already staples: returned as it is, one layer deep.
	clone := wrapped.Clone()
	if e.s.Wrap(clone) != clone {
		t.Fatal("an unchanged clone of a wrapped config was wrapped again")
	}
	hello := helloFor()
	if c, err := clone.GetCertificate(hello); err != nil || c.OCSPStaple == nil {
		t.Fatalf("not stapled: %v", err)
	}
	clones := testing.AllocsPerRun(1000, func() { wrapped.Clone() })
	if n := testing.AllocsPerRun(1000, func() { e.s.Wrap(wrapped.Clone()).GetCertificate(hello) }); n > clones {
		t.Fatalf("%v allocations to re-wrap a clone and serve a hit, want the clone's one", n)
	}
	// A clone given other certificates serves them, stapled, with and
	// without SNI; the application's GetCertificate is called once per
	// handshake with SNI, not once per layer.
	changed := wrapped.Clone()
	changed.Certificates = []tls.Certificate{other.Certificate}
	addr := e.serve(e.s.Wrap(changed))
	for _, mod := range []func(*tls.Config){func(*tls.Config) {}, noSNI(tls.VersionTLS13)} {
		appCalls.Store(0)
		staple, st, err := e.handshake(addr, mod)
		if err != nil {
			t.Fatal(err)
		}
		if !st.PeerCertificates[0].Equal(other.Cert) {
			t.Fatal("the clone's certificates were not served")
		}
		if _, err := ocsp.ParseResponseForCert(staple, other.Cert, e.ca.Cert); err != nil {
			t.Fatalf("not stapled: %v", err)
		}
		if want := int32(0); st.ServerName != "" {
			want = 1
			if appCalls.Load() != want {
				t.Fatalf("application's GetCertificate called %d times, want %d", appCalls.Load(), want)
			}
		}
	}
	// The original is untouched by all this.
	e.mustGetStaple(e.serve(wrapped), e.leaf, ocsp.Good)
	// A wrapped config returned by GetConfigForClient is used as it is.
	outer := e.s.Wrap(&tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) { return wrapped, nil }})
	if inner, _ := outer.GetConfigForClient(hello); inner != wrapped {
		t.Fatal("a wrapped config returned by GetConfigForClient was wrapped again")
	}
}

// Configs come and go from many goroutines at once, and the collector
// reuses their addresses: each handshake still gets its own config's
// certificate, never one remembered for a config that lived at the same
// address before.
func TestConfigCacheUnderChurnServesEachConfigItsOwnCertificate(t *testing.T) {
	e := newEnv(t, on)
	leaves := []*responder.Leaf{e.leaf}
	for range 3 {
		l, err := e.srv.Issue(responder.LeafOptions{})
		if err != nil {
			t.Fatal(err)
		}
		leaves = append(leaves, l)
	}
	stable := tlsConfigFor(leaves[0])
	var apps sync.Map // *tls.ClientHelloInfo -> the config to return
	cfg := e.s.Wrap(&tls.Config{GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		app, _ := apps.Load(h)
		return app.(*tls.Config), nil
	}})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 2000 {
				app := stable
				want := leaves[0]
				if i%2 == 1 {
					want = leaves[(g+i)%len(leaves)]
					app = tlsConfigFor(want)
				}
				hello := new(tls.ClientHelloInfo)
				apps.Store(hello, app)
				inner, err := cfg.GetConfigForClient(hello)
				apps.Delete(hello)
				if err != nil {
					t.Error(err)
					return
				}
				c, err := inner.GetCertificate(hello)
				if err != nil || !bytes.Equal(c.Certificate[0], want.Cert.Raw) {
					t.Errorf("a config was served another config's certificate (%v)", err)
					return
				}
				if i%100 == 0 {
					runtime.GC()
				}
			}
		})
	}
	wg.Wait()
}

// reWrapAndDrop wraps a config listing e.leaf (and extra, when not nil),
// serves it once, then wraps a config listing e.leaf with another chain
// (and not extra), and returns weak pointers to the first config's wrapper
// and to the view its entry for e.leaf keeps of its own, and the second
// wrapped config (kept alive by the caller).
func reWrapAndDrop(t *testing.T, e *env, extra *responder.Leaf) (weak.Pointer[wrapper], weak.Pointer[view], *tls.Config) {
	certs := []tls.Certificate{e.leaf.Certificate}
	if extra != nil {
		certs = append(certs, extra.Certificate)
	}
	first := e.s.Wrap(&tls.Config{Certificates: certs})
	first.GetCertificate(helloFor())
	e.waitStapled(e.leaf)
	if extra != nil {
		e.waitStapled(extra) // no fetch of it in flight to hold its state
	}
	w := e.s.wrapperOf(first)
	again := e.leaf.Certificate
	again.Certificate = slices.Clone(again.Certificate)
	second := e.s.Wrap(&tls.Config{Certificates: []tls.Certificate{again}})
	own := w.list[0].own.Load()
	if own == nil {
		t.Fatal("the first config's entry keeps no view of its own")
	}
	return weak.Make(w), weak.Make(own), second
}

func viewCollected(v weak.Pointer[view]) bool {
	for range 5 {
		runtime.GC()
		if v.Value() == nil {
			return true
		}
	}
	return false
}

// A config wrapped again with another chain for its one leaf: once the
// application drops the first wrapped config, its wrapper and the view its
// entry kept are collected.
func TestReWrapLeavesNothingOfTheOldConfig(t *testing.T) {
	e := newEnv(t, on)
	w, own, second := reWrapAndDrop(t, e, nil)
	if !viewCollected(own) || w.Value() != nil {
		t.Fatal("the first wrapped config's view is kept alive after it was dropped")
	}
	runtime.KeepAlive(second)
}

// A config listing X and Y, wrapped again with X only (Y rotated out of the
// list, not yet Removed, as an application rotating certificates and
// calling Remove later does), keeps no view of the dropped config alive:
// Y's state does not hold the first config's list array, and with it every
// other entry's view (here X's chain and key as the dropped config held
// them). Found when, at 100,000 certificates, such a re-Wrap kept every
// view of the old list alive until the dropped certificate was Removed.
func TestReWrapDroppingOneKeepsNoOtherView(t *testing.T) {
	e := newEnv(t, on)
	y, err := e.srv.Issue(responder.LeafOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w, own, second := reWrapAndDrop(t, e, y)
	collected := viewCollected(own)
	runtime.KeepAlive(second)
	if !collected {
		t.Fatalf("the dropped config's own view of X is kept alive (wrapper collected: %v), through Y's view.home", w.Value() == nil)
	}
}

// As above, and once Y is Removed, nothing of the dropped config remains.
func TestReWrapDroppingOneThenRemoveKeepsNothing(t *testing.T) {
	e := newEnv(t, on)
	y, err := e.srv.Issue(responder.LeafOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w, own, second := reWrapAndDrop(t, e, y)
	if err := e.s.Remove(CertificateID(y.Cert.Raw)); err != nil {
		t.Fatal(err)
	}
	collected := viewCollected(own)
	runtime.KeepAlive(second)
	if !collected || w.Value() != nil {
		t.Fatalf("the dropped config's view is kept alive after Remove of the certificate it alone listed (wrapper collected: %v)", w.Value() == nil)
	}
}
