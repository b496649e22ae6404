package ocspfetch

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/staplerkit/ocsp/internal/ocspcheck"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
	"golang.org/x/crypto/ocsp"
)

// maxIssuerBytes caps an issuer certificate downloaded from an AIA URL.
const maxIssuerBytes = 64 << 10

// maxGETURL is the longest URL sent as an RFC 5019 GET; longer requests are
// POSTed (RFC 9919 2.1.1).
const maxGETURL = 255

// maxRedirects bounds redirects followed from a responder.
const maxRedirects = 3

// Fetch failures; errors.Is matches them through the wrapping (stapler
// re-exports them under the same names). A body over
// ocspcheck.MaxResponseBytes fails with ocspcheck.ErrResponseTooLarge.
var (
	// ErrHTTPStatus: the responder answered with an HTTP status other than 200.
	ErrHTTPStatus = errors.New("responder answered a non-200 HTTP status")
	// ErrContentType: the body is not labelled application/ocsp-response.
	ErrContentType = errors.New("responder answered a content type other than application/ocsp-response")
	// ErrNoResponderURL: the certificate has no http or https OCSP URL and
	// no override is set.
	ErrNoResponderURL = errors.New("no OCSP responder URL")
	// ErrNoIssuer: the issuer certificate could not be found.
	ErrNoIssuer = errors.New("issuer certificate not found")
	// ErrRedirect: the responder redirected to a non-HTTP URL or too often.
	ErrRedirect = errors.New("bad redirect from responder")
)

// NewHTTPClient is the client used when the application gives none: its own
// transport (so Close can drop its idle connections) and redirects only to
// http and https, at most maxRedirects.
func NewHTTPClient() *http.Client {
	t := ownTransport()
	t.MaxIdleConnsPerHost = 16
	return &http.Client{Transport: t, CheckRedirect: checkRedirect}
}

// ownTransport is a transport of the library's own: a clone of
// http.DefaultTransport (its proxy and timeouts), or, when the application
// replaced that with another RoundTripper (a tracing or mocking one), a
// transport with net/http's default settings. OCSP requests never go
// through the process-wide transport itself.
func ownTransport() *http.Transport {
	if t, ok := http.DefaultTransport.(*http.Transport); ok {
		return t.Clone()
	}
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          100,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: 1 * time.Second,
	}
}

func checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= maxRedirects {
		return fmt.Errorf("%w: more than %d redirects", ErrRedirect, maxRedirects)
	}
	if req.URL.Scheme != "http" && req.URL.Scheme != "https" {
		return fmt.Errorf("%w: to scheme %q", ErrRedirect, req.URL.Scheme)
	}
	return nil
}

// ResponderURL returns the first http or https OCSP URL of the leaf.
func ResponderURL(leaf *x509.Certificate) string {
	for _, u := range leaf.OCSPServer {
		if IsResponderURL(u) {
			return u
		}
	}
	return ""
}

// Resolve is the responder to ask about leaf: the override of the
// first of its AIA OCSP URLs that has one ("" when it disables fetching),
// else global when set, else its own.
func Resolve(leaf *x509.Certificate, global string, overrides map[string]string) string {
	for _, u := range leaf.OCSPServer {
		if to, ok := overrides[u]; ok {
			return to
		}
	}
	if global != "" {
		return global
	}
	return ResponderURL(leaf)
}

// Query asks the responder at base about leaf: GET when the URL fits
// in 255 bytes, POST otherwise. Only a 200 labelled
// application/ocsp-response of at most ocspcheck.MaxResponseBytes is returned. ctx
// bounds the whole exchange. (Fetcher.Ask adds the fallback from a
// refused GET to POST.)
func Query(ctx context.Context, client *http.Client, base string, leaf, issuer *x509.Certificate) ([]byte, string, error) {
	der, getURL, err := ocspRequest(base, leaf, issuer)
	if err != nil {
		return nil, "", err
	}
	method := http.MethodGet
	if len(getURL) > maxGETURL {
		method = http.MethodPost
	}
	body, err := sendRequest(ctx, client, method, base, getURL, der)
	return body, method, err
}

// ocspRequest builds the request about leaf (SHA-1 CertID, as RFC 5019
// asks) and the URL a GET of it would use.
func ocspRequest(base string, leaf, issuer *x509.Certificate) (der []byte, getURL string, err error) {
	der, err = ocsp.CreateRequest(leaf, issuer, &ocsp.RequestOptions{Hash: crypto.SHA1})
	if err != nil {
		return nil, "", fmt.Errorf("build request: %w", err)
	}
	return der, strings.TrimSuffix(base, "/") + "/" + url.QueryEscape(base64.StdEncoding.EncodeToString(der)), nil
}

