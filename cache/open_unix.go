//go:build unix

package cache

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// openNoFollow opens p for reading without following a symbolic link at p,
// and without blocking on a FIFO (the caller refuses anything but a
// regular file).
func openNoFollow(p string) (*os.File, error) {
	return os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
}

// isSymlinkError reports whether err is what O_NOFOLLOW gives for a link.
func isSymlinkError(err error) bool {
	return errors.Is(err, syscall.ELOOP)
}

// checkOwner refuses a store directory or file owned by another user than
// the process's (its effective user): that user could plant values in it.
// Root's are accepted: root can write anywhere, the process's own files
// included, so refusing them would protect nothing (and a directory that
// root made 0755 is refused for writes by the kernel anyway).
func checkOwner(p string, info os.FileInfo) error {
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	if euid := os.Geteuid(); st.Uid != uint32(euid) && st.Uid != 0 {
		return fmt.Errorf("%w: %s is owned by uid %d, not by this process's (%d)", ErrInsecureDir, p, st.Uid, euid)
	}
	return nil
}
