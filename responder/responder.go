package responder

import (
	"bytes"
	"crypto"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ocsp"
)

// MaxRequestBytes caps the body of a POST request; a real request is about
// 100 bytes.
const MaxRequestBytes = 16 << 10

// Status is what the responder says of one certificate.
type Status struct {
	// Kind is ocsp.Good, ocsp.Revoked or ocsp.Unknown.
	Kind int
	// RevokedAt and Reason (an ocsp reason code, e.g.
	// ocsp.KeyCompromise) apply to ocsp.Revoked.
	RevokedAt time.Time
	Reason    int
}

// Good is the status of a certificate in good standing.
func Good() Status { return Status{Kind: ocsp.Good} }

// Revoked is the status of a certificate revoked at the given time for the
// given reason.
func Revoked(at time.Time, reason int) Status {
	return Status{Kind: ocsp.Revoked, RevokedAt: at, Reason: reason}
}

// Window sets thisUpdate and nextUpdate of the responses, relative to the
// responder's clock. The zero Window is the default of a new Responder:
// thisUpdate a minute ago, nextUpdate a day later.
type Window struct {
	// Backdate puts thisUpdate this far before now.
	Backdate time.Duration
	// Lifetime puts nextUpdate this far after thisUpdate.
	Lifetime time.Duration
	// NoNextUpdate leaves nextUpdate out, as openssl ocsp does by default
	// (RFC 6960 allows it; the stapler relies on such a response for an
	// hour after its thisUpdate by default).
	NoNextUpdate bool
}

// defaultWindow is what the zero Window stands for.
var defaultWindow = Window{Backdate: time.Minute, Lifetime: 24 * time.Hour}

// Request is what the responder was asked.
type Request struct {
	// Method is GET or POST.
	Method string
	// Serial is the serial number asked about (nil when the request did not parse).
	Serial *big.Int
}

// Responder is an RFC 6960 OCSP responder as an http.Handler: it answers
// POST (RFC 6960) and GET with the base64 request in the path (RFC 5019),
// signs with the CA key or a delegated responder certificate, and keeps a
// database of statuses that tests may change at any time. It is safe for
// concurrent use. Serials it was never told about are unknown.
type Responder struct {
	ca *CA

	mu          sync.Mutex
	delegate    *Signer
	statuses    map[string]Status
	window      Window
	now         func() time.Time
	fault       Fault
	serialFault map[string]Fault
	nextFaults  []Fault
	requests    []Request

	// Signers and issuers for the faults, made on first use.
	rogue, noEKU, expired, revoked *Signer
	otherCA                        *CA
}

// New returns a responder for certificates issued by ca, signing with the CA
// key and embedding no certificate (as a CA that answers for itself does).
func New(ca *CA) *Responder {
	return &Responder{
		ca:          ca,
		statuses:    map[string]Status{},
		window:      defaultWindow,
		now:         time.Now,
		serialFault: map[string]Fault{},
	}
}

// CA returns the certificate authority the responder answers for.
func (r *Responder) CA() *CA { return r.ca }

// UseDelegate signs responses with s, a delegated responder certificate,
// embedded in each response; nil goes back to signing with the CA key.
func (r *Responder) UseDelegate(s *Signer) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.delegate = s
}

// SetStatus records the status of the certificate with the given serial.
func (r *Responder) SetStatus(serial *big.Int, s Status) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.statuses[serial.String()] = s
}

// Forget removes a serial from the database: it is unknown from now on.
func (r *Responder) Forget(serial *big.Int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.statuses, serial.String())
}

// SetWindow sets thisUpdate and nextUpdate of the responses from now on;
// the zero Window restores the default.
func (r *Responder) SetWindow(w Window) {
	if w == (Window{}) {
		w = defaultWindow
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.window = w
}

// SetClock sets the responder's clock (time.Now by default), for tests that
// run on an injected clock.
func (r *Responder) SetClock(now func() time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.now = now
}

// SetFault makes every request misbehave as f, until changed; the zero Fault
// heals the responder.
func (r *Responder) SetFault(f Fault) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fault = f
}

// SetSerialFault makes requests for one serial misbehave as f; it takes
// precedence over SetFault. The zero Fault removes it.
func (r *Responder) SetSerialFault(serial *big.Int, f Fault) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if f == (Fault{}) {
		delete(r.serialFault, serial.String())
		return
	}
	r.serialFault[serial.String()] = f
}

