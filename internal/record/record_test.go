package record

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

func TestRecordRoundTripAndCorruption(t *testing.T) {
	raw := []byte{0x30, 0x03, 0x0a, 0x01, 0x00}
	at := time.Unix(1700000000, 123)
	rec := Encode(raw, at)
	got, fetched, err := Decode(rec)
	if err != nil || !bytes.Equal(got, raw) || !fetched.Equal(at) {
		t.Fatalf("got %x %v %v", got, fetched, err)
	}
	for i := range len(rec) {
		if _, _, err := Decode(rec[:i]); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("truncated to %d accepted", i)
		}
		flipped := bytes.Clone(rec)
		flipped[i] ^= 0x40
		if _, _, err := Decode(flipped); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("bit flip at %d accepted", i)
		}
	}
	if _, _, err := Decode([]byte("<html>not ours</html>")); !errors.Is(err, ErrCorrupt) {
		t.Fatal("foreign value accepted")
	}
}
