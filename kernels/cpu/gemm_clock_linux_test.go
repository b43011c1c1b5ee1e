//go:build linux

package cpu

import (
	"time"

	"golang.org/x/sys/unix"
)

// gemmThreadClock returns the CPU time of the calling OS thread (lock it first), which
// does not grow while other processes hold the core.
func gemmThreadClock() (time.Duration, bool) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return 0, false
	}
	return time.Duration(ts.Nano()), true
}