// sendRequest sends der by method: GET at getURL, or POST at base.
func sendRequest(ctx context.Context, client *http.Client, method, base, getURL string, der []byte) ([]byte, error) {
	var req *http.Request
	var err error
	if method == http.MethodGet {
		req, err = http.NewRequestWithContext(ctx, http.MethodGet, getURL, nil)
	} else {
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, base, bytes.NewReader(der))
		if req != nil {
			req.Header.Set("Content-Type", "application/ocsp-request")
		}
	}
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Accept", "application/ocsp-response")
	return doCapped(client, req, "application/ocsp-response", ocspcheck.MaxResponseBytes)
}

// refusedMethod reports whether a request's result says the responder did
// not take the request as it was sent, so that the other method may work: a
// 4xx status, a body that is not an OCSP response (a wrong content type,
// or bytes that are not an OCSPResponse at all), or malformedRequest. A
// 5xx, a timeout, a connection refused or any other OCSP answer is the
// responder's trouble, not the method's.
func refusedMethod(body []byte, err error) bool {
	var code *StatusError
	switch {
	case errors.As(err, &code):
		return code.Code >= 400 && code.Code < 500
	case errors.Is(err, ErrContentType):
		return true
	case err != nil:
		return false
	}
	status, ok := outerStatus(body)
	return !ok || status == int(ocsp.Malformed)
}

// outerStatus reads the responseStatus of an OCSPResponse; ok is false
// when body is not one.
func outerStatus(body []byte) (status int, ok bool) {
	input := cryptobyte.String(body)
	var resp cryptobyte.String
	if !input.ReadASN1(&resp, cbasn1.SEQUENCE) || !input.Empty() || !resp.ReadASN1Enum(&status) {
		return 0, false
	}
	return status, true
}

// StatusError is a non-200 answer; it matches ErrHTTPStatus.
type StatusError struct {
	Code   int    // the HTTP status code
	Status string // the status line's text, as net/http gives it
}

func (e *StatusError) Error() string { return ErrHTTPStatus.Error() + ": " + e.Status }

// Unwrap returns ErrHTTPStatus.
func (e *StatusError) Unwrap() error { return ErrHTTPStatus }

// doCapped sends req and returns the body of a 200 answer, refusing other
// statuses, other content types (when contentType is set) and bodies over
// limit bytes.
func doCapped(client *http.Client, req *http.Request, contentType string, limit int) ([]byte, error) {
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		Drain(resp.Body, limit)
		return nil, &StatusError{Code: resp.StatusCode, Status: resp.Status}
	}
	if contentType != "" {
		got, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
		if got != contentType {
			Drain(resp.Body, limit)
			return nil, fmt.Errorf("%w: %q", ErrContentType, resp.Header.Get("Content-Type"))
		}
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, int64(limit)+1))
	if err != nil {
		return nil, fmt.Errorf("read body: %w", err)
	}
	if len(body) > limit {
		return nil, fmt.Errorf("%w of %d bytes", ocspcheck.ErrResponseTooLarge, limit)
	}
	return body, nil
}

// Drain reads and drops at most limit bytes of a body that is refused, so
// that a short error page does not cost the connection (the transport
// reuses a connection only once its body was read to the end); a longer
// one is cut off and its connection closed.
func Drain(body io.Reader, limit int) {
	io.Copy(io.Discard, io.LimitReader(body, int64(limit)))
}

// FetchIssuer downloads the leaf's issuer from its AIA caIssuers URLs (DER
// or PEM) and returns the first that signed the leaf.
func FetchIssuer(ctx context.Context, client *http.Client, leaf *x509.Certificate) (*x509.Certificate, error) {
	for _, u := range leaf.IssuingCertificateURL {
		p, err := url.Parse(u)
		if err != nil || (p.Scheme != "http" && p.Scheme != "https") {
			continue
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			continue
		}
		body, err := doCapped(client, req, "", maxIssuerBytes)
		if err != nil {
			continue
		}
		if block, _ := pem.Decode(body); block != nil {
			body = block.Bytes
		}
		cert, err := x509.ParseCertificate(body)
		if err == nil && leaf.CheckSignatureFrom(cert) == nil {
			return cert, nil
		}
	}
	return nil, ErrNoIssuer
}

// IsResponderURL reports whether u is an absolute http or https URL with a
// host.
func IsResponderURL(u string) bool {
	p, err := url.Parse(u)
	return err == nil && (p.Scheme == "http" || p.Scheme == "https") && p.Host != ""
}
