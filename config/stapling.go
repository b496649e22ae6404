package config

import (
	"math"
	"time"
)

// DefaultCacheTTL is the documented default of Stapling.CacheTTL, in seconds.
const DefaultCacheTTL = 3600

var ruleCacheTTL = intRule{"cache_ttl", 60, math.MaxInt32, "seconds"}

// Stapling is the per-certificate ocsp_stapling object (modelled on Apache
// APISIX's ocsp-stapling plugin): {"enabled": false, "skip_verify": false,
// "cache_ttl": 3600}.
//
// A zero CacheTTL means the documented default of 3600 seconds, so the zero
// Stapling is the documented default object.
type Stapling struct {
	// Enabled staples OCSP responses for this certificate. Default false.
	Enabled bool `json:"enabled"`
	// SkipVerify skips the response's signature and signer checks (like
	// nginx's "ssl_stapling_verify off"). A response for another certificate,
	// an expired one or an error status is never stapled, whatever this says.
	SkipVerify bool `json:"skip_verify"`
	// CacheTTL is how long a fetched response may be served, in seconds,
	// capped by the response's own nextUpdate: at least 60, default 3600.
	CacheTTL int `json:"cache_ttl"`
}

// DefaultStapling returns the documented default object (stapling off).
func DefaultStapling() Stapling { return Stapling{CacheTTL: DefaultCacheTTL} }

// WithDefaults returns s with a zero CacheTTL set to its default.
func (s Stapling) WithDefaults() Stapling {
	setDefault(&s.CacheTTL, DefaultCacheTTL)
	return s
}

// Validate reports a CacheTTL below 60 seconds as an invalid_schema *Error.
func (s Stapling) Validate() error {
	return ruleCacheTTL.check(s.WithDefaults().CacheTTL)
}

// CacheDuration is CacheTTL (or its default) as a duration.
func (s Stapling) CacheDuration() time.Duration {
	return seconds(s.CacheTTL, DefaultCacheTTL)
}

// DecodeStapling strictly decodes an ocsp_stapling object; absent fields take
// their defaults. Errors are invalid_schema *Error values naming the field.
func DecodeStapling(data []byte) (Stapling, error) {
	p, err := decodeStaplingPatch(data)
	if err != nil {
		return Stapling{}, err
	}
	return p.Apply(DefaultStapling())
}

// UnmarshalJSON decodes strictly, as DecodeStapling.
func (s *Stapling) UnmarshalJSON(data []byte) error {
	v, err := DecodeStapling(data)
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// StaplingUpdate is the body of a PUT or PATCH on a certificate resource:
// {"ocsp_stapling": {...}} changes the fields present, and
// {"ocsp_stapling": null} removes the object, which puts the certificate back
// to the defaults.
type StaplingUpdate struct {
	// Set reports that the body carried "ocsp_stapling" (an object or
	// null); a body without it changes nothing.
	Set bool
	// Remove is set by "ocsp_stapling": null.
	Remove bool
	// The fields present in the ocsp_stapling object; nil fields keep their
	// current value.
	Enabled    *bool
	SkipVerify *bool
	CacheTTL   *int
}

// DecodeStaplingUpdate strictly decodes a certificate resource body carrying
// "ocsp_stapling". A body without it changes nothing. Unknown fields, wrong
// types, cache_ttl below 60, trailing data, or a body that is not one JSON
// object are invalid_schema *Error values.
func DecodeStaplingUpdate(data []byte) (StaplingUpdate, error) {
	members, err := decodeObject(data, "certificate")
	if err != nil {
		return StaplingUpdate{}, err
	}
	var u StaplingUpdate
	for _, m := range members {
		if m.name != "ocsp_stapling" {
			return StaplingUpdate{}, schemaError("%s: unknown field", brief(m.name))
		}
		if isNull(m.value) {
			u = StaplingUpdate{Set: true, Remove: true}
			continue
		}
		if u, err = decodeStaplingPatch(m.value); err != nil {
			return StaplingUpdate{}, err
		}
		u.Set = true
	}
	return u, nil
}

func decodeStaplingPatch(data []byte) (StaplingUpdate, error) {
	members, err := decodeObject(data, "ocsp_stapling")
	if err != nil {
		return StaplingUpdate{}, err
	}
	var u StaplingUpdate
	for _, m := range members {
		switch m.name {
		case "enabled":
			v, err := decodeBool("ocsp_stapling.enabled", m.value)
			if err != nil {
				return StaplingUpdate{}, err
			}
			u.Enabled = &v
		case "skip_verify":
			v, err := decodeBool("ocsp_stapling.skip_verify", m.value)
			if err != nil {
				return StaplingUpdate{}, err
			}
			u.SkipVerify = &v
		case "cache_ttl":
			v, err := ruleCacheTTL.decode(m.value)
			if err != nil {
				return StaplingUpdate{}, err
			}
			u.CacheTTL = &v
		default:
			return StaplingUpdate{}, schemaError("ocsp_stapling.%s: unknown field", brief(m.name))
		}
	}
	return u, nil
}

// Apply returns current with the update merged in (PATCH semantics), the
// defaults when the update removes the object, or an invalid_schema *Error and
// current unchanged. For PUT semantics (absent fields take their defaults),
// apply the update to DefaultStapling().
func (u StaplingUpdate) Apply(current Stapling) (Stapling, error) {
	if u.Remove {
		return DefaultStapling(), nil
	}
	next := current.WithDefaults()
	if u.Enabled != nil {
		next.Enabled = *u.Enabled
	}
	if u.SkipVerify != nil {
		next.SkipVerify = *u.SkipVerify
	}
	if u.CacheTTL != nil {
		if err := ruleCacheTTL.check(*u.CacheTTL); err != nil {
			return current, err
		}
		next.CacheTTL = *u.CacheTTL
	}
	if err := next.Validate(); err != nil {
		return current, err
	}
	return next, nil
}
