package stapler

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
	"golang.org/x/crypto/ocsp"

	"github.com/staplerkit/ocsp/stapler/clock"
)

// crlPKI is a CA that publishes its CRL over HTTP on loopback and, when
// asked, answers OCSP, on a manual clock.
type crlPKI struct {
	t     testing.TB
	clock *clock.Manual
	ca    *x509.Certificate
	key   crypto.Signer
	srv   *httptest.Server
	url   string // the CRL's URL

	mu      sync.Mutex
	body    []byte // the CRL served; nil: 404
	status  int    // when set, the CRL's answer
	chunked bool   // no Content-Length
	hang    chan struct{}
	// gate, when set, holds each answer until it is closed, then serves
	// the CRL set then.
	gate      chan struct{}
	hits      int
	ocspState int // -1: the responder fails; -2: it hangs; else ocsp.Good or ocsp.Revoked
	ocspHits  int
}

func newCRLPKI(t testing.TB) *crlPKI {
	t.Helper()
	p := &crlPKI{t: t, clock: newFakeClock(), ocspState: -1}
	p.ca, p.key = p.newCA("CRL Test CA")
	mux := http.NewServeMux()
	mux.HandleFunc("/ca.crl", func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.hits++
		gate := p.gate
		p.mu.Unlock()
		if gate != nil {
			select {
			case <-gate:
			case <-r.Context().Done():
				return
			}
		}
		p.mu.Lock()
		body, status, chunked, hang := p.body, p.status, p.chunked, p.hang
		p.mu.Unlock()
		if hang != nil {
			select {
			case <-hang:
			case <-r.Context().Done():
			}
			return
		}
		if status != 0 || body == nil {
			w.WriteHeader(max(status, http.StatusNotFound))
			return
		}
		if !chunked {
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		}
		w.Header().Set("Content-Type", "application/pkix-crl")
		w.Write(body)
		if chunked {
			w.(http.Flusher).Flush()
		}
	})
	mux.HandleFunc("/ocsp/", func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.ocspHits++
		state := p.ocspState
		p.mu.Unlock()
		if state == -2 { // hangs
			<-r.Context().Done()
			return
		}
		if state < 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		now := p.clock.Now()
		serial, _ := new(big.Int).SetString(strings.Split(r.URL.Path, "/")[2], 10) // /ocsp/<serial>/<request>
		der, err := ocsp.CreateResponse(p.ca, p.ca, ocsp.Response{Status: state, SerialNumber: serial, ThisUpdate: now.Add(-time.Minute),
			NextUpdate: now.Add(time.Hour), RevokedAt: now.Add(-time.Hour), RevocationReason: ocsp.KeyCompromise}, p.key)
		if err != nil {
			t.Error(err)
		}
		w.Header().Set("Content-Type", "application/ocsp-response")
		w.Write(der)
	})
	p.srv = httptest.NewServer(mux)
	p.url = p.srv.URL + "/ca.crl"
	t.Cleanup(func() {
		p.mu.Lock()
		if p.hang != nil {
			close(p.hang)
			p.hang = nil
		}
		p.mu.Unlock()
		p.srv.Close()
	})
	return p
}

func (p *crlPKI) newCA(name string) (*x509.Certificate, crypto.Signer) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := p.clock.Now()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, NotBefore: now.Add(-time.Hour),
		NotAfter: now.Add(365 * 24 * time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		p.t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return cert, key
}

// leafOpts shape a leaf: its OCSP responder (none by default) and CRL
// distribution points (the PKI's by default).
type leafOpts struct {
	ocsp       bool
	points     []string
	mustStaple bool
}

// leaf issues a client certificate with serial.
func (p *crlPKI) leaf(serial int64, o leafOpts) *x509.Certificate {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := p.clock.Now()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "client " + strconv.FormatInt(serial, 10)},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(30 * 24 * time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		CRLDistributionPoints: o.points}
	if o.points == nil {
		tmpl.CRLDistributionPoints = []string{p.url}
	}
	if o.ocsp {
		tmpl.OCSPServer = []string{p.srv.URL + "/ocsp/" + strconv.FormatInt(serial, 10)}
	}
	if o.mustStaple {
		tmpl.ExtraExtensions = []pkix.Extension{{Id: oidTLSFeature, Value: []byte{0x30, 0x03, 0x02, 0x01, 0x05}}}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, key.Public(), p.key)
	if err != nil {
		p.t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return cert
}

