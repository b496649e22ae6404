// Package admin serves a Stapler's HTTP admin API, the documented Redis
// Enterprise OCSP endpoints (/v1/ocsp, /v1/ocsp/status, /v1/ocsp/test) and
// per-certificate settings (/v1/certificates), as net/http/pprof serves
// what runtime/pprof measures. It uses only the Stapler's exported methods;
// errors become the documented {"error_code", "message"} bodies here, and
// nowhere in the stapler's Go API.
//
//	h, err := admin.NewHandler(s, admin.Options{APIKey: key})
//	if err != nil { ... }
//	go http.Serve(adminListener, h)
package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/staplerkit/ocsp/config"
	"github.com/staplerkit/ocsp/stapler"
)

// MaxBodyBytes caps the body of an admin request; the documented objects
// are a few hundred bytes. A larger body is answered 413 payload_too_large.
const MaxBodyBytes = 64 << 10

// Options says who may use the admin API. Its zero value allows no one:
// NewHandler refuses it with ErrNoAuth, since anyone who can reach the
// handler could otherwise turn stapling off.
type Options struct {
	// APIKey, when set, is required in the X-API-KEY header of every
	// request, compared in constant time; a request without it is answered
	// 401 unauthorized.
	APIKey string
	// Authorize, when set, wraps the handler in the application's own
	// authorization middleware, instead of or inside the API key check.
	Authorize func(http.Handler) http.Handler
	// InsecureWithoutAuthentication allows a handler with neither APIKey
	// nor Authorize, that anyone who can reach may use. For tests only.
	InsecureWithoutAuthentication bool
}

// ErrNoAuth is returned by NewHandler for Options with neither APIKey nor
// Authorize (nor, in tests, InsecureWithoutAuthentication).
var ErrNoAuth = errors.New("admin: the handler needs an APIKey or Authorize (or, in tests, InsecureWithoutAuthentication)")

// NewHandler returns the admin API of s, an http.Handler for the
// application's admin listener that mirrors the documented endpoints:
//
//	GET  /v1/ocsp                the configuration object
//	PUT  /v1/ocsp                a partial configuration object; 400 invalid_schema, or no_responder_url
//	                             when it turns OCSP on while no responder URL is known at all
//	GET  /v1/ocsp/status         the status object (?id=ID, or the only certificate); 400 invalid_schema
//	                             naming ?id= when several are managed and none is named (GET
//	                             /v1/certificates lists them); 404 not_found with none managed;
//	                             500 invalid_ocsp_response when the last query failed and no status is cached
//	POST /v1/ocsp/test           query the responder now (?id=ID, or the only certificate; 400 as GET
//	                             status when several and none named); 500 no_responder_url (also with no
//	                             certificate managed) or invalid_ocsp_response (also for an answer older
//	                             than the one held, which is not cached: never reported as the status)
//	GET  /v1/certificates        the managed certificates with their ocsp_stapling objects and status
//	GET, PUT, PATCH /v1/certificates/{id}   one certificate; the body is {"ocsp_stapling": {...}}:
//	                             PUT replaces the object (absent fields take the documented
//	                             defaults: enabled false, skip_verify false, cache_ttl 3600);
//	                             PATCH changes only the fields present;
//	                             {"ocsp_stapling": null} (PUT or PATCH) removes the object, which puts
//	                             the certificate back to the Stapler's defaults (WithDefaultStapling);
//	                             a body without "ocsp_stapling" ({}) changes nothing
//	DELETE /v1/certificates/{id} stop managing a certificate no longer served (Remove)
//	GET  /v1/certificates/{id}/ocsp_response   the DER response stapled now (application/ocsp-response),
//	                             or decoded (Accept: application/json, or ?format=json: cert_status,
//	                             produced_at, this_update, next_update, revocation_time and
//	                             reason, signer, expires, bytes); 404 not_found when there is none
//	PUT  /v1/certificates/{id}/ocsp_response   push a DER response (Stapler.Push), at most
//	                             stapler.MaxResponseBytes: verified as a fetched one; 400
//	                             invalid_ocsp_response when it does not verify (or says unknown),
//	                             409 invalid_ocsp_response when it is older than what is known
//
// Bodies are JSON in and out (but for ocsp_response), capped at MaxBodyBytes, decoded strictly
// (unknown fields are invalid_schema). A wrong method is 405 with Allow, an
// unknown certificate 404, any other failure 500 internal_error. Every
// request must pass the APIKey check or the Authorize middleware; Options
// with neither are refused (ErrNoAuth).
func NewHandler(s *stapler.Stapler, opts Options) (http.Handler, error) {
	if opts.APIKey == "" && opts.Authorize == nil && !opts.InsecureWithoutAuthentication {
		return nil, ErrNoAuth
	}
	var h http.Handler = &handler{s: s}
	if opts.Authorize != nil {
		h = opts.Authorize(h)
	}
	if opts.APIKey != "" {
		h = requireAPIKey(opts.APIKey, h)
	}
	return h, nil
}

