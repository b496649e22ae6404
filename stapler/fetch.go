package stapler

import (
	"github.com/staplerkit/ocsp/internal/ocspcheck"
	"github.com/staplerkit/ocsp/internal/ocspfetch"
)

// MaxResponseBytes is the largest OCSP response read from a responder,
// accepted from a store or stapled; a larger one fails with
// ErrResponseTooLarge. Real responses are 0.3 to 3 KiB (a few KiB more with
// an embedded delegate chain). The cap stays well below what TLS 1.3 can
// carry (a certificate entry's extensions, the staple among them, are
// limited to 65,535 bytes), so that a staple never breaks a handshake, and
// it bounds what a hostile responder can make the server hold.
const MaxResponseBytes = ocspcheck.MaxResponseBytes

// Fetch failures; errors.Is matches them through the wrapping.
var (
	// ErrHTTPStatus: the responder answered with an HTTP status other than 200.
	ErrHTTPStatus = ocspfetch.ErrHTTPStatus
	// ErrContentType: the body is not labelled application/ocsp-response.
	ErrContentType = ocspfetch.ErrContentType
	// ErrResponseTooLarge: the response is larger than MaxResponseBytes.
	ErrResponseTooLarge = ocspcheck.ErrResponseTooLarge
	// ErrNoResponderURL: the certificate has no http or https OCSP URL and
	// no override is set.
	ErrNoResponderURL = ocspfetch.ErrNoResponderURL
	// ErrNoIssuer: the issuer certificate could not be found.
	ErrNoIssuer = ocspfetch.ErrNoIssuer
	// ErrRedirect: the responder redirected to a non-HTTP URL or too often.
	ErrRedirect = ocspfetch.ErrRedirect
)
