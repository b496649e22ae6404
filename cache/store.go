package cache

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// ErrCacheMiss is returned by a Store's Get when it holds nothing under the key.
var ErrCacheMiss = errors.New("cache: miss")

// Store keeps OCSP responses across restarts (and, with a shared backend,
// across servers). Keys are certificate IDs: 64 lower-case hex characters.
// The Stapler never trusts what a Store returns: every value is verified
// again, as if just fetched, before it is stapled. Implementations must be
// safe for concurrent use.
type Store interface {
	// Get returns the value stored under key, or ErrCacheMiss.
	Get(ctx context.Context, key string) ([]byte, error)
	// Put stores value under key, replacing any earlier value.
	Put(ctx context.Context, key string, value []byte) error
	// Delete removes key; deleting a missing key is not an error.
	Delete(ctx context.Context, key string) error
}

// ErrBadKey is returned for a key that could name a file outside the
// store's directory, or is empty.
var ErrBadKey = errors.New("cache: bad key")

// DirStore is a Store in a directory, one file per key. Writes are atomic
// (a temporary file, fsync, rename, then fsync of the directory), so a
// crash at any point leaves either the old value or the new one. Files are
// 0600 and the directory 0700.
type DirStore string

// validKey accepts keys of letters, digits, '-', '_' and '.', not starting
// with '.': nothing that can climb out of the directory or hide as a
// temporary file.
func validKey(key string) bool {
	if key == "" || len(key) > 200 || key[0] == '.' {
		return false
	}
	for i := 0; i < len(key); i++ {
		c := key[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

func (d DirStore) path(key string) (string, error) {
	if !validKey(key) {
		return "", fmt.Errorf("%w %q", ErrBadKey, key)
	}
	return filepath.Join(string(d), key), nil
}

// Get reads the file for key.
func (d DirStore) Get(ctx context.Context, key string) ([]byte, error) {
	p, err := d.path(key)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrCacheMiss
	}
	return data, err
}

// Put writes the file for key atomically.
func (d DirStore) Put(ctx context.Context, key string, value []byte) error {
	p, err := d.path(key)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := os.MkdirAll(string(d), 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(string(d), "."+key+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	if _, err := tmp.Write(value); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), p); err != nil {
		return err
	}
	return syncDir(string(d))
}

// Delete removes the file for key.
func (d DirStore) Delete(ctx context.Context, key string) error {
	p, err := d.path(key)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// syncDir makes a rename durable.
func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
