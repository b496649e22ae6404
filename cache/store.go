package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// ErrCacheMiss is returned by a Store's Get when it holds nothing under the key.
var ErrCacheMiss = errors.New("cache: miss")

// Store keeps OCSP responses across restarts (and, with a shared backend,
// across servers), as autocert's Cache keeps certificates.
//
// Keys and values are opaque. Keys are short strings (at most 200 bytes)
// of letters, digits, '.', '-' and '_' that the Stapler chooses, and have
// no other shape to rely on: today a certificate's ID for its response and
// the ID with a suffix for a fleet's state, tomorrow perhaps others. Values
// are at most MaxValueBytes. An implementation stores both as they are.
//
// The Stapler never trusts what a Store returns: every value is verified
// again, as if just fetched, before it is stapled. Implementations must be
// safe for concurrent use.
type Store interface {
	// Get returns the value stored under key, or ErrCacheMiss.
	Get(ctx context.Context, key string) ([]byte, error)
	// Put stores value under key, replacing any earlier value.
	Put(ctx context.Context, key string, value []byte) error
	// Delete removes key; deleting a missing key is not an error. The
	// Stapler deletes a certificate's values when Stapler.Remove forgets it.
	Delete(ctx context.Context, key string) error
}

// ErrBadKey is returned for a key that could name a file outside the
// store's directory, or is empty.
var ErrBadKey = errors.New("cache: bad key")

// MaxValueBytes is the largest value a Store need hold: a record of the
// largest response the Stapler accepts (16 KiB) with room to spare. Stores
// refuse larger values with ErrValueTooLarge before reading them whole, so
// that whoever can write to the store cannot make a server hold more.
const MaxValueBytes = 32 << 10

// ErrUnusableValue: a key holds something no user of the store could have
// written as a value (in Redis, a hash or a list where a string belongs; a
// value larger than MaxValueBytes). It is treated as absent, never as the
// store being down, and replaced at the next write.
var ErrUnusableValue = errors.New("cache: the key holds no usable value")

// ErrValueTooLarge: a value is larger than MaxValueBytes. A stored one is
// also ErrUnusableValue.
var ErrValueTooLarge = fmt.Errorf("%w: larger than MaxValueBytes", ErrUnusableValue)

// ErrNotRegularFile: a DirStore key names something other than a regular
// file (a symbolic link, a FIFO, a device, a directory).
var ErrNotRegularFile = errors.New("cache: not a regular file")

// ErrInsecureDir: a DirStore directory is writable by its group or by
// others, or it or a file in it is owned by another user than the
// process's (root excepted), so someone else could plant or replace values
// in it.
var ErrInsecureDir = errors.New("cache: store directory writable by group or others, or owned by another user")

// DirStore is a Store in a directory, one file per key. Writes are atomic
// (a temporary file, fsync, rename, then fsync of the directory), so a
// crash at any point leaves either the old value or the new one. Files are
// 0600; the directory is made 0700, an existing one is tightened to 0700
// when it is ours to change, and one writable by group or others, or owned
// by another user than the process's (root excepted: root can write
// anywhere), is refused with ErrInsecureDir, as is a file in it owned by
// another user. Get opens files without following symbolic links,
// refuses anything but a regular file (ErrNotRegularFile) and anything
// larger than MaxValueBytes (ErrValueTooLarge), and never blocks on a FIFO
// planted at a key.
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
	if err := d.checkExistingDir(); err != nil {
		return nil, err
	}
	f, err := openNoFollow(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrCacheMiss
	}
	if err != nil {
		if isSymlinkError(err) {
			return nil, fmt.Errorf("%w: %s is a symbolic link", ErrNotRegularFile, p)
		}
		return nil, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: %s is %v", ErrNotRegularFile, p, info.Mode().Type())
	}
	if err := checkOwner(p, info); err != nil {
		return nil, err
	}
	if info.Size() > MaxValueBytes {
		return nil, fmt.Errorf("%w: %s has %d bytes", ErrValueTooLarge, p, info.Size())
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxValueBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxValueBytes { // grew while read
		return nil, fmt.Errorf("%w: %s", ErrValueTooLarge, p)
	}
	return data, nil
}

// checkExistingDir refuses to read from a directory that is writable by
// group or others (anyone could have planted a value), or that is not a
// directory; a missing one holds nothing.
func (d DirStore) checkExistingDir() error {
	info, err := os.Lstat(string(d))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if !info.IsDir() {
		return fmt.Errorf("%w: %s is not a directory", ErrNotRegularFile, string(d))
	}
	if perm := info.Mode().Perm(); perm&0o022 != 0 {
		return fmt.Errorf("%w: %s has mode %v", ErrInsecureDir, string(d), perm)
	}
	return checkOwner(string(d), info)
}

// checkDir makes sure the directory exists, is a directory (not a link to
// one), and is not writable by group or others; a looser mode that is not
// writable by others is tightened to 0700.
func (d DirStore) checkDir() error {
	if err := os.MkdirAll(string(d), 0o700); err != nil {
		return err
	}
	info, err := os.Lstat(string(d))
	if err != nil {
		return err
	}
	if !info.IsDir() {
		return fmt.Errorf("%w: %s is not a directory", ErrNotRegularFile, string(d))
	}
	if perm := info.Mode().Perm(); perm&0o022 != 0 {
		return fmt.Errorf("%w: %s has mode %v", ErrInsecureDir, string(d), perm)
	} else if err := checkOwner(string(d), info); err != nil {
		return err
	} else if perm&0o077 != 0 {
		os.Chmod(string(d), 0o700) // best effort: the directory may not be ours
	}
	return nil
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
	if len(value) > MaxValueBytes {
		return fmt.Errorf("%w: %d bytes", ErrValueTooLarge, len(value))
	}
	if err := d.checkDir(); err != nil {
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

// Delete removes the file for key and syncs the directory, so that the
// removal survives a crash.
func (d DirStore) Delete(ctx context.Context, key string) error {
	p, err := d.path(key)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := os.Remove(p); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	// Durable like Put's rename: a crash after Delete returns must not
	// bring the file back.
	return syncDir(string(d))
}

// syncDir makes a rename or a removal in dir durable.
func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
