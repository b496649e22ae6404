package config

import (
	"encoding/json"
	"time"
)

// Certificate statuses of the status object's cert_status field.
const (
	CertGood    = "GOOD"
	CertRevoked = "REVOKED"
	CertUnknown = "UNKNOWN"
)

// HTTPDateFormat is the date format of the status object, the HTTP date
// format of RFC 9110 (net/http.TimeFormat), always in GMT.
const HTTPDateFormat = "Mon, 02 Jan 2006 15:04:05 GMT"

// HTTPDate is a time that travels in JSON as an HTTP date string, e.g.
// "Wed, 22 Dec 2021 12:50:11 GMT", with second precision. Its zero value is
// omitted by the status object.
type HTTPDate struct{ time.Time }

// MarshalJSON encodes the time in UTC in HTTPDateFormat.
func (d HTTPDate) MarshalJSON() ([]byte, error) {
	return json.Marshal(d.UTC().Format(HTTPDateFormat))
}

// UnmarshalJSON decodes a string in HTTPDateFormat.
func (d *HTTPDate) UnmarshalJSON(data []byte) error {
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return schemaError("date: must be a string like %q", HTTPDateFormat)
	}
	t, err := time.Parse(HTTPDateFormat, s)
	if err != nil {
		return schemaError("date: %q is not in the format %q", brief(s), HTTPDateFormat)
	}
	d.Time = t
	return nil
}

// Date truncates t to the second, as the wire format carries it.
func Date(t time.Time) HTTPDate {
	if t.IsZero() {
		return HTTPDate{}
	}
	return HTTPDate{t.UTC().Truncate(time.Second)}
}

// Status is the OCSP status object: the latest status of a certificate
// (GET /v1/ocsp/status), or the status a test query just got (POST
// /v1/ocsp/test). Zero dates are omitted.
type Status struct {
	// ResponderURL is the responder this status came from.
	ResponderURL string `json:"responder_url"`
	// CertStatus is CertGood, CertRevoked or CertUnknown: the certificate's
	// status in the latest response. Empty, and left out of the JSON
	// object, while no response is held yet (OCSP off, or the first query
	// still to come): the spec's enumeration has no value for that.
	CertStatus string `json:"cert_status,omitempty"`
	// ProducedAt is when the responder signed the response.
	ProducedAt HTTPDate `json:"produced_at,omitzero"`
	// ThisUpdate is the most recent time the responder confirmed the status.
	ThisUpdate HTTPDate `json:"this_update,omitzero"`
	// NextUpdate is when newer status information is expected.
	NextUpdate HTTPDate `json:"next_update,omitzero"`
	// RevocationTime is when the certificate was revoked (revoked only).
	RevocationTime HTTPDate `json:"revocation_time,omitzero"`
}