// handler serves the admin API of one Stapler.
type handler struct {
	s *stapler.Stapler
}

func requireAPIKey(key string, next http.Handler) http.Handler {
	want := sha256.Sum256([]byte(key))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := sha256.Sum256([]byte(r.Header.Get("X-API-KEY")))
		if subtle.ConstantTimeCompare(want[:], got[:]) != 1 {
			writeError(w, &config.Error{Code: config.CodeUnauthorized, Message: "missing or wrong X-API-KEY"})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// certificateResource is one entry of /v1/certificates.
type certificateResource struct {
	ID           string                    `json:"id"`
	SNIs         []string                  `json:"snis"`
	Subject      string                    `json:"subject"`
	Serial       string                    `json:"serial"`
	OCSPStapling config.Stapling           `json:"ocsp_stapling"`
	Status       stapler.CertificateStatus `json:"status"`
}

func resourceOf(st stapler.CertificateStatus) certificateResource {
	return certificateResource{ID: st.ID, SNIs: st.SNIs, Subject: st.Subject, Serial: st.Serial, OCSPStapling: st.Stapling, Status: st}
}

// ServeHTTP answers one admin request.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s := h.s
	if r.URL.RawPath != "" { // an encoded '/' or the like: not a canonical path
		writeError(w, &config.Error{Code: config.CodeNotFound, Message: "no such endpoint: " + r.URL.EscapedPath()})
		return
	}
	path := r.URL.Path
	if !strings.HasPrefix(path, "/v1/certificates/") || path == "/v1/certificates/" {
		path = strings.TrimSuffix(path, "/") // a certificate's path has one form only
	}
	switch {
	case path == "/v1/ocsp":
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			writeJSON(w, http.StatusOK, s.Get())
		case http.MethodPut:
			body, ok := readBody(w, r)
			if !ok {
				return
			}
			u, err := config.DecodeOCSPUpdate(body)
			if err == nil {
				_, err = s.Update(u)
			}
			if err != nil {
				writeError(w, err)
				return
			}
			writeJSON(w, http.StatusOK, s.Get())
		default:
			methodNotAllowed(w, "GET, HEAD, PUT")
		}
	case path == "/v1/ocsp/status":
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			methodNotAllowed(w, "GET, HEAD")
			return
		}
		id := r.URL.Query().Get("id")
		var st stapler.CertificateStatus
		if id == "" {
			// The only certificate; with several, the request is
			// incomplete: one shape, the status object, always.
			list := s.Status()
			if len(list) > 1 {
				writeError(w, needID(len(list)))
				return
			}
			if len(list) == 0 {
				writeError(w, &config.Error{Code: config.CodeNotFound, Message: "no certificate is managed yet"})
				return
			}
			st = list[0]
		} else {
			var err error
			if st, err = s.StatusOf(id); err != nil {
				writeError(w, err)
				return
			}
		}
		if err := noStatusError(st); err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, st)
	case path == "/v1/ocsp/test":
		if r.Method != http.MethodPost {
			methodNotAllowed(w, "POST")
			return
		}
		id := r.URL.Query().Get("id")
		if n := len(s.Status()); id == "" && n > 1 {
			writeError(w, needID(n))
			return
		}
		st, err := s.Test(r.Context(), id)
		if err != nil {
			writeError(w, testError(r.Context(), st, err))
			return
		}
		writeJSON(w, http.StatusOK, st)
	case path == "/v1/certificates":
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			methodNotAllowed(w, "GET, HEAD")
			return
		}
		list := []certificateResource{}
		for _, st := range s.Status() {
			list = append(list, resourceOf(st))
		}
		writeJSON(w, http.StatusOK, list)
	case strings.HasPrefix(path, "/v1/certificates/") && strings.HasSuffix(path, "/"+responseResource) &&
		!strings.Contains(strings.TrimSuffix(strings.TrimPrefix(path, "/v1/certificates/"), "/"+responseResource), "/"):
		h.serveResponse(w, r, strings.TrimSuffix(strings.TrimPrefix(path, "/v1/certificates/"), "/"+responseResource))
	case strings.HasPrefix(path, "/v1/certificates/") && !strings.Contains(strings.TrimPrefix(path, "/v1/certificates/"), "/"):
		h.serveCertificate(w, r, strings.TrimPrefix(path, "/v1/certificates/"))
	default:
		writeError(w, &config.Error{Code: config.CodeNotFound, Message: "no such endpoint: " + r.URL.Path})
	}
}

