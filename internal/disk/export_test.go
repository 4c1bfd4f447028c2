package disk

import "time"

// ParseMountInfo exposes the mountinfo parser to the tests.
var ParseMountInfo = parseMountInfo

// SetBusyTimeout shortens the EBUSY retries for a test.
func SetBusyTimeout(d time.Duration) (restore func()) {
	old := busyTimeout
	busyTimeout = d
	return func() { busyTimeout = old }
}

// WithoutLoopConfigure makes AttachLoop take the LOOP_SET_FD path of kernels
// before 5.8.
func WithoutLoopConfigure() (restore func()) {
	useLoopConfigure = false
	return func() { useLoopConfigure = true }
}
