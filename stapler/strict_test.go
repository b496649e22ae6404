package stapler

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/staplerkit/ocsp/internal/ocspcheck"
	"github.com/staplerkit/ocsp/internal/ocsptest"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
	"golang.org/x/crypto/ocsp"

	"github.com/staplerkit/ocsp/responder"
)

// derNode is a DER element as a tree, so that tests can add, drop or change
// elements anywhere in a response and encode it again.
type derNode struct {
	tag      cbasn1.Tag
	content  []byte     // a primitive element's content
	children []*derNode // a constructed element's elements
}

func parseDER(t testing.TB, der []byte) *derNode {
	t.Helper()
	in := cryptobyte.String(der)
	var n derNode
	var content cryptobyte.String
	if !in.ReadAnyASN1(&content, &n.tag) || !in.Empty() {
		t.Fatalf("parseDER: not one DER element")
	}
	if n.tag&0x20 == 0 { // primitive
		n.content = content
		return &n
	}
	for !content.Empty() {
		var child cryptobyte.String
		var tag cbasn1.Tag
		if !content.ReadAnyASN1Element(&child, &tag) {
			t.Fatalf("parseDER: bad child")
		}
		n.children = append(n.children, parseDER(t, child))
	}
	return &n
}

func (n *derNode) add(b *cryptobyte.Builder) {
	b.AddASN1(n.tag, func(b *cryptobyte.Builder) {
		if n.tag&0x20 == 0 {
			b.AddBytes(n.content)
			return
		}
		for _, c := range n.children {
			c.add(b)
		}
	})
}