func (h *handler) serveCertificate(w http.ResponseWriter, r *http.Request, id string) {
	s := h.s
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodPut, http.MethodPatch, http.MethodDelete:
	default: // a wrong method is 405 whether or not the certificate exists
		methodNotAllowed(w, "GET, HEAD, PUT, PATCH, DELETE")
		return
	}
	if _, err := s.StatusOf(id); err != nil || id == "" {
		writeError(w, fmt.Errorf("%w %q", stapler.ErrUnknownCertificate, id))
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
	case http.MethodDelete:
		if err := s.Remove(id); err != nil {
			writeError(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
		return
	case http.MethodPut, http.MethodPatch:
		body, ok := readBody(w, r)
		if !ok {
			return
		}
		u, err := config.DecodeStaplingUpdate(body)
		switch {
		case err != nil, !u.Set: // a body without ocsp_stapling changes nothing
		case r.Method == http.MethodPut && !u.Remove:
			// Replace: the fields absent take their documented defaults.
			var st config.Stapling
			if st, err = u.Apply(config.DefaultStapling()); err == nil {
				err = s.SetStapling(id, st)
			}
		default: // PATCH merges; null (PUT or PATCH) restores the Stapler's defaults
			_, err = s.UpdateStapling(id, u)
		}
		if err != nil {
			writeError(w, err)
			return
		}
	default:
		methodNotAllowed(w, "GET, HEAD, PUT, PATCH, DELETE")
		return
	}
	st, err := s.StatusOf(id)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, resourceOf(st))
}

// needID is the answer to a request that names no certificate where
// several are managed: 400, saying what to send.
func needID(n int) error {
	return &config.Error{Code: config.CodeInvalidSchema, Message: fmt.Sprintf("%d certificates are managed: name one with ?id= (GET /v1/certificates lists them, with their status)", n)}
}

// responseResource is the last element of a certificate's staple path.
const responseResource = "ocsp_response"

// serveResponse serves a certificate's staple: GET answers the DER
// response stapled now (404 when there is none), PUT takes one pushed by
// a sidecar or a deploy job (Stapler.Push).
func (h *handler) serveResponse(w http.ResponseWriter, r *http.Request, id string) {
	s := h.s
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodPut:
	default:
		methodNotAllowed(w, "GET, HEAD, PUT")
		return
	}
	if _, err := s.StatusOf(id); err != nil || id == "" {
		writeError(w, fmt.Errorf("%w %q", stapler.ErrUnknownCertificate, id))
		return
	}
	if r.Method != http.MethodPut {
		der, expires, err := s.Staple(id)
		if err != nil {
			writeError(w, &config.Error{Code: config.CodeNotFound, Message: err.Error()})
			return
		}
		if wantsJSON(r) {
			st, _ := s.StatusOf(id)
			writeJSON(w, http.StatusOK, decodeStaple(der, st.Serial, expires))
			return
		}
		w.Header().Set("Content-Type", ocspResponseType)
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Expires", expires.UTC().Format(http.TimeFormat))
		w.Write(der)
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != ocspResponseType {
			writeError(w, &config.Error{Code: config.CodeUnsupportedMediaType, Message: "the body must be " + ocspResponseType + " (DER)"})
			return
		}
	}
	der, ok := readLimited(w, r, stapler.MaxResponseBytes)
	if !ok {
		return
	}
	st, err := s.Push(r.Context(), id, der)
	switch {
	case errors.Is(err, stapler.ErrOlderResponse):
		writeError(w, &statusError{http.StatusConflict, &config.Error{Code: config.CodeInvalidOCSPResponse, Message: err.Error(), Err: err}})
		return
	case errors.Is(err, stapler.ErrClosed), errors.Is(err, stapler.ErrUnknownCertificate), errors.Is(err, context.Canceled):
		writeError(w, err)
		return
	case err != nil:
		writeError(w, &statusError{http.StatusBadRequest, &config.Error{Code: config.CodeInvalidOCSPResponse, Message: err.Error(), Err: err}})
		return
	}
	writeJSON(w, http.StatusOK, resourceOf(st))
}

