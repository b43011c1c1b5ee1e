//go:build !linux

package cpu

import "time"

// gemmThreadClock is unavailable here; TestGemmVsOpenBLAS then skips thread-clock mode.
func gemmThreadClock() (time.Duration, bool) { return 0, false }
