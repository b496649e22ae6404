package config

import (
	"encoding/json"
	"fmt"
)

// Error codes of the documented API. They travel in the "error_code" member
// of an error body.
const (
	// CodeInvalidSchema: a body with an unknown field, a value of the wrong
	// type or out of range, or one that is not a single JSON object.
	CodeInvalidSchema = "invalid_schema"
	// CodeNoResponderURL: OCSP was enabled, or a test was asked for, while no
	// responder URL is known for a certificate.
	CodeNoResponderURL = "no_responder_url"
	// CodeUnsupportedByCapability: the configuration cannot staple at all.
	CodeUnsupportedByCapability = "ocsp_unsupported_by_capability"
	// CodeInvalidOCSPResponse: the responder answered with something that is
	// not a valid OCSP response for the certificate.
	CodeInvalidOCSPResponse = "invalid_ocsp_response"
	// CodeTaskQueuedTooLong: a test query waited too long before it could run.
	CodeTaskQueuedTooLong = "task_queued_for_too_long"
)

// Error codes of the admin HTTP API beyond the documented ones.
const (
	// CodeUnauthorized: a request without the right API key (401).
	CodeUnauthorized = "unauthorized"
	// CodeNotFound: no such endpoint or certificate (404).
	CodeNotFound = "not_found"
	// CodeMethodNotAllowed: a method the resource does not take (405).
	CodeMethodNotAllowed = "method_not_allowed"
	// CodeUnsupportedMediaType: a body that is not application/json (415).
	CodeUnsupportedMediaType = "unsupported_media_type"
	// CodePayloadTooLarge: a body over the admin API's cap (413).
	CodePayloadTooLarge = "payload_too_large"
	// CodeInternalError: anything else that went wrong (500).
	CodeInternalError = "internal_error"
)

// Sentinels for errors.Is: an *Error matches the sentinel with the same code,
// whatever its message.
var (
	ErrInvalidSchema           = &Error{Code: CodeInvalidSchema}
	ErrNoResponderURL          = &Error{Code: CodeNoResponderURL}
	ErrUnsupportedByCapability = &Error{Code: CodeUnsupportedByCapability}
	ErrInvalidOCSPResponse     = &Error{Code: CodeInvalidOCSPResponse}
	ErrTaskQueuedTooLong       = &Error{Code: CodeTaskQueuedTooLong}
)

// Error is the documented error object, {"error_code": ..., "message": ...}.
// Match it with errors.As, or a code with errors.Is and one of the sentinels.
type Error struct {
	// Code is one of the Code constants.
	Code string
	// Message says what was wrong, naming the field and the rule broken.
	Message string
	// Err is the underlying cause, if any; it is not sent on the wire.
	Err error
}

// Error implements error.
func (e *Error) Error() string {
	if e.Message == "" {
		return e.Code
	}
	return e.Code + ": " + e.Message
}

// Unwrap returns the underlying cause.
func (e *Error) Unwrap() error { return e.Err }

// Is reports whether target is an *Error sentinel (no message) with the same code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Message == "" && t.Code == e.Code
}

type errorWire struct {
	Code    string `json:"error_code"`
	Message string `json:"message"`
}

// MarshalJSON encodes the documented error body.
func (e *Error) MarshalJSON() ([]byte, error) {
	return json.Marshal(errorWire{Code: e.Code, Message: e.Message})
}

// UnmarshalJSON decodes the documented error body.
func (e *Error) UnmarshalJSON(data []byte) error {
	var w errorWire
	if err := json.Unmarshal(data, &w); err != nil {
		return err
	}
	e.Code, e.Message = w.Code, w.Message
	return nil
}

func schemaError(format string, args ...any) *Error {
	return &Error{Code: CodeInvalidSchema, Message: fmt.Sprintf(format, args...)}
}
