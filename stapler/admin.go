package stapler

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/staplerkit/ocsp/config"
)

// MaxAdminBodyBytes caps the body of an admin request; the documented
// objects are a few hundred bytes.
const MaxAdminBodyBytes = 64 << 10

// HandlerOption configures the admin handler.
type HandlerOption func(*handlerOptions)

type handlerOptions struct {
	apiKey    string
	authorize func(http.Handler) http.Handler
	insecure  bool
}

// WithAPIKey requires every admin request to carry key in the X-API-KEY
// header, compared in constant time.
func WithAPIKey(key string) HandlerOption {
	return func(o *handlerOptions) { o.apiKey = key }
}

// WithAuthorization wraps the admin handler in the application's own
// authorization middleware instead of (or besides) an API key.
func WithAuthorization(middleware func(http.Handler) http.Handler) HandlerOption {
	return func(o *handlerOptions) { o.authorize = middleware }
}

// InsecureWithoutAuthentication allows a handler that anyone who can reach
// it may use to turn stapling off. For tests only.
func InsecureWithoutAuthentication() HandlerOption {
	return func(o *handlerOptions) { o.insecure = true }
}

// ErrNoAdminAuth: Handler was asked for without WithAPIKey,
// WithAuthorization or InsecureWithoutAuthentication.
var ErrNoAdminAuth = errors.New("stapler: admin handler needs WithAPIKey or WithAuthorization (or, in tests, InsecureWithoutAuthentication)")

// Handler returns the admin API, an http.Handler for the application's
// admin listener that mirrors the documented endpoints:
//
//	GET  /v1/ocsp                the configuration object
//	PUT  /v1/ocsp                a partial configuration object; 400 invalid_schema or no_responder_url
//	GET  /v1/ocsp/status         the status object (?id=ID, or the only certificate); a list when several and no id
//	POST /v1/ocsp/test           query the responder now (?id=ID); 500 no_responder_url or invalid_ocsp_response
//	GET  /v1/certificates        the managed certificates with their ocsp_stapling objects and status
//	GET, PUT, PATCH /v1/certificates/{id}   one certificate; the body is {"ocsp_stapling": {...}}:
//	                             PUT replaces the object (absent fields take the documented
//	                             defaults: enabled false, skip_verify false, cache_ttl 3600);
//	                             PATCH changes only the fields present;
//	                             {"ocsp_stapling": null} (PUT or PATCH) removes the object, which puts
//	                             the certificate back to the Stapler's defaults (WithDefaultStapling);
//	                             a body without "ocsp_stapling" ({}) changes nothing
//	DELETE /v1/certificates/{id} stop managing a certificate no longer served (Remove)
//
// Bodies are JSON in and out, capped at MaxAdminBodyBytes, decoded strictly
// (unknown fields are invalid_schema). A wrong method is 405 with Allow, an
// unknown certificate 404. Every request must pass WithAPIKey or
// WithAuthorization; a handler with neither is refused (ErrNoAdminAuth).
func (s *Stapler) Handler(opts ...HandlerOption) (http.Handler, error) {
	var o handlerOptions
	for _, opt := range opts {
		opt(&o)
	}
	if o.apiKey == "" && o.authorize == nil && !o.insecure {
		return nil, ErrNoAdminAuth
	}
	var h http.Handler = http.HandlerFunc(s.serveAdmin)
	if o.authorize != nil {
		h = o.authorize(h)
	}
	if o.apiKey != "" {
		h = requireAPIKey(o.apiKey, h)
	}
	return h, nil
}