// QueueFaults makes the next requests, one fault each in order, misbehave;
// they take precedence over the other faults.
func (r *Responder) QueueFaults(faults ...Fault) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.nextFaults = append(r.nextFaults, faults...)
}

// Requests returns the requests received so far, oldest first.
func (r *Responder) Requests() []Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Request(nil), r.requests...)
}

// RequestCount returns how many requests were received so far.
func (r *Responder) RequestCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.requests)
}

// CountFor returns how many requests asked about the given serial.
func (r *Responder) CountFor(serial *big.Int) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, req := range r.requests {
		if req.Serial != nil && req.Serial.Cmp(serial) == 0 {
			n++
		}
	}
	return n
}

// ResetRequests forgets the requests received so far.
func (r *Responder) ResetRequests() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests = nil
}

// ServeHTTP answers one OCSP request.
func (r *Responder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	var der []byte
	switch req.Method {
	case http.MethodPost:
		body, err := io.ReadAll(io.LimitReader(req.Body, MaxRequestBytes+1))
		if err != nil || len(body) > MaxRequestBytes {
			r.record(req.Method, nil)
			writeOCSP(w, ocsp.MalformedRequestErrorResponse, nil)
			return
		}
		der = body
	case http.MethodGet:
		der = decodeGETPath(req.URL.EscapedPath())
	default:
		w.Header().Set("Allow", "GET, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	ocspReq, err := ocsp.ParseRequest(der)
	if err != nil {
		r.record(req.Method, nil)
		writeOCSP(w, ocsp.MalformedRequestErrorResponse, nil)
		return
	}
	fault := r.record(req.Method, ocspReq.SerialNumber)
	r.answer(w, req, ocspReq, fault)
}

// decodeGETPath turns an RFC 5019 GET path into the DER request: the last
// path segments are the URL-escaped standard base64 of the request (clients
// differ on whether they escape "/", so all of the path is taken).
func decodeGETPath(escaped string) []byte {
	s, err := url.PathUnescape(strings.TrimPrefix(escaped, "/"))
	if err != nil {
		return nil
	}
	der, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil
	}
	return der
}

// record logs the request and picks the fault that applies to it.
func (r *Responder) record(method string, serial *big.Int) Fault {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests = append(r.requests, Request{Method: method, Serial: serial})
	if len(r.nextFaults) > 0 {
		f := r.nextFaults[0]
		r.nextFaults = r.nextFaults[1:]
		return f
	}
	if serial != nil {
		if f, ok := r.serialFault[serial.String()]; ok {
			return f
		}
	}
	return r.fault
}

func (r *Responder) answer(w http.ResponseWriter, req *http.Request, ocspReq *ocsp.Request, fault Fault) {
	switch fault.Kind {
	case FaultDelay:
		select {
		case <-time.After(fault.Delay):
		case <-req.Context().Done():
			return
		}
	case FaultHang:
		<-req.Context().Done()
		return
	case FaultHTTP500:
		http.Error(w, "internal server error", http.StatusInternalServerError)
		return
	case FaultHTTP503HTML:
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, "<html><body><h1>503 Service Unavailable</h1></body></html>")
		return
	case FaultGarbageBody:
		writeOCSP(w, []byte("<html>this is not DER</html>"), nil)
		return
	case FaultHugeBody:
		hugeBody(w)
		return
	case FaultEndlessBody:
		endless(w, req)
		return
	case FaultRedirectLoop:
		http.Redirect(w, req, req.URL.String(), http.StatusFound)
		return
	case FaultRedirectScheme:
		http.Redirect(w, req, "ftp://127.0.0.1/ocsp", http.StatusFound)
		return
	case FaultMalformedRequest:
		writeOCSP(w, ocsp.MalformedRequestErrorResponse, nil)
		return
	case FaultInternalError:
		writeOCSP(w, ocsp.InternalErrorErrorResponse, nil)
		return
	case FaultTryLater:
		writeOCSP(w, ocsp.TryLaterErrorResponse, nil)
		return
	case FaultSigRequired:
		writeOCSP(w, ocsp.SigRequredErrorResponse, nil)
		return
	case FaultUnauthorized:
		writeOCSP(w, ocsp.UnauthorizedErrorResponse, nil)
		return
	}
	if !r.knowsIssuer(ocspReq) {
		// RFC 5019 2.2.3: a responder that cannot answer for this issuer says unauthorized.
		writeOCSP(w, ocsp.UnauthorizedErrorResponse, nil)
		return
	}
	resp, tmpl, err := r.sign(ocspReq.SerialNumber, fault.Kind)
	if err != nil {
		writeOCSP(w, ocsp.InternalErrorErrorResponse, nil)
		return
	}
	switch fault.Kind {
	case FaultWrongContentType:
		w.Header().Set("Content-Type", "text/html")
		w.Write(resp)
	case FaultTruncatedBody:
		writeOCSP(w, resp[:len(resp)/2], nil)
	default:
		writeOCSP(w, resp, tmpl)
	}
}

