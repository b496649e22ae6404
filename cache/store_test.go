package cache

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestDirStore(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "staples")
	s := DirStore(dir)
	if _, err := s.Get(ctx, "abc"); !errors.Is(err, ErrCacheMiss) {
		t.Fatalf("get before put: %v", err)
	}
	if err := s.Put(ctx, "abc", []byte("one")); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "abc", []byte("two")); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Get(ctx, "abc"); err != nil || string(got) != "two" {
		t.Fatalf("got %q %v", got, err)
	}
	fi, err := os.Stat(filepath.Join(dir, "abc"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v %v", fi.Mode(), err)
	}
	if di, _ := os.Stat(dir); di.Mode().Perm() != 0o700 {
		t.Fatalf("dir mode %v", di.Mode())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("temporary files left: %v", entries)
	}
	if err := s.Delete(ctx, "abc"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "abc"); err != nil {
		t.Fatalf("second delete: %v", err)
	}
	if _, err := s.Get(ctx, "abc"); !errors.Is(err, ErrCacheMiss) {
		t.Fatalf("get after delete: %v", err)
	}
}

func TestDirStoreKeysCannotEscape(t *testing.T) {
	ctx := context.Background()
	s := DirStore(t.TempDir())
	for _, key := range []string{"", "..", "../x", "a/b", `a\b`, ".hidden", "/etc/passwd", "a\x00b", "é"} {
		if err := s.Put(ctx, key, []byte("x")); !errors.Is(err, ErrBadKey) {
			t.Errorf("Put(%q): %v", key, err)
		}
		if _, err := s.Get(ctx, key); !errors.Is(err, ErrBadKey) {
			t.Errorf("Get(%q): %v", key, err)
		}
		if err := s.Delete(ctx, key); !errors.Is(err, ErrBadKey) {
			t.Errorf("Delete(%q): %v", key, err)
		}
	}
}
