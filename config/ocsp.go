package config

import (
	"encoding/json"
	"fmt"
	"time"
)

// Documented defaults of the cluster OCSP object.
const (
	DefaultQueryFrequency    = 3600 // seconds
	DefaultResponseTimeout   = 1    // seconds
	DefaultRecoveryFrequency = 60   // seconds
	DefaultRecoveryMaxTries  = 5
)

// MaxResponseTimeout is the largest response_timeout accepted, in seconds:
// an admin listener answering POST /v1/ocsp/test must allow a response
// this long in coming.
const MaxResponseTimeout = 60

var (
	ruleQueryFrequency    = intRule{"query_frequency", 60, 86400, "seconds"}
	ruleResponseTimeout   = intRule{"response_timeout", 1, MaxResponseTimeout, "seconds"}
	ruleRecoveryFrequency = intRule{"recovery_frequency", 60, 86400, "seconds"}
	ruleRecoveryMaxTries  = intRule{"recovery_max_tries", 1, 100, ""}
)

// OCSP is the cluster OCSP configuration object (GET /v1/ocsp returns it,
// PUT /v1/ocsp changes it). Durations travel as integer seconds, as
// documented; the methods QueryInterval, Timeout and RecoveryInterval give
// them as time.Duration.
//
// A zero integer field means the documented default (see WithDefaults), so
// OCSP{OCSPFunctionality: true} is a complete configuration.
type OCSP struct {
	// OCSPFunctionality turns OCSP stapling on or off for all certificates.
	// Default false.
	OCSPFunctionality bool `json:"ocsp_functionality"`
	// ResponderURL is the responder in use: the served certificate's AIA
	// OCSP URL, or the application's override. Read-only: reported by GET,
	// refused by PUT.
	ResponderURL string `json:"responder_url"`
	// QueryFrequency is the interval between regular queries for a
	// certificate's status, in seconds: 60 to 86400, default 3600.
	QueryFrequency int `json:"query_frequency"`
	// ResponseTimeout bounds one query to the responder, in seconds: 1 to
	// 60, default 1.
	ResponseTimeout int `json:"response_timeout"`
	// RecoveryFrequency is the interval between retries after a failed
	// query, in seconds: 60 to 86400, default 60.
	RecoveryFrequency int `json:"recovery_frequency"`
	// RecoveryMaxTries is how many retries follow a failed query before the
	// query counts as failed: 1 to 100, default 5.
	RecoveryMaxTries int `json:"recovery_max_tries"`
}

// DefaultOCSP returns the documented default configuration (OCSP off).
func DefaultOCSP() OCSP {
	return OCSP{}.WithDefaults()
}

// WithDefaults returns c with every zero integer field set to its documented
// default.
func (c OCSP) WithDefaults() OCSP {
	setDefault(&c.QueryFrequency, DefaultQueryFrequency)
	setDefault(&c.ResponseTimeout, DefaultResponseTimeout)
	setDefault(&c.RecoveryFrequency, DefaultRecoveryFrequency)
	setDefault(&c.RecoveryMaxTries, DefaultRecoveryMaxTries)
	return c
}

func setDefault(v *int, def int) {
	if *v == 0 {
		*v = def
	}
}

// Validate reports the first field out of its documented range as an
// invalid_schema *Error. Zero fields are checked as their defaults.
func (c OCSP) Validate() error {
	c = c.WithDefaults()
	for _, f := range []struct {
		rule intRule
		v    int
	}{
		{ruleQueryFrequency, c.QueryFrequency},
		{ruleResponseTimeout, c.ResponseTimeout},
		{ruleRecoveryFrequency, c.RecoveryFrequency},
		{ruleRecoveryMaxTries, c.RecoveryMaxTries},
	} {
		if err := f.rule.check(f.v); err != nil {
			return err
		}
	}
	return nil
}

// QueryInterval is QueryFrequency (or its default) as a duration.
func (c OCSP) QueryInterval() time.Duration {
	return seconds(c.QueryFrequency, DefaultQueryFrequency)
}

// Timeout is ResponseTimeout (or its default) as a duration.
func (c OCSP) Timeout() time.Duration {
	return seconds(c.ResponseTimeout, DefaultResponseTimeout)
}

// RecoveryInterval is RecoveryFrequency (or its default) as a duration.
func (c OCSP) RecoveryInterval() time.Duration {
	return seconds(c.RecoveryFrequency, DefaultRecoveryFrequency)
}

// MaxTries is RecoveryMaxTries, or its default when zero.
func (c OCSP) MaxTries() int {
	if c.RecoveryMaxTries == 0 {
		return DefaultRecoveryMaxTries
	}
	return c.RecoveryMaxTries
}

func seconds(v, def int) time.Duration {
	if v == 0 {
		v = def
	}
	return time.Duration(v) * time.Second
}

// DecodeOCSP strictly decodes a whole configuration object, as GET /v1/ocsp
// returns it. Absent fields take their defaults; responder_url is accepted
// here because a GET body carries it. Errors are invalid_schema *Error values.
func DecodeOCSP(data []byte) (OCSP, error) {
	members, err := decodeObject(data, "ocsp")
	if err != nil {
		return OCSP{}, err
	}
	var c OCSP
	for _, m := range members {
		if m.name == "responder_url" {
			if err := json.Unmarshal(m.value, &c.ResponderURL); err != nil || isNull(m.value) {
				return OCSP{}, schemaError("responder_url: must be a string")
			}
			continue
		}
		if err := decodeOCSPField(m, &c.OCSPFunctionality, &c.QueryFrequency, &c.ResponseTimeout, &c.RecoveryFrequency, &c.RecoveryMaxTries); err != nil {
			return OCSP{}, err
		}
	}
	return c.WithDefaults(), nil
}

