package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strconv"
)

// member is one name/value pair of a JSON object, in body order.
type member struct {
	name  string
	value json.RawMessage
}

// decodeObject reads data as exactly one JSON object and returns its members.
// Anything else (another JSON type, invalid JSON, trailing data, a member
// named twice) is invalid_schema.
func decodeObject(data []byte, what string) ([]member, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, schemaError("%s: body is not valid JSON: %v", what, err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, schemaError("%s: body must be a JSON object", what)
	}
	var members []member
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, schemaError("%s: body is not valid JSON: %v", what, err)
		}
		name, _ := tok.(string)
		var value json.RawMessage
		if err := dec.Decode(&value); err != nil {
			return nil, schemaError("%s: body is not valid JSON: %v", what, err)
		}
		if seen[name] {
			return nil, schemaError("%s: field %q appears more than once", what, name)
		}
		seen[name] = true
		members = append(members, member{name, value})
	}
	if _, err := dec.Token(); err != nil {
		return nil, schemaError("%s: body is not valid JSON: %v", what, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, schemaError("%s: unexpected data after the JSON object", what)
	}
	return members, nil
}

// intRule is the valid range of an integer field.
type intRule struct {
	name     string
	min, max int
	unit     string // "seconds", or empty for a count
}

func (r intRule) check(v int) error {
	if v < r.min || v > r.max {
		return schemaError("%s: must be an integer from %d to %d%s, got %d", r.name, r.min, r.max, r.suffix(), v)
	}
	return nil
}

func (r intRule) suffix() string {
	if r.unit == "" {
		return ""
	}
	return " " + r.unit
}

// decodeInt reads a JSON integer (no fraction, no exponent, no quotes) in range.
func (r intRule) decode(raw json.RawMessage) (int, error) {
	s := string(bytes.TrimSpace(raw))
	if !isJSONInteger(s) {
		return 0, schemaError("%s: must be an integer from %d to %d%s, got %s", r.name, r.min, r.max, r.suffix(), brief(s))
	}
	v, err := strconv.Atoi(s)
	if err != nil {
		return 0, schemaError("%s: must be an integer from %d to %d%s, got %s", r.name, r.min, r.max, r.suffix(), brief(s))
	}
	return v, r.check(v)
}

func isJSONInteger(s string) bool {
	if s != "" && s[0] == '-' {
		s = s[1:]
	}
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// decodeBool reads a JSON true or false.
func decodeBool(name string, raw json.RawMessage) (bool, error) {
	switch string(bytes.TrimSpace(raw)) {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, schemaError("%s: must be a boolean, got %s", name, brief(string(bytes.TrimSpace(raw))))
}

func isNull(raw json.RawMessage) bool { return string(bytes.TrimSpace(raw)) == "null" }

// brief shortens a value quoted in an error message, so that a huge body
// does not make a huge message.
func brief(s string) string {
	const limit = 40
	if len(s) <= limit {
		return s
	}
	return s[:limit] + "..."
}
