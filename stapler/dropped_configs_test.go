package stapler

import (
	"crypto/tls"
	"runtime"
	"testing"

	"golang.org/x/crypto/ocsp"
)

// PROBE (passes): promises "no panic", "never another certificate's
// staple", "never past expiry". Three configs list one leaf (A, then B,
// then C: the certificate's view is made for C's entry, A's and B's keep
// their own). B and then C are dropped and their cleanups clear their
// entries' views while the certificate's view still points into C's list;
// A then keeps serving across a refresh, a Remove and re-registration,
// and a GetCertificate config serving the same certificate, each
// handshake with the leaf's own, current staple.
func TestDroppedConfigsCleanupThenServe(t *testing.T) {
	e := newEnv(t, on)
	leaf := e.leaf
	a := e.s.Wrap(tlsConfigFor(leaf))
	addrA := e.serve(a)
	e.waitStapled(leaf)
	e.mustGetStaple(addrA, leaf, ocsp.Good)
	drop := func() []listEntry {
		c := e.s.Wrap(tlsConfigFor(leaf))
		// Handshake-free use: one selection through the wrapper.
		if got, err := c.GetCertificate(helloFor()); err != nil || got.OCSPStaple == nil {
			t.Fatalf("dropped config served no staple (%v)", err)
		}
		return e.s.wrapperOf(c).list
	}
	listB := drop()
	listC := drop()
	// C's entry is the view's home; B's has its own view, cleared when B is
	// collected. Wait for both cleanups (C's entry gets an own view when the
	// view moves away from it, below, so wait for B's first).
	eventually(t, "B's cleanup", func() bool { runtime.GC(); return listB[0].own.Load() == nil })
	runtime.GC()
	runtime.GC()
	e.mustGetStaple(addrA, leaf, ocsp.Good)
	before := e.advanceToNextRefresh(leaf)
	e.waitQueries(leaf, before+1)
	for range 3 {
		e.mustGetStaple(addrA, leaf, ocsp.Good)
	}
	app := leaf.Certificate
	addrApp := e.serve(e.s.Wrap(&tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &app, nil }}))
	e.mustGetStaple(addrApp, leaf, ocsp.Good)
	e.mustGetStaple(addrA, leaf, ocsp.Good)
	if err := e.s.Remove(CertificateID(leaf.Cert.Raw)); err != nil {
		t.Fatal(err)
	}
	e.handshake(addrA)
	e.waitStapled(leaf)
	e.mustGetStaple(addrA, leaf, ocsp.Good)
	e.mustGetStaple(addrApp, leaf, ocsp.Good)
	runtime.KeepAlive(listC)
}
