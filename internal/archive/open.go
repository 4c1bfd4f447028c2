package archive

import (
	"errors"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// openRead opens path read-only as an *os.File that Go's poller leaves
// alone. os.Open offers every file to the poller: F_GETFL and F_SETFL to
// set O_NONBLOCK, an epoll_ctl that fails for regular files and
// directories, and two more fcntl to clear the flag again, five system
// calls per open where os.NewFile needs one (F_GETFL). In the sandbox's
// guest every system call is a round trip through the host
// (internal/sandbox): there the poller's four were 22% of the time of an
// archive of the benchmark corpus (docs/performance.md).
func openRead(path string, flags int) (*os.File, error) {
	fd, err := openFD(path, flags)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), path), nil
}

// fileFlags open a regular file to archive: read-only, not a terminal,
// not through a symlink.
const fileFlags = unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NOFOLLOW | unix.O_NOCTTY

// openFile opens the regular file path to archive as a bare descriptor
// (read through fdReader): an *os.File costs one more system call
// (os.NewFile's F_GETFL).
func openFile(path string) (int, error) { return openFD(path, fileFlags) }

// openFD is open(2) of path read-only with flags, retried on EINTR.
func openFD(path string, flags int) (int, error) {
	for {
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC|flags, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return -1, &os.PathError{Op: "open", Path: path, Err: err}
		}
		return fd, nil
	}
}

// fdReader reads the file open as its descriptor.
type fdReader int

// ReadAt is pread until p is full, the end of the file (io.EOF) or an
// error.
func (f fdReader) ReadAt(p []byte, off int64) (int, error) {
	n := 0
	for n < len(p) {
		m, err := unix.Pread(int(f), p[n:], off+int64(n))
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			return n, err
		case m == 0:
			return n, io.EOF
		}
		n += m
	}
	return n, nil
}