// UnmarshalJSON decodes strictly, as DecodeOCSP.
func (c *OCSP) UnmarshalJSON(data []byte) error {
	v, err := DecodeOCSP(data)
	if err != nil {
		return err
	}
	*c = v
	return nil
}

// decodeOCSPField decodes one settable member of the OCSP object into the
// matching target.
func decodeOCSPField(m member, functionality *bool, query, timeout, recovery, tries *int) error {
	var err error
	switch m.name {
	case "ocsp_functionality":
		*functionality, err = decodeBool(m.name, m.value)
	case "query_frequency":
		*query, err = ruleQueryFrequency.decode(m.value)
	case "response_timeout":
		*timeout, err = ruleResponseTimeout.decode(m.value)
	case "recovery_frequency":
		*recovery, err = ruleRecoveryFrequency.decode(m.value)
	case "recovery_max_tries":
		*tries, err = ruleRecoveryMaxTries.decode(m.value)
	default:
		err = schemaError("%s: unknown field", brief(m.name))
	}
	return err
}

// OCSPUpdate is a partial configuration object, the body of PUT /v1/ocsp:
// only the fields present (non-nil) change. It marshals to just those fields.
type OCSPUpdate struct {
	OCSPFunctionality *bool `json:"ocsp_functionality,omitempty"`
	// ResponderURL is read-only in the documented object: an update may
	// repeat the current value (clients send back what GET gave them),
	// and one that sets another is rejected by Apply with invalid_schema.
	ResponderURL      *string `json:"responder_url,omitempty"`
	QueryFrequency    *int    `json:"query_frequency,omitempty"`
	ResponseTimeout   *int    `json:"response_timeout,omitempty"`
	RecoveryFrequency *int    `json:"recovery_frequency,omitempty"`
	RecoveryMaxTries  *int    `json:"recovery_max_tries,omitempty"`
}

var errResponderURLReadOnly = schemaError("responder_url: read-only; it comes from the certificate's AIA extension or the application's override (a body may repeat the current value, as GET /v1/ocsp gives it)")

// DecodeOCSPUpdate strictly decodes a PUT /v1/ocsp body. An unknown field, a
// value of the wrong type or out of range, a member named twice, trailing
// data, or a body that is not one JSON object is an invalid_schema *Error
// whose message names the field and the rule. responder_url, read-only,
// must be a string; Apply accepts it only when it is the current value.
func DecodeOCSPUpdate(data []byte) (OCSPUpdate, error) {
	members, err := decodeObject(data, "ocsp")
	if err != nil {
		return OCSPUpdate{}, err
	}
	var u OCSPUpdate
	var functionality bool
	var query, timeout, recovery, tries int
	for _, m := range members {
		if m.name == "responder_url" {
			var url string
			if err := json.Unmarshal(m.value, &url); err != nil || isNull(m.value) {
				return OCSPUpdate{}, schemaError("responder_url: must be a string (read-only: the current value)")
			}
			u.ResponderURL = &url
			continue
		}
		if err := decodeOCSPField(m, &functionality, &query, &timeout, &recovery, &tries); err != nil {
			return OCSPUpdate{}, err
		}
		switch m.name {
		case "ocsp_functionality":
			u.OCSPFunctionality = ptr(functionality)
		case "query_frequency":
			u.QueryFrequency = ptr(query)
		case "response_timeout":
			u.ResponseTimeout = ptr(timeout)
		case "recovery_frequency":
			u.RecoveryFrequency = ptr(recovery)
		case "recovery_max_tries":
			u.RecoveryMaxTries = ptr(tries)
		}
	}
	return u, nil
}

func ptr[T any](v T) *T { return &v }

// UnmarshalJSON decodes strictly, as DecodeOCSPUpdate.
func (u *OCSPUpdate) UnmarshalJSON(data []byte) error {
	v, err := DecodeOCSPUpdate(data)
	if err != nil {
		return err
	}
	*u = v
	return nil
}

// Apply returns current with the update's fields changed, or an
// invalid_schema *Error and current unchanged: it never half-applies.
// Zero fields of current are taken as their defaults. responder_url,
// read-only, is accepted only when it is current's.
func (u OCSPUpdate) Apply(current OCSP) (OCSP, error) {
	if u.ResponderURL != nil && *u.ResponderURL != current.ResponderURL {
		return current, errResponderURLReadOnly
	}
	next := current.WithDefaults()
	if u.OCSPFunctionality != nil {
		next.OCSPFunctionality = *u.OCSPFunctionality
	}
	for _, f := range []struct {
		rule intRule
		src  *int
		dst  *int
	}{
		{ruleQueryFrequency, u.QueryFrequency, &next.QueryFrequency},
		{ruleResponseTimeout, u.ResponseTimeout, &next.ResponseTimeout},
		{ruleRecoveryFrequency, u.RecoveryFrequency, &next.RecoveryFrequency},
		{ruleRecoveryMaxTries, u.RecoveryMaxTries, &next.RecoveryMaxTries},
	} {
		if f.src == nil {
			continue
		}
		if err := f.rule.check(*f.src); err != nil {
			return current, err
		}
		*f.dst = *f.src
	}
	if err := next.Validate(); err != nil {
		return current, fmt.Errorf("current configuration: %w", err)
	}
	return next, nil
}

// IsEmpty reports whether the update changes nothing.
func (u OCSPUpdate) IsEmpty() bool {
	return u == OCSPUpdate{}
}