// hugeBodyBytes is the size of FaultHugeBody's answer.
const hugeBodyBytes = 100 << 20

// hugeBody sends hugeBodyBytes, a chunk at a time, with its length declared.
func hugeBody(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/ocsp-response")
	w.Header().Set("Content-Length", strconv.Itoa(hugeBodyBytes))
	chunk := bytes.Repeat([]byte{0x30}, 64<<10)
	for sent := 0; sent < hugeBodyBytes; sent += len(chunk) {
		if _, err := w.Write(chunk); err != nil {
			return
		}
	}
}

// endless streams bytes until the client goes away.
func endless(w http.ResponseWriter, req *http.Request) {
	w.Header().Set("Content-Type", "application/ocsp-response")
	chunk := bytes.Repeat([]byte{0x30}, 32<<10)
	flusher, _ := w.(http.Flusher)
	for req.Context().Err() == nil {
		if _, err := w.Write(chunk); err != nil {
			return
		}
		if flusher != nil {
			flusher.Flush()
		}
	}
}

// knowsIssuer reports whether the request's issuer hashes are those of the CA.
func (r *Responder) knowsIssuer(req *ocsp.Request) bool {
	if !req.HashAlgorithm.Available() {
		return false
	}
	nameHash, keyHash, err := issuerHashes(r.ca.Cert, req.HashAlgorithm)
	return err == nil && bytes.Equal(nameHash, req.IssuerNameHash) && bytes.Equal(keyHash, req.IssuerKeyHash)
}

func issuerHashes(issuer *x509.Certificate, h crypto.Hash) (nameHash, keyHash []byte, err error) {
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(issuer.RawSubjectPublicKeyInfo, &spki); err != nil {
		return nil, nil, err
	}
	hn := h.New()
	hn.Write(issuer.RawSubject)
	hk := h.New()
	hk.Write(spki.PublicKey.RightAlign())
	return hn.Sum(nil), hk.Sum(nil), nil
}

// sign builds and signs the response for serial, bent as the fault asks.
// Respond returns the DER response the responder would answer about leaf
// now, as it would sign it over HTTP, without faults and without recording
// a request: for tests that need a response in hand (to staple by hand, to
// verify, to replay).
func (r *Responder) Respond(leaf *x509.Certificate) ([]byte, error) {
	der, _, err := r.sign(leaf.SerialNumber, NoFault)
	return der, err
}