// crl makes a CRL of number, current for a day, listing revoked (revoked
// an hour ago for keyCompromise); mod changes it before it is signed.
func (p *crlPKI) crl(number int64, revoked []int64, mod ...func(*x509.RevocationList)) []byte {
	now := p.clock.Now()
	rl := &x509.RevocationList{Number: big.NewInt(number), ThisUpdate: now.Add(-time.Minute), NextUpdate: now.Add(24 * time.Hour)}
	for _, s := range revoked {
		rl.RevokedCertificateEntries = append(rl.RevokedCertificateEntries, x509.RevocationListEntry{SerialNumber: big.NewInt(s), RevocationTime: now.Add(-time.Hour).Truncate(time.Second), ReasonCode: ocsp.KeyCompromise})
	}
	signer, key := p.ca, p.key
	for _, m := range mod {
		m(rl)
	}
	der, err := x509.CreateRevocationList(rand.Reader, rl, signer, key)
	if err != nil {
		p.t.Fatal(err)
	}
	return der
}

func (p *crlPKI) serve(der []byte) {
	p.mu.Lock()
	p.body, p.status = der, 0
	p.mu.Unlock()
}

func (p *crlPKI) setHits() (crl, ocspHits int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.hits, p.ocspHits
}

func (p *crlPKI) crlHits() int { n, _ := p.setHits(); return n }

// state is the connection state of an mTLS server whose client sent leaf
// (and no staple), verified up to the CA.
func (p *crlPKI) state(leaf *x509.Certificate) tls.ConnectionState {
	return tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf}, VerifiedChains: [][]*x509.Certificate{{leaf, p.ca}}}
}

// verifier is a Verifier on the PKI's clock that may fetch.
func (p *crlPKI) verifier(hard bool) *Verifier {
	return &Verifier{HardFail: hard, FetchTimeout: 10 * time.Second, Time: p.clock.Now}
}

// pointServer serves CRLs at several paths, each settable (nil: 404), or
// hanging until the test ends.
type pointServer struct {
	srv     *httptest.Server
	mu      sync.Mutex
	bodies  map[string][]byte
	hangs   map[string]bool
	hits    map[string]int
	release chan struct{}
}

func newPointServer(t testing.TB) *pointServer {
	s := &pointServer{bodies: map[string][]byte{}, hangs: map[string]bool{}, hits: map[string]int{}, release: make(chan struct{})}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.hits[r.URL.Path]++
		body, hang := s.bodies[r.URL.Path], s.hangs[r.URL.Path]
		s.mu.Unlock()
		if hang {
			select {
			case <-s.release:
			case <-r.Context().Done():
			}
			return
		}
		if body == nil {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Write(body)
	}))
	t.Cleanup(s.srv.Close)
	t.Cleanup(func() { close(s.release) }) // runs first: hanging handlers return
	return s
}

func (s *pointServer) url(path string) string { return s.srv.URL + path }

func (s *pointServer) serve(path string, der []byte) {
	s.mu.Lock()
	s.bodies[path] = der
	s.mu.Unlock()
}

func (s *pointServer) hang(path string) {
	s.mu.Lock()
	s.hangs[path] = true
	s.mu.Unlock()
}

// idpCAOnly is an issuingDistributionPoint with no name and
// onlyContainsCACerts: an authority revocation list (ARL), the CRL of the
// CA certificates the CA issued.
func idpCAOnly() pkix.Extension {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.Tag(2).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddUint8(0xff) })
	})
	return pkix.Extension{Id: asn1.ObjectIdentifier{2, 5, 29, 28}, Critical: true, Value: b.BytesOrPanic()}
}

// issueIntermediate issues, under p's CA, an intermediate CA certificate
// naming the CRL distribution points points, with its key.
func issueIntermediate(t testing.TB, p *crlPKI, serial int64, points []string) (*x509.Certificate, crypto.Signer) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := p.clock.Now()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "Intermediate " + strconv.FormatInt(serial, 10)},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(365 * 24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, CRLDistributionPoints: points}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, key.Public(), p.key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return cert, key
}
