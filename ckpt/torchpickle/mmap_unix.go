//go:build unix

package torchpickle

import (
	"os"

	"golang.org/x/sys/unix"
)

// mapFile maps size bytes of f. The mapping is private (copy-on-write): the file is
// opened read-only and never modified, but a caller that writes into a tensor view
// gets its own page instead of a fault. ok is false when mapping is impossible (the
// caller then reads the file).
func mapFile(f *os.File, size int64) (data []byte, unmap func() error, ok bool) {
	if size == 0 || int64(int(size)) != size {
		return nil, nil, false
	}
	b, err := unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE)
	if err != nil {
		return nil, nil, false
	}
	return b, func() error { return unix.Munmap(b) }, true
}
