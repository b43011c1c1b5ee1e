//go:build unix

package main

import (
	"fmt"
	"runtime"
	"syscall"
)

// peakRSS is the process's maximum resident set size (getrusage ru_maxrss: KiB on
// Linux, bytes on macOS).
func peakRSS() string {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return "unknown"
	}
	kib := int64(ru.Maxrss)
	if runtime.GOOS == "darwin" {
		kib /= 1024
	}
	return fmt.Sprintf("%.1f MiB", float64(kib)/1024)
}
