package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

func golden(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSpace(b)
}

func indent(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "    ")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestOCSPRoundTripsDocumentedGETBody(t *testing.T) {
	body := golden(t, "ocsp_get.json")
	c, err := DecodeOCSP(body)
	if err != nil {
		t.Fatal(err)
	}
	want := OCSP{true, "http://responder.ocsp.url.com", 3800, 2, 80, 20}
	if c != want {
		t.Fatalf("decoded %+v, want %+v", c, want)
	}
	if got := indent(t, c); !bytes.Equal(got, body) {
		t.Fatalf("re-encoded:\n%s\nwant:\n%s", got, body)
	}
	if c.QueryInterval() != 3800*time.Second || c.Timeout() != 2*time.Second || c.RecoveryInterval() != 80*time.Second || c.MaxTries() != 20 {
		t.Fatalf("accessors wrong: %v %v %v %v", c.QueryInterval(), c.Timeout(), c.RecoveryInterval(), c.MaxTries())
	}
}

func TestOCSPUpdateRoundTripsDocumentedPUTBody(t *testing.T) {
	body := golden(t, "ocsp_put.json")
	u, err := DecodeOCSPUpdate(body)
	if err != nil {
		t.Fatal(err)
	}
	if got := indent(t, u); !bytes.Equal(got, body) {
		t.Fatalf("re-encoded:\n%s\nwant:\n%s", got, body)
	}
	next, err := u.Apply(DefaultOCSP())
	if err != nil {
		t.Fatal(err)
	}
	if want := (OCSP{true, "", 3800, 2, 80, 20}); next != want {
		t.Fatalf("applied %+v, want %+v", next, want)
	}
}

func TestStatusRoundTripsDocumentedBody(t *testing.T) {
	body := golden(t, "status.json")
	var s Status
	if err := json.Unmarshal(body, &s); err != nil {
		t.Fatal(err)
	}
	if s.CertStatus != CertRevoked || !s.RevocationTime.Equal(time.Date(2021, 12, 22, 12, 50, 4, 0, time.UTC)) {
		t.Fatalf("decoded %+v", s)
	}
	if got := indent(t, s); !bytes.Equal(got, body) {
		t.Fatalf("re-encoded:\n%s\nwant:\n%s", got, body)
	}
}

func TestStatusOmitsRevocationTimeWhenGood(t *testing.T) {
	s := Status{ResponderURL: "http://r", CertStatus: CertGood, ThisUpdate: Date(time.Date(2021, 12, 22, 12, 50, 11, 500, time.FixedZone("x", 3600)))}
	got, _ := json.Marshal(s)
	want := `{"responder_url":"http://r","cert_status":"GOOD","this_update":"Wed, 22 Dec 2021 11:50:11 GMT"}`
	if string(got) != want {
		t.Fatalf("got %s, want %s", got, want)
	}
}

func TestStaplingDefaultsMatchDocumentedObject(t *testing.T) {
	body := golden(t, "stapling.json")
	if got := indent(t, DefaultStapling()); !bytes.Equal(got, body) {
		t.Fatalf("got:\n%s\nwant:\n%s", got, body)
	}
	s, err := DecodeStapling([]byte(`{"enabled": true}`))
	if err != nil {
		t.Fatal(err)
	}
	if s != (Stapling{Enabled: true, CacheTTL: 3600}) {
		t.Fatalf("got %+v", s)
	}
	if (Stapling{}).CacheDuration() != time.Hour {
		t.Fatal("zero CacheTTL must mean one hour")
	}
}

func TestErrorBody(t *testing.T) {
	body := golden(t, "error.json")
	_, err := DecodeOCSPUpdate([]byte(`{"query_frequency": 10}`))
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("not an *Error: %v", err)
	}
	if got := indent(t, e); !bytes.Equal(got, body) {
		t.Fatalf("got:\n%s\nwant:\n%s", got, body)
	}
	if !errors.Is(err, ErrInvalidSchema) || errors.Is(err, ErrNoResponderURL) {
		t.Fatal("matching wrong")
	}
}

