//go:build unix

package megatron

import (
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mapFile maps f privately (copy-on-write, so a caller writing into a tensor view gets
// its own page). ok is false when mapping is impossible; the caller then reads the file.
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

// dropPages tells the kernel that the pages under b (a sub-slice of the mapping m) are
// no longer needed, so a streaming reader's resident set stays near one tensor. The
// pages are re-read from the file if touched again; they were never written.
func dropPages(m, b []byte) {
	if len(m) == 0 || len(b) == 0 {
		return
	}
	base := uintptr(unsafe.Pointer(&m[0]))
	lo := uintptr(unsafe.Pointer(&b[0]))
	if lo < base || lo+uintptr(len(b)) > base+uintptr(len(m)) {
		return // not a view of the mapping (a copied tensor)
	}
	page := uintptr(os.Getpagesize())
	start := (lo - base) / page * page
	end := (lo - base + uintptr(len(b)) + page - 1) / page * page
	if end > uintptr(len(m)) {
		end = uintptr(len(m))
	}
	unix.Madvise(m[start:end], unix.MADV_DONTNEED)
}