func (r *Responder) sign(serial *big.Int, kind FaultKind) ([]byte, *ocsp.Response, error) {
	r.mu.Lock()
	status, known := r.statuses[serial.String()]
	window, now, delegate := r.window, r.now(), r.delegate
	if kind == FaultRevokedDelegate && r.revoked != nil && r.revoked.Cert.SerialNumber.Cmp(serial) == 0 {
		// Asked about the revoked delegate itself: the CA answers, as a
		// real one would once it has revoked its delegate.
		kind, delegate = NoFault, nil
	}
	r.mu.Unlock()
	if !known {
		status = Status{Kind: ocsp.Unknown}
	}

	thisUpdate := now.Add(-window.Backdate).UTC().Truncate(time.Second)
	tmpl := ocsp.Response{
		Status:       status.Kind,
		SerialNumber: serial,
		ThisUpdate:   thisUpdate,
		NextUpdate:   thisUpdate.Add(window.Lifetime),
	}
	if window.NoNextUpdate || kind == FaultNoNextUpdate {
		tmpl.NextUpdate = time.Time{}
	}
	if kind == FaultNoNextUpdate {
		tmpl.ThisUpdate = now.Add(-2 * time.Hour).UTC().Truncate(time.Second)
	}
	if status.Kind == ocsp.Revoked {
		tmpl.RevokedAt = status.RevokedAt.UTC().Truncate(time.Second)
		tmpl.RevocationReason = status.Reason
	}
	issuer, signer := r.ca.Cert, &Signer{Cert: r.ca.Cert, Key: r.ca.Key}
	embed := false
	if delegate != nil {
		signer, embed = delegate, true
	}
	var err error
	switch kind {
	case FaultUnauthorizedSigner:
		signer, err = r.faultSigner(&r.rogue, func() (*Signer, error) {
			rogue, err := NewCA(CAOptions{CommonName: "rogue OCSP responder"})
			if err != nil {
				return nil, err
			}
			return &Signer{Cert: rogue.Cert, Key: rogue.Key}, nil
		})
		embed = true
	case FaultDelegateWithoutEKU:
		signer, err = r.faultSigner(&r.noEKU, func() (*Signer, error) {
			return r.ca.NewDelegate(DelegateOptions{NoOCSPSigning: true})
		})
		embed = true
	case FaultExpiredDelegate:
		signer, err = r.faultSigner(&r.expired, func() (*Signer, error) {
			return r.ca.NewDelegate(DelegateOptions{NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-time.Hour)})
		})
		embed = true
	case FaultRevokedDelegate:
		signer, err = r.faultSigner(&r.revoked, func() (*Signer, error) {
			d, err := r.ca.NewDelegate(DelegateOptions{})
			if err == nil {
				r.statuses[d.Cert.SerialNumber.String()] = Revoked(now.Add(-time.Hour), ocsp.KeyCompromise)
			}
			return d, err
		})
		embed = true
	case FaultWrongSerial:
		tmpl.SerialNumber = new(big.Int).Add(serial, big.NewInt(1))
	case FaultWrongIssuerHash:
		r.mu.Lock()
		if r.otherCA == nil {
			r.otherCA, err = NewCA(CAOptions{CommonName: "another CA"})
		}
		if r.otherCA != nil {
			issuer = r.otherCA.Cert
		}
		r.mu.Unlock()
	case FaultThisUpdateInFuture:
		tmpl.ThisUpdate = now.Add(time.Hour).UTC().Truncate(time.Second)
		tmpl.NextUpdate = tmpl.ThisUpdate.Add(window.Lifetime)
	case FaultNextUpdateInPast:
		tmpl.ThisUpdate = now.Add(-2 * time.Hour).UTC().Truncate(time.Second)
		tmpl.NextUpdate = now.Add(-time.Hour).UTC().Truncate(time.Second)
	}
	if err != nil {
		return nil, nil, err
	}
	var embedded *x509.Certificate
	if embed {
		embedded = signer.Cert
	}
	der, err := encodeResponse(issuer, signer.Cert, signer.Key, embedded, &tmpl, now.Truncate(time.Second))
	if err != nil {
		return nil, nil, fmt.Errorf("responder: sign response for serial %s: %w", serial, err)
	}
	return der, &tmpl, nil
}

// faultSigner returns *slot, making it with mk on first use.
func (r *Responder) faultSigner(slot **Signer, mk func() (*Signer, error)) (*Signer, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if *slot == nil {
		s, err := mk()
		if err != nil {
			return nil, err
		}
		*slot = s
	}
	return *slot, nil
}

// writeOCSP sends an OCSP response with the RFC 5019 caching headers when
// the response's times are known.
func writeOCSP(w http.ResponseWriter, der []byte, tmpl *ocsp.Response) {
	h := w.Header()
	h.Set("Content-Type", "application/ocsp-response")
	h.Set("Content-Length", strconv.Itoa(len(der)))
	if tmpl != nil {
		h.Set("Last-Modified", tmpl.ThisUpdate.UTC().Format(http.TimeFormat))
		h.Set("ETag", fmt.Sprintf("%q", fmt.Sprintf("%x", sha1.Sum(der))))
		if !tmpl.NextUpdate.IsZero() {
			h.Set("Expires", tmpl.NextUpdate.UTC().Format(http.TimeFormat))
			maxAge := int(time.Until(tmpl.NextUpdate).Seconds())
			if maxAge < 0 {
				maxAge = 0
			}
			h.Set("Cache-Control", fmt.Sprintf("max-age=%d, public, no-transform, must-revalidate", maxAge))
		} else {
			h.Set("Cache-Control", "no-cache")
		}
	}
	w.WriteHeader(http.StatusOK)
	w.Write(der)
}