func TestInvalidOCSPUpdateBodies(t *testing.T) {
	for _, tc := range []struct{ body, message string }{
		{`{"responder_url": 1}`, "responder_url: must be a string"},
		{`{"responder_url": null}`, "responder_url: must be a string"},
		{`{"bogus": 1}`, "bogus: unknown field"},
		{`{"ocsp_functionality": "true"}`, `ocsp_functionality: must be a boolean, got "true"`},
		{`{"ocsp_functionality": 1}`, "ocsp_functionality: must be a boolean, got 1"},
		{`{"ocsp_functionality": null}`, "ocsp_functionality: must be a boolean, got null"},
		{`{"query_frequency": 59}`, "query_frequency: must be an integer from 60 to 86400 seconds, got 59"},
		{`{"query_frequency": 86401}`, "query_frequency: must be an integer from 60 to 86400 seconds, got 86401"},
		{`{"query_frequency": 60.5}`, "query_frequency: must be an integer from 60 to 86400 seconds, got 60.5"},
		{`{"query_frequency": 6e1}`, "query_frequency: must be an integer from 60 to 86400 seconds, got 6e1"},
		{`{"query_frequency": "60"}`, `query_frequency: must be an integer from 60 to 86400 seconds, got "60"`},
		{`{"query_frequency": 99999999999999999999999}`, "query_frequency: must be an integer from 60 to 86400 seconds, got 99999999999999999999999"},
		{`{"response_timeout": 0}`, "response_timeout: must be an integer from 1 to 60 seconds, got 0"},
		{`{"response_timeout": 61}`, "response_timeout: must be an integer from 1 to 60 seconds, got 61"},
		{`{"recovery_frequency": -60}`, "recovery_frequency: must be an integer from 60 to 86400 seconds, got -60"},
		{`{"recovery_max_tries": 0}`, "recovery_max_tries: must be an integer from 1 to 100, got 0"},
		{`{"recovery_max_tries": 101}`, "recovery_max_tries: must be an integer from 1 to 100, got 101"},
		{`{"query_frequency": 60, "query_frequency": 70}`, `field "query_frequency" appears more than once`},
		{`{"query_frequency": 60} {}`, "unexpected data after the JSON object"},
		{`{"query_frequency": 60} x`, "unexpected data after the JSON object"},
		{`[]`, "body must be a JSON object"},
		{`null`, "body must be a JSON object"},
		{`"x"`, "body must be a JSON object"},
		{``, "body is not valid JSON"},
		{`{"query_frequency": }`, "body is not valid JSON"},
		{`{"query_frequency": 60`, "body is not valid JSON"},
	} {
		t.Run(tc.body, func(t *testing.T) {
			_, err := DecodeOCSPUpdate([]byte(tc.body))
			var e *Error
			if !errors.As(err, &e) || e.Code != CodeInvalidSchema {
				t.Fatalf("got %v, want invalid_schema", err)
			}
			if !strings.Contains(e.Message, tc.message) {
				t.Fatalf("message %q does not contain %q", e.Message, tc.message)
			}
			var u OCSPUpdate
			if err := json.Unmarshal([]byte(tc.body), &u); err == nil {
				t.Fatal("json.Unmarshal accepted it")
			}
		})
	}
}

func TestApplyNeverHalfApplies(t *testing.T) {
	current := OCSP{OCSPFunctionality: false, QueryFrequency: 100, ResponseTimeout: 5, RecoveryFrequency: 70, RecoveryMaxTries: 3}
	bad := 5000
	u := OCSPUpdate{OCSPFunctionality: ptr(true), QueryFrequency: ptr(200), RecoveryMaxTries: &bad}
	got, err := u.Apply(current)
	if !errors.Is(err, ErrInvalidSchema) || got != current {
		t.Fatalf("got %+v, %v", got, err)
	}
	if _, err := (OCSPUpdate{ResponderURL: ptr("http://x")}).Apply(current); !errors.Is(err, ErrInvalidSchema) {
		t.Fatalf("responder_url accepted: %v", err)
	}
	// Read-only: the current value may be sent back, as GET gave it.
	withURL := current
	withURL.ResponderURL = "http://x"
	if got, err := (OCSPUpdate{ResponderURL: ptr("http://x"), QueryFrequency: ptr(300)}).Apply(withURL); err != nil || got.QueryFrequency != 300 {
		t.Fatalf("the current responder_url sent back: %+v, %v", got, err)
	}
	got, err = OCSPUpdate{ResponseTimeout: ptr(7)}.Apply(current)
	if err != nil || got.ResponseTimeout != 7 || got.QueryFrequency != 100 {
		t.Fatalf("got %+v, %v", got, err)
	}
}

