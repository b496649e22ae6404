package stapler

import (
	"crypto/tls"
	"runtime"
	"slices"
	"testing"
	"weak"

	"github.com/staplerkit/ocsp/responder"
)

// attack5ReWrap wraps a config listing e.leaf (and extra, when not nil),
// serves it once, then wraps a config listing e.leaf with another chain
// (and not extra), and returns weak pointers to the first config's wrapper
// and to the view its entry for e.leaf keeps of its own, and the second
// wrapped config (kept alive by the caller).
func attack5ReWrap(t *testing.T, e *env, extra *responder.Leaf) (weak.Pointer[wrapper], weak.Pointer[view], *tls.Config) {
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

func attack5Collected(v weak.Pointer[view]) bool {
	for range 5 {
		runtime.GC()
		if v.Value() == nil {
			return true
		}
	}
	return false
}

// PASSING PROBE. TestReWrapLeavesNothingOfTheOldConfig: a config
// wrapped again with another chain for its one leaf: once the application
// drops the first wrapped config, its wrapper and the view its entry kept
// are collected.
func TestReWrapLeavesNothingOfTheOldConfig(t *testing.T) {
	e := newEnv(t, on)
	w, own, second := attack5ReWrap(t, e, nil)
	if !attack5Collected(own) || w.Value() != nil {
		t.Fatal("the first wrapped config's view is kept alive after it was dropped")
	}
	runtime.KeepAlive(second)
}

// FINDING (fixed) (memory retention; the code before 7e23a27 held the old copy of
// the list alive the same way, through managed.orig). A config listing X
// and Y is wrapped again with X only (Y rotated out of the list, not yet
// Removed, as an application rotating certificates and calling Remove
// later does): Y's state keeps its view, made for the first config's list
// entry, and view.home points into the first config's list array, so that
// the whole array stays reachable, and with it every other entry's own
// view: here X's chain and key as the dropped config held them. At 100,000
// certificates a re-Wrap that drops one certificate keeps every view of the
// old list alive until that certificate is Removed.
func TestReWrapDroppingOneKeepsNoOtherView(t *testing.T) {
	e := newEnv(t, on)
	y, err := e.srv.Issue(responder.LeafOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w, own, second := attack5ReWrap(t, e, y)
	collected := attack5Collected(own)
	runtime.KeepAlive(second)
	if !collected {
		t.Fatalf("the dropped config's own view of X is kept alive (wrapper collected: %v), through Y's view.home", w.Value() == nil)
	}
}

// PASSING PROBE. TestReWrapDroppingOneThenRemoveKeepsNothing: as
// above, and once Y is Removed, nothing of the dropped config remains.
func TestReWrapDroppingOneThenRemoveKeepsNothing(t *testing.T) {
	e := newEnv(t, on)
	y, err := e.srv.Issue(responder.LeafOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w, own, second := attack5ReWrap(t, e, y)
	if err := e.s.Remove(CertificateID(y.Cert.Raw)); err != nil {
		t.Fatal(err)
	}
	collected := attack5Collected(own)
	runtime.KeepAlive(second)
	if !collected || w.Value() != nil {
		t.Fatalf("the dropped config's view is kept alive after Remove of the certificate it alone listed (wrapper collected: %v)", w.Value() == nil)
	}
}
