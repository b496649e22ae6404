package record

import (
	"testing"
	"time"
)

func TestExpiryIsTheEarliestBound(t *testing.T) {
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		ttl  time.Duration
		next time.Time
		caps []time.Time
		want time.Time
	}{
		{"ttl first", time.Hour, t0.Add(2 * time.Hour), nil, t0.Add(time.Hour)},
		{"nextUpdate first", 3 * time.Hour, t0.Add(2 * time.Hour), nil, t0.Add(2 * time.Hour)},
		{"leaf expires first", 3 * time.Hour, t0.Add(2 * time.Hour), []time.Time{t0.Add(30 * time.Minute), {}}, t0.Add(30 * time.Minute)},
		{"zero caps ignored", time.Hour, t0.Add(2 * time.Hour), []time.Time{{}}, t0.Add(time.Hour)},
	} {
		if got := Expiry(t0, tc.ttl, tc.next, tc.caps...); !got.Equal(tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
	e := &Entry{Expires: At(t0)}
	if !e.Usable(t0.Add(-time.Nanosecond)) || e.Usable(t0) || (*Entry)(nil).Usable(t0) {
		t.Fatal("Usable wrong at the boundary")
	}
	if Good.String() != "GOOD" || Revoked.String() != "REVOKED" || Unknown.String() != "UNKNOWN" {
		t.Fatal("status names")
	}
}

func TestInstantRoundTrips(t *testing.T) {
	t0 := time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC)
	if got := At(t0).Time(); !got.Equal(t0) {
		t.Fatalf("got %v", got)
	}
	if !At(time.Time{}).IsZero() || !Instant(0).Time().IsZero() {
		t.Fatal("zero does not round-trip")
	}
}