func (n *derNode) bytes(t testing.TB) []byte {
	t.Helper()
	var b cryptobyte.Builder
	n.add(&b)
	out, err := b.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// basicOf opens a response: the OCSPResponse tree and the BasicOCSPResponse
// tree inside its OCTET STRING.
func basicOf(t testing.TB, raw []byte) (outer, basic *derNode) {
	t.Helper()
	outer = parseDER(t, raw)
	octets := outer.children[1].children[0].children[1]
	return outer, parseDER(t, octets.content)
}

// rewrap puts basic back into outer and encodes the response.
func rewrap(t testing.TB, outer, basic *derNode) []byte {
	t.Helper()
	outer.children[1].children[0].children[1].content = basic.bytes(t)
	return outer.bytes(t)
}

// resign changes the signed ResponseData of raw with mod and signs it again
// with key (the CA's ECDSA key): the result has a valid signature over
// whatever mod made.
func resign(t testing.TB, raw []byte, key crypto.Signer, mod func(tbs *derNode)) []byte {
	t.Helper()
	outer, basic := basicOf(t, raw)
	mod(basic.children[0])
	tbs := basic.children[0].bytes(t)
	digest := crypto.SHA256.New()
	digest.Write(tbs)
	sig, err := key.Sign(rand.Reader, digest.Sum(nil), crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	var b cryptobyte.Builder
	b.AddASN1BitString(sig)
	sigDER, _ := b.Bytes()
	basic.children[2] = parseDER(t, sigDER)
	return rewrap(t, outer, basic)
}

// single returns the first SingleResponse of a ResponseData tree.
func single(tbs *derNode) *derNode {
	for _, c := range tbs.children {
		if c.tag == cbasn1.SEQUENCE && len(c.children) > 0 && c.children[0].tag == cbasn1.SEQUENCE {
			return c.children[0]
		}
	}
	return nil
}

func octetString(t testing.TB, n int) *derNode {
	var b cryptobyte.Builder
	b.AddASN1OctetString(bytes.Repeat([]byte{0x5a}, n))
	der, _ := b.Bytes()
	return parseDER(t, der)
}

func TestStrictDERRefusesBytesOutsideTheSignature(t *testing.T) {
	f := ocsptest.NewOCSPFixture(t)
	opts := ocspcheck.Options{Skew: 5 * time.Minute}
	good := f.Sign(t, f.CA.Cert, f.CA.Key, false, nil)
	delegated := f.Sign(t, f.Delegate.Cert, f.Delegate.Key, true, nil)
	revokedElement := func(t testing.TB) *derNode {
		var b cryptobyte.Builder
		b.AddASN1(cbasn1.Tag(1).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
			b.AddASN1GeneralizedTime(f.Now.Add(-time.Hour).UTC())
		})
		der, _ := b.Bytes()
		return parseDER(t, der)
	}
	for _, tc := range []struct {
		name string
		raw  func(t testing.TB) []byte
	}{
		{"junk octet string in certs", func(t testing.TB) []byte {
			outer, basic := basicOf(t, good)
			certs := &derNode{tag: cbasn1.SEQUENCE, children: []*derNode{octetString(t, 5_000)}}
			basic.children = append(basic.children, &derNode{tag: cbasn1.Tag(0).ContextSpecific().Constructed(), children: []*derNode{certs}})
			return rewrap(t, outer, basic)
		}},
		{"junk next to a valid delegate in certs", func(t testing.TB) []byte {
			outer, basic := basicOf(t, delegated)
			certs := basic.children[3].children[0]
			certs.children = append(certs.children, octetString(t, 1000))
			return rewrap(t, outer, basic)
		}},
		{"element after the signature", func(t testing.TB) []byte {
			outer, basic := basicOf(t, good)
			basic.children = append(basic.children, octetString(t, 100))
			return rewrap(t, outer, basic)
		}},
		{"element after the certs", func(t testing.TB) []byte {
			outer, basic := basicOf(t, delegated)
			basic.children = append(basic.children, octetString(t, 100))
			return rewrap(t, outer, basic)
		}},
		{"element after responseBytes", func(t testing.TB) []byte {
			outer := parseDER(t, good)
			outer.children[1].children[0].children = append(outer.children[1].children[0].children, octetString(t, 10))
			return outer.bytes(t)
		}},
		{"signed: good and revoked both", func(t testing.TB) []byte {
			return resign(t, good, f.CA.Key, func(tbs *derNode) {
				s := single(tbs)
				s.children = append(s.children[:2], append([]*derNode{revokedElement(t)}, s.children[2:]...)...)
			})
		}},
		{"signed: element added to a SingleResponse", func(t testing.TB) []byte {
			return resign(t, good, f.CA.Key, func(tbs *derNode) {
				s := single(tbs)
				s.children = append(s.children, octetString(t, 10))
			})
		}},
		{"signed: element added to ResponseData", func(t testing.TB) []byte {
			return resign(t, good, f.CA.Key, func(tbs *derNode) {
				tbs.children = append(tbs.children, octetString(t, 10))
			})
		}},
		{"signed: element added to the CertID", func(t testing.TB) []byte {
			return resign(t, good, f.CA.Key, func(tbs *derNode) {
				id := single(tbs).children[0]
				id.children = append(id.children, octetString(t, 10))
			})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := tc.raw(t)
			_, err := ocspcheck.Verify(raw, f.Leaf.Cert, f.CA.Cert, f.Now, opts)
			if !errors.Is(err, ErrMalformedResponse) {
				t.Fatalf("got %v, want ErrMalformedResponse", err)
			}
		})
	}
	// The test's own re-signing is sound: an unchanged ResponseData signed
	// again verifies.
	if _, err := ocspcheck.Verify(resign(t, good, f.CA.Key, func(*derNode) {}), f.Leaf.Cert, f.CA.Cert, f.Now, opts); err != nil {
		t.Fatalf("re-signed unchanged response refused: %v", err)
	}
}

// tamperingResponder serves e's responder's answers, changed by tamper
// while it is set.
func tamperingResponder(t testing.TB, r *responder.Responder) (*httptest.Server, *atomic.Pointer[func([]byte) []byte]) {
	var tamper atomic.Pointer[func([]byte) []byte]
	srv := httptest.NewServer(tamperingHandler(r, &tamper))
	t.Cleanup(srv.Close)
	return srv, &tamper
}

// tamperingHandler serves r's answers, changed by tamper while it is set.
func tamperingHandler(r *responder.Responder, tamper *atomic.Pointer[func([]byte) []byte]) http.HandlerFunc {
	return func(w http.ResponseWriter, req *http.Request) {
		rec := httptest.NewRecorder()
		r.ServeHTTP(rec, req)
		body := rec.Body.Bytes()
		if f := tamper.Load(); f != nil && rec.Code == http.StatusOK {
			body = (*f)(body)
		}
		for k, v := range rec.Header() {
			if k != "Content-Length" {
				w.Header()[k] = v
			}
		}
		w.WriteHeader(rec.Code)
		w.Write(body)
	}
}

func TestJunkWrappedResponseNeverReplacesTheStaple(t *testing.T) {
	e := newEnv(t, on)
	srv, tamper := tamperingResponder(t, e.r)
	e.s.opts.responderURL = srv.URL
	addr := e.wrapAndServe(e.leaf.Certificate)
	e.waitStapled(e.leaf)
	before, _, err := e.handshake(addr)
	if err != nil {
		t.Fatal(err)
	}
	junk := func(raw []byte) []byte {
		outer, basic := basicOf(t, raw)
		certs := &derNode{tag: cbasn1.SEQUENCE, children: []*derNode{octetString(t, 60_000)}}
		basic.children = append(basic.children, &derNode{tag: cbasn1.Tag(0).ContextSpecific().Constructed(), children: []*derNode{certs}})
		return rewrap(t, outer, basic)
	}
	tamper.Store(&junk)
	e.clock.Advance(time.Second) // a newer thisUpdate, so only the junk can refuse it
	st, err := e.s.Test(t.Context(), CertificateID(e.leaf.Cert.Raw))
	if err == nil {
		t.Fatalf("junk-wrapped response accepted: %+v", st)
	}
	if !errors.Is(err, ErrMalformedResponse) && !errors.Is(err, ErrResponseTooLarge) {
		t.Fatalf("refused for the wrong reason: %v", err)
	}
	after, _, err := e.handshake(addr)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Fatal("the staple changed after a junk-wrapped response")
	}
}