func TestInvalidStaplingBodies(t *testing.T) {
	for _, tc := range []struct{ body, message string }{
		{`{"ocsp_stapling": {"cache_ttl": 59}}`, "cache_ttl: must be an integer from 60 to 2147483647 seconds, got 59"},
		{`{"ocsp_stapling": {"cache_ttl": 0}}`, "cache_ttl: must be an integer from 60"},
		{`{"ocsp_stapling": {"enabled": "yes"}}`, `ocsp_stapling.enabled: must be a boolean, got "yes"`},
		{`{"ocsp_stapling": {"skip_verify": 0}}`, "ocsp_stapling.skip_verify: must be a boolean, got 0"},
		{`{"ocsp_stapling": {"extra": 0}}`, "ocsp_stapling.extra: unknown field"},
		{`{"ocsp_stapling": []}`, "ocsp_stapling: body must be a JSON object"},
		{`{"ocsp_stapling": true}`, "ocsp_stapling: body must be a JSON object"},
		{`{"cert": "x"}`, "cert: unknown field"},
		{`{"ocsp_stapling": null}}`, "unexpected data after the JSON object"},
	} {
		t.Run(tc.body, func(t *testing.T) {
			_, err := DecodeStaplingUpdate([]byte(tc.body))
			var e *Error
			if !errors.As(err, &e) || e.Code != CodeInvalidSchema || !strings.Contains(e.Message, tc.message) {
				t.Fatalf("got %v, want invalid_schema containing %q", err, tc.message)
			}
		})
	}
}

func TestStaplingUpdateLifecycle(t *testing.T) {
	current := DefaultStapling()
	steps := []struct {
		body string
		want Stapling
	}{
		{`{"ocsp_stapling": {"enabled": true}}`, Stapling{Enabled: true, CacheTTL: 3600}},
		{`{"ocsp_stapling": {"cache_ttl": 120}}`, Stapling{Enabled: true, CacheTTL: 120}},
		{`{"ocsp_stapling": {"enabled": false}}`, Stapling{Enabled: false, CacheTTL: 120}},
		{`{"ocsp_stapling": {"skip_verify": true, "enabled": true}}`, Stapling{Enabled: true, SkipVerify: true, CacheTTL: 120}},
		{`{}`, Stapling{Enabled: true, SkipVerify: true, CacheTTL: 120}},
		{`{"ocsp_stapling": null}`, DefaultStapling()},
	}
	for _, step := range steps {
		u, err := DecodeStaplingUpdate([]byte(step.body))
		if err != nil {
			t.Fatalf("%s: %v", step.body, err)
		}
		if current, err = u.Apply(current); err != nil || current != step.want {
			t.Fatalf("%s: got %+v %v, want %+v", step.body, current, err, step.want)
		}
	}
	if got, err := (StaplingUpdate{CacheTTL: ptr(10)}).Apply(current); err == nil || got != current {
		t.Fatalf("cache_ttl 10 accepted: %+v", got)
	}
}

func TestValidateZeroConfigIsDefault(t *testing.T) {
	if err := (OCSP{}).Validate(); err != nil {
		t.Fatal(err)
	}
	if err := (OCSP{QueryFrequency: 10}).Validate(); !errors.Is(err, ErrInvalidSchema) {
		t.Fatalf("got %v", err)
	}
	if err := (Stapling{CacheTTL: 59}).Validate(); !errors.Is(err, ErrInvalidSchema) {
		t.Fatalf("got %v", err)
	}
	if DefaultOCSP() != (OCSP{QueryFrequency: 3600, ResponseTimeout: 1, RecoveryFrequency: 60, RecoveryMaxTries: 5}) {
		t.Fatalf("defaults: %+v", DefaultOCSP())
	}
}

func FuzzDecodeOCSPUpdate(f *testing.F) {
	for _, s := range []string{`{"ocsp_functionality": true}`, `{"query_frequency": 60}`, `{}`, `[`, `{"responder_url": ""}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		current := DefaultOCSP()
		u, err := DecodeOCSPUpdate(data)
		if err != nil {
			if !errors.Is(err, ErrInvalidSchema) {
				t.Fatalf("error is not invalid_schema: %v", err)
			}
			return
		}
		next, err := u.Apply(current)
		if err != nil {
			t.Fatalf("decoded update rejected by Apply: %v", err)
		}
		if err := next.Validate(); err != nil {
			t.Fatalf("applied config invalid: %v", err)
		}
	})
}

func FuzzDecodeStaplingUpdate(f *testing.F) {
	for _, s := range []string{`{"ocsp_stapling": {"enabled": true}}`, `{"ocsp_stapling": null}`, `{"ocsp_stapling": {"cache_ttl": 59}}`, `{}`, `{"ocsp_stapling": {"skip_verify": true, "cache_ttl": 60}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		current := Stapling{Enabled: true, CacheTTL: 120}
		u, err := DecodeStaplingUpdate(data)
		if err != nil {
			if !errors.Is(err, ErrInvalidSchema) {
				t.Fatalf("error is not invalid_schema: %v", err)
			}
			return
		}
		next, err := u.Apply(current)
		if err != nil {
			t.Fatalf("decoded update rejected by Apply: %v", err)
		}
		if err := next.Validate(); err != nil {
			t.Fatalf("applied object invalid: %v", err)
		}
	})
}
