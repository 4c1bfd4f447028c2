package archive

import (
	"errors"
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
	for {
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC|flags, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, &os.PathError{Op: "open", Path: path, Err: err}
		}
		return os.NewFile(uintptr(fd), path), nil
	}
}
