//go:build unix

package cache

import (
	"errors"
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