// paddedResponse signs a good response for f's leaf padded with a
// non-critical extension so that it is exactly size bytes.
func paddedResponse(t testing.TB, ca *responder.CA, leaf *responder.Leaf, now time.Time, size int) []byte {
	t.Helper()
	pad := size - 400
	// An ECDSA signature's length varies by a byte or two from one
	// signing to the next, so each try hits the size only by chance (about
	// one in three): ten tries missed 1 run in 50 or so; a hundred do not.
	for range 100 {
		der, err := ocsp.CreateResponse(ca.Cert, ca.Cert, ocsp.Response{
			Status: ocsp.Good, SerialNumber: leaf.Cert.SerialNumber,
			ThisUpdate: now.Add(-time.Minute), NextUpdate: now.Add(time.Hour),
			ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 1}, Value: bytes.Repeat([]byte{0}, pad)}},
		}, ca.Key)
		if err != nil {
			t.Fatal(err)
		}
		if len(der) == size {
			return der
		}
		pad += size - len(der) // ECDSA signatures vary by a byte or two: try again
	}
	t.Fatalf("could not pad a response to %d bytes", size)
	return nil
}

func TestLargestStapleCompletesTLS12And13(t *testing.T) {
	f := ocsptest.NewOCSPFixture(t)
	opts := ocspcheck.Options{Skew: 5 * time.Minute}
	tooBig := paddedResponse(t, f.CA, f.Leaf, f.Now, MaxResponseBytes+1)
	if _, err := ocspcheck.Verify(tooBig, f.Leaf.Cert, f.CA.Cert, f.Now, opts); !errors.Is(err, ErrResponseTooLarge) {
		t.Fatalf("a response of %d bytes: got %v, want ErrResponseTooLarge", len(tooBig), err)
	}

	e := newEnv(t, on)
	largest := paddedResponse(t, e.ca, e.leaf, e.clock.Now(), MaxResponseBytes)
	srv, tamper := tamperingResponder(t, e.r)
	e.s.opts.responderURL = srv.URL
	pad := func([]byte) []byte { return largest }
	tamper.Store(&pad)
	addr := e.wrapAndServe(e.leaf.Certificate)
	e.waitStapled(e.leaf)
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		staple, st, err := e.handshake(addr, func(c *tls.Config) { c.MinVersion, c.MaxVersion = v, v })
		if err != nil {
			t.Fatalf("%s handshake with a %d-byte staple: %v", tls.VersionName(v), len(largest), err)
		}
		if st.Version != v || !bytes.Equal(staple, largest) {
			t.Fatalf("%s: got version %x and a %d-byte staple, want the %d-byte one", tls.VersionName(v), st.Version, len(staple), len(largest))
		}
	}
}
