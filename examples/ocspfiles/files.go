package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// defaultFileMode is the mode of a response file written where none was:
// an OCSP response is public (every client is sent it), and the server that
// staples it may run as another user than this daemon.
const defaultFileMode fs.FileMode = 0o644

// maxFileBytes bounds what is read back from an output file to compare it
// with a new response: far above any response (stapler.MaxResponseBytes),
// so that a huge file put there is simply replaced.
const maxFileBytes = 64 << 10

// errNotRegular: the output path holds something other than a regular file
// or a symbolic link (a directory, a FIFO, a device), which is never
// replaced or removed.
var errNotRegular = errors.New("not a regular file")

// tempPrefix is how this daemon's temporary files start, so that those a
// crash left behind can be recognised and removed.
func tempPrefix(path string) string { return "." + filepath.Base(path) + ".tmp-" }

// fileHolds reports whether path is a regular file whose content is data.
// A symbolic link is never followed: it does not count as holding data, so
// that it is replaced by a regular file (see writeFileAtomic).
func fileHolds(path string, data []byte) (bool, error) {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if !fi.Mode().IsRegular() || fi.Size() != int64(len(data)) {
		return false, nil
	}
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return false, err
	}
	defer f.Close()
	got, err := io.ReadAll(io.LimitReader(f, maxFileBytes))
	if err != nil {
		return false, err
	}
	return bytes.Equal(got, data), nil
}

// writeResult says what writeFileAtomic did beyond writing, for the log.
type writeResult struct {
	// ReplacedSymlink: the path was a symbolic link, replaced by a file
	// (its target untouched).
	ReplacedSymlink bool
	// OwnerLost: the file replaced belonged to another user or group that
	// this process cannot give the new file to; it is written anyway
	// because its mode lets everyone read it.
	OwnerLost bool
}

// writeFileAtomic replaces path with data so that a reader sees either the
// old content or the new one, whole, and never a partial file, even if this
// process dies at any point: data goes to a temporary file in the same
// directory, which is synced, then renamed over path, and the directory is
// synced so that the rename survives a crash.
//
// The new file keeps the mode, owner and group of the regular file it
// replaces (0644 and this process's when there was none). When the owner
// cannot be kept (this process is not root) and the old mode does not let
// everyone read, the write is refused: the server reading the file could no
// longer read it. A symbolic link at path is never written through: it is
// replaced by a regular file, so that a link planted in the directory
// cannot make this process overwrite another file. Anything else at path (a
// directory, a FIFO) is left alone and the write refused.
func writeFileAtomic(path string, data []byte) (writeResult, error) {
	var res writeResult
	mode := defaultFileMode
	uid, gid := -1, -1
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return res, err
	case fi.Mode()&fs.ModeSymlink != 0:
		res.ReplacedSymlink = true
	case !fi.Mode().IsRegular():
		return res, fmt.Errorf("%s: %w (%s)", path, errNotRegular, fi.Mode().Type())
	default:
		mode = fi.Mode().Perm()
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			uid, gid = int(st.Uid), int(st.Gid)
		}
	}
	dir := filepath.Dir(path)
	// The temporary name keeps the extension, so that a server scanning the
	// directory (HAProxy's "crt <dir>" skips *.ocsp) never takes it for a
	// certificate.
	tmp, err := os.CreateTemp(dir, tempPrefix(path)+"*"+filepath.Ext(path))
	if err != nil {
		return res, err
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	if err := fillTemp(tmp, data, mode, uid, gid, &res); err != nil {
		tmp.Close()
		return res, fmt.Errorf("%s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return res, err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return res, err
	}
	return res, syncDir(dir)
}

func fillTemp(tmp *os.File, data []byte, mode fs.FileMode, uid, gid int, res *writeResult) error {
	if uid >= 0 && (uid != os.Geteuid() || gid != os.Getegid()) {
		if err := tmp.Chown(uid, gid); err != nil {
			if mode&0o004 == 0 {
				return fmt.Errorf("cannot keep the owner (uid %d, gid %d) of a file only they may read: %w", uid, gid, err)
			}
			res.OwnerLost = true
		}
	}
	if err := tmp.Chmod(mode); err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		return err
	}
	return tmp.Sync()
}

// removeFile removes path (a symbolic link itself, never its target) and
// syncs the directory. It reports whether there was something to remove.
func removeFile(path string) (bool, error) {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if !fi.Mode().IsRegular() && fi.Mode()&fs.ModeSymlink == 0 {
		return false, fmt.Errorf("%s: %w (%s), not removed", path, errNotRegular, fi.Mode().Type())
	}
	if err := os.Remove(path); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
		return false, err
	}
	return true, syncDir(filepath.Dir(path))
}

// removeStaleTemps removes the temporary files a crash of this daemon left
// beside path (they are never the file a server reads).
func removeStaleTemps(path string) {
	prefix := tempPrefix(path)
	entries, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		return
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) && e.Type().IsRegular() {
			os.Remove(filepath.Join(filepath.Dir(path), e.Name()))
		}
	}
}

// syncDir makes a rename or a removal in dir durable.
func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		return err
	}
	return nil
}
