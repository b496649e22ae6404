//go:build unix

package cache

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// anotherUser is a uid that is neither this process's nor root's.
const anotherUser = 54321

// A store directory owned by another user (made first by someone else in a
// shared temporary directory, 0755) is refused on Get and Put alike, as is
// a file in our own directory owned by another user: that user could plant
// an old good response for a revoked certificate. Changing owners needs
// root, which CI runs as.
func TestDirStoreRefusesADirectoryOrFileOwnedByAnotherUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("changing a file's owner needs root")
	}
	ctx := context.Background()
	theirs := filepath.Join(t.TempDir(), "store")
	if err := os.Mkdir(theirs, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(theirs, "k"), []byte("planted"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{theirs, filepath.Join(theirs, "k")} {
		if err := os.Chown(p, anotherUser, anotherUser); err != nil {
			t.Fatal(err)
		}
	}
	d := DirStore(theirs)
	if v, err := d.Get(ctx, "k"); !errors.Is(err, ErrInsecureDir) {
		t.Fatalf("Get from another user's directory: %q, %v; want ErrInsecureDir", v, err)
	}
	if err := d.Put(ctx, "k", []byte("ours")); !errors.Is(err, ErrInsecureDir) {
		t.Fatalf("Put in another user's directory: %v, want ErrInsecureDir", err)
	}

	ours := DirStore(filepath.Join(t.TempDir(), "store"))
	if err := ours.Put(ctx, "good", []byte("ours")); err != nil {
		t.Fatal(err)
	}
	planted := filepath.Join(string(ours), "k")
	if err := os.WriteFile(planted, []byte("planted"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(planted, anotherUser, anotherUser); err != nil {
		t.Fatal(err)
	}
	if v, err := ours.Get(ctx, "k"); !errors.Is(err, ErrInsecureDir) {
		t.Fatalf("Get of a file owned by another user: %q, %v; want ErrInsecureDir", v, err)
	}
	if v, err := ours.Get(ctx, "good"); err != nil || string(v) != "ours" {
		t.Fatalf("our own file: %q, %v", v, err)
	}
	// Root's directory is accepted: root can write anywhere.
	if err := os.Chown(string(ours), 0, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := ours.Get(ctx, "good"); err != nil {
		t.Fatalf("a directory owned by root: %v", err)
	}
}