func requireAPIKey(key string, next http.Handler) http.Handler {
	want := sha256.Sum256([]byte(key))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := sha256.Sum256([]byte(r.Header.Get("X-API-KEY")))
		if subtle.ConstantTimeCompare(want[:], got[:]) != 1 {
			writeError(w, &config.Error{Code: config.CodeUnauthorized, Message: "missing or wrong X-API-KEY", Status: http.StatusUnauthorized})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// certificateResource is one entry of /v1/certificates.
type certificateResource struct {
	ID           string            `json:"id"`
	SNIs         []string          `json:"snis"`
	Subject      string            `json:"subject"`
	Serial       string            `json:"serial"`
	OCSPStapling config.Stapling   `json:"ocsp_stapling"`
	Status       CertificateStatus `json:"status"`
}

func resourceOf(st CertificateStatus) certificateResource {
	return certificateResource{ID: st.ID, SNIs: st.SNIs, Subject: st.Subject, Serial: st.Serial, OCSPStapling: st.Stapling, Status: st}
}

func (s *Stapler) serveAdmin(w http.ResponseWriter, r *http.Request) {
	if r.URL.RawPath != "" { // an encoded '/' or the like: not a canonical path
		writeError(w, &config.Error{Code: config.CodeNotFound, Message: "no such endpoint: " + r.URL.EscapedPath(), Status: http.StatusNotFound})
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
		if id == "" && len(s.managedList()) != 1 {
			writeJSON(w, http.StatusOK, s.Status())
			return
		}
		st, err := s.StatusOf(id)
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, st)
	case path == "/v1/ocsp/test":
		if r.Method != http.MethodPost {
			methodNotAllowed(w, "POST")
			return
		}
		st, err := s.Test(r.Context(), r.URL.Query().Get("id"))
		if err != nil {
			writeError(w, err)
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
	case strings.HasPrefix(path, "/v1/certificates/") && !strings.Contains(strings.TrimPrefix(path, "/v1/certificates/"), "/"):
		s.serveCertificate(w, r, strings.TrimPrefix(path, "/v1/certificates/"))
	default:
		writeError(w, &config.Error{Code: config.CodeNotFound, Message: "no such endpoint: " + r.URL.Path, Status: http.StatusNotFound})
	}
}

func (s *Stapler) serveCertificate(w http.ResponseWriter, r *http.Request, id string) {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodPut, http.MethodPatch, http.MethodDelete:
	default: // a wrong method is 405 whether or not the certificate exists
		methodNotAllowed(w, "GET, HEAD, PUT, PATCH, DELETE")
		return
	}
	if _, err := s.lookup(id); err != nil || id == "" {
		writeError(w, fmt.Errorf("%w %q", ErrUnknownCertificate, id))
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

// readBody reads a JSON request body of at most MaxAdminBodyBytes.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			writeError(w, &config.Error{Code: config.CodeUnsupportedMediaType, Message: "the body must be application/json", Status: http.StatusUnsupportedMediaType})
			return nil, false
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxAdminBodyBytes))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			writeError(w, &config.Error{Code: config.CodePayloadTooLarge, Message: fmt.Sprintf("the body is over %d bytes", MaxAdminBodyBytes), Status: http.StatusRequestEntityTooLarge})
		} else {
			writeError(w, &config.Error{Code: config.CodeInvalidSchema, Message: "could not read the body"})
		}
		return nil, false
	}
	return body, true
}

func methodNotAllowed(w http.ResponseWriter, allow string) {
	w.Header().Set("Allow", allow)
	writeError(w, &config.Error{Code: config.CodeMethodNotAllowed, Message: "allowed: " + allow, Status: http.StatusMethodNotAllowed})
}

// writeError answers err as the documented error body: a *config.Error as
// it is, an unknown certificate as 404, anything else as 500.
func writeError(w http.ResponseWriter, err error) {
	var ce *config.Error
	switch {
	case errors.As(err, &ce):
	case errors.Is(err, ErrUnknownCertificate):
		ce = &config.Error{Code: config.CodeNotFound, Message: err.Error(), Status: http.StatusNotFound}
	default:
		ce = &config.Error{Code: config.CodeInternalError, Message: err.Error(), Status: http.StatusInternalServerError}
	}
	writeJSON(w, ce.HTTPStatus(), ce)
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