// wantsJSON reports whether a GET of a staple asks for it decoded:
// ?format=json, or an Accept header that prefers application/json (by its
// q-value) to application/ocsp-response (named, or through application/*
// or */*). Without an Accept header, DER.
func wantsJSON(r *http.Request) bool {
	if r.URL.Query().Get("format") == "json" {
		return true
	}
	accept := r.Header.Get("Accept")
	if strings.TrimSpace(accept) == "" {
		return false
	}
	q := map[string]float64{}
	for _, part := range strings.Split(accept, ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		weight := 1.0
		if v, ok := params["q"]; ok {
			if weight, err = strconv.ParseFloat(v, 64); err != nil || weight < 0 || weight > 1 {
				continue
			}
		}
		if _, seen := q[mt]; !seen {
			q[mt] = weight
		}
	}
	weight := func(mt string) float64 {
		for _, r := range []string{mt, mt[:strings.Index(mt, "/")] + "/*", "*/*"} {
			if w, ok := q[r]; ok {
				return w
			}
		}
		return 0
	}
	_, jsonNamed := q["application/json"]
	return jsonNamed && weight("application/json") > 0 && weight("application/json") > weight(ocspResponseType)
}

// stapleView is a staple decoded for an operator, as HAProxy's "show ssl
// ocsp-response" shows one.
type stapleView struct {
	CertStatus       string          `json:"cert_status"`
	ProducedAt       config.HTTPDate `json:"produced_at,omitzero"`
	ThisUpdate       config.HTTPDate `json:"this_update,omitzero"`
	NextUpdate       config.HTTPDate `json:"next_update,omitzero"`
	RevocationTime   config.HTTPDate `json:"revocation_time,omitzero"`
	RevocationReason int             `json:"revocation_reason,omitempty"`
	// Signer is the delegated responder's subject, or "issuer".
	Signer string `json:"signer"`
	// Expires is when the staple stops being served unless refreshed.
	Expires config.HTTPDate `json:"expires"`
	Bytes   int             `json:"bytes"`
}

// decodeStaple decodes der, a staple the Stapler verified, for the
// certificate with the given serial (hex): a response may carry answers
// about other certificates too.
func decodeStaple(der []byte, serialHex string, expires time.Time) stapleView {
	v := stapleView{Expires: config.Date(expires), Bytes: len(der), Signer: "issuer"}
	serial, ok := new(big.Int).SetString(serialHex, 16)
	if !ok {
		v.CertStatus = "undecodable: no serial"
		return v
	}
	resp, err := ocsp.ParseResponseForCert(der, &x509.Certificate{SerialNumber: serial}, nil)
	if err != nil {
		v.CertStatus = "undecodable: " + err.Error()
		return v
	}
	v.CertStatus = map[int]string{ocsp.Good: config.CertGood, ocsp.Revoked: config.CertRevoked}[resp.Status]
	if v.CertStatus == "" {
		v.CertStatus = config.CertUnknown
	}
	v.ProducedAt, v.ThisUpdate, v.NextUpdate = config.Date(resp.ProducedAt), config.Date(resp.ThisUpdate), config.Date(resp.NextUpdate)
	if resp.Status == ocsp.Revoked {
		v.RevocationTime, v.RevocationReason = config.Date(resp.RevokedAt), resp.RevocationReason
	}
	if resp.Certificate != nil {
		v.Signer = resp.Certificate.Subject.String()
	}
	return v
}

// ocspResponseType is the media type of a DER OCSP response.
const ocspResponseType = "application/ocsp-response"

// readBody reads a JSON request body of at most MaxBodyBytes.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			writeError(w, &config.Error{Code: config.CodeUnsupportedMediaType, Message: "the body must be application/json"})
			return nil, false
		}
	}
	return readLimited(w, r, MaxBodyBytes)
}

// readLimited reads a request body of at most limit bytes.
func readLimited(w http.ResponseWriter, r *http.Request, limit int) ([]byte, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(limit)))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			writeError(w, &config.Error{Code: config.CodePayloadTooLarge, Message: fmt.Sprintf("the body is over %d bytes", limit)})
		} else {
			writeError(w, &config.Error{Code: config.CodeInvalidSchema, Message: "could not read the body"})
		}
		return nil, false
	}
	return body, true
}

