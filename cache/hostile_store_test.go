//go:build unix

package cache

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestDirStoreRefusesWhatIsNotItsOwnFile: whatever is planted at a key (a
// symbolic link, a FIFO, a huge file, a directory), Get fails fast with a
// clear error and never reads more than MaxValueBytes.
func TestDirStoreRefusesWhatIsNotItsOwnFile(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	os.Chmod(dir, 0o700)
	s := DirStore(dir)
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("not yours"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secret, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	huge, err := os.Create(filepath.Join(dir, "huge"))
	if err != nil {
		t.Fatal(err)
	}
	huge.Truncate(256 << 20) // sparse: no disk, but 256 MiB to a reader
	huge.Close()
	if err := os.Mkdir(filepath.Join(dir, "adir"), 0o700); err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]error{
		"link": ErrNotRegularFile,
		"fifo": ErrNotRegularFile,
		"huge": ErrValueTooLarge,
		"adir": ErrNotRegularFile,
	} {
		done := make(chan error, 1)
		go func() {
			_, err := s.Get(ctx, key)
			done <- err
		}()
		select {
		case err := <-done:
			if !errors.Is(err, want) {
				t.Errorf("Get(%q): got %v, want %v", key, err, want)
			}
		case <-time.After(time.Minute): // only a hang reaches this
			t.Fatalf("Get(%q) hangs", key)
		}
	}
	if err := s.Put(ctx, "big", make([]byte, MaxValueBytes+1)); !errors.Is(err, ErrValueTooLarge) {
		t.Errorf("Put of a value over the cap: %v", err)
	}
}

// TestDirStoreDirectoryMode: a loose directory is tightened to 0700; one
// that group or others may write is refused.
func TestDirStoreDirectoryMode(t *testing.T) {
	ctx := context.Background()
	loose := filepath.Join(t.TempDir(), "loose")
	if err := os.Mkdir(loose, 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chmod(loose, 0o755)
	if err := DirStore(loose).Put(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(loose); fi.Mode().Perm() != 0o700 {
		t.Fatalf("directory mode %v, want 0700", fi.Mode().Perm())
	}
	open := filepath.Join(t.TempDir(), "open")
	if err := os.Mkdir(open, 0o777); err != nil {
		t.Fatal(err)
	}
	os.Chmod(open, 0o777)
	if err := DirStore(open).Put(ctx, "k", []byte("v")); !errors.Is(err, ErrInsecureDir) {
		t.Fatalf("Put into a world-writable directory: %v, want ErrInsecureDir", err)
	}
}
