package cache

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// A DirStore never reads from a directory writable by group or others, as
// it never writes to one: it "is refused with ErrInsecureDir" because
// "anyone could plant or replace values in it". Found when Put refused it
// and Get read whatever another local user planted there (which restore
// then stapled on start-up).
func TestAWorldWritableDirIsNeverReadFrom(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	d := DirStore(dir)
	if err := d.Put(context.Background(), "k", []byte("ours")); !errors.Is(err, ErrInsecureDir) {
		t.Fatalf("Put in a world-writable directory: %v, want ErrInsecureDir", err)
	}
	// Another user plants a value.
	if err := os.WriteFile(filepath.Join(dir, "k"), []byte("planted"), 0o644); err != nil {
		t.Fatal(err)
	}
	v, err := d.Get(context.Background(), "k")
	if !errors.Is(err, ErrInsecureDir) {
		t.Fatalf("Get in a world-writable directory returned %q, %v; want ErrInsecureDir", v, err)
	}
}