func methodNotAllowed(w http.ResponseWriter, allow string) {
	w.Header().Set("Allow", allow)
	writeError(w, &config.Error{Code: config.CodeMethodNotAllowed, Message: "allowed: " + allow})
}

// noStatusError is the documented error of GET /v1/ocsp/status for one
// certificate whose last query failed with no status cached:
// invalid_ocsp_response (500), as the documented API answers, rather than
// a status object whose cert_status is none of GOOD, REVOKED, UNKNOWN.
// A certificate not queried yet, with no error, is answered as it stands.
func noStatusError(st stapler.CertificateStatus) error {
	if st.CertStatus != "" || st.LastError == "" {
		return nil
	}
	return &config.Error{Code: config.CodeInvalidOCSPResponse, Message: fmt.Sprintf("certificate %s: no status cached; the last query failed: %s", st.ID, st.LastError)}
}

// testError is the documented error of a failed POST /v1/ocsp/test:
// no_responder_url for a certificate without a responder, and
// invalid_ocsp_response for a query that failed, both 500. An unknown
// certificate, a closed Stapler and a request given up are left to
// writeError.
func testError(ctx context.Context, st stapler.CertificateStatus, err error) error {
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil:
		return err
	case isQueryError(err):
	case errors.Is(err, stapler.ErrUnknownCertificate), errors.Is(err, stapler.ErrClosed):
		return err
	case errors.Is(err, stapler.ErrNoResponderURL):
		// 500 here, where PUT /v1/ocsp answers no_responder_url with 400.
		msg := fmt.Sprintf("certificate %s has no OCSP responder URL", st.ID)
		if st.ID == "" { // no certificate managed yet
			msg = "no OCSP responder URL is known: no certificate is managed"
		}
		return &statusError{http.StatusInternalServerError, &config.Error{Code: config.CodeNoResponderURL, Message: msg, Err: err}}
	}
	return &config.Error{Code: config.CodeInvalidOCSPResponse, Message: err.Error(), Err: err}
}

// isQueryError reports whether err is the failure of a query (which names
// its responder), rather than the refusal to query at all.
func isQueryError(err error) bool {
	var fe *stapler.FetchError
	return errors.As(err, &fe)
}

// statusError is a documented error body answered with a status other than
// its code's usual one (statusOf).
type statusError struct {
	status int
	body   *config.Error
}

func (e *statusError) Error() string { return e.body.Error() }
func (e *statusError) Unwrap() error { return e.body }

// statusOf is the HTTP status the admin API answers an error code with: as
// the documented API does (400 for invalid_schema and no_responder_url, as
// PUT /v1/ocsp answers them; 406 for ocsp_unsupported_by_capability; 500
// for the rest of the documented codes), and the usual status for the
// admin API's own codes.
func statusOf(code string) int {
	switch code {
	case config.CodeInvalidSchema, config.CodeNoResponderURL:
		return http.StatusBadRequest
	case config.CodeUnsupportedByCapability:
		return http.StatusNotAcceptable
	case config.CodeUnauthorized:
		return http.StatusUnauthorized
	case config.CodeNotFound:
		return http.StatusNotFound
	case config.CodeMethodNotAllowed:
		return http.StatusMethodNotAllowed
	case config.CodePayloadTooLarge:
		return http.StatusRequestEntityTooLarge
	case config.CodeUnsupportedMediaType:
		return http.StatusUnsupportedMediaType
	}
	return http.StatusInternalServerError
}

// writeError answers err as the documented error body: a *statusError as
// it says, a *config.Error with its code's status, an unknown certificate
// as 404 not_found, anything else as 500 internal_error.
func writeError(w http.ResponseWriter, err error) {
	var se *statusError
	if errors.As(err, &se) {
		writeJSON(w, se.status, se.body)
		return
	}
	var ce *config.Error
	switch {
	case errors.As(err, &ce):
	case errors.Is(err, stapler.ErrUnknownCertificate):
		ce = &config.Error{Code: config.CodeNotFound, Message: err.Error()}
	default:
		ce = &config.Error{Code: config.CodeInternalError, Message: err.Error()}
	}
	writeJSON(w, statusOf(ce.Code), ce)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.MarshalIndent(v, "", "    ")
	if err != nil {
		status, body = http.StatusInternalServerError, []byte(`{"error_code": "internal_error", "message": "encoding the answer failed"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(append(body, '\n'))
}
