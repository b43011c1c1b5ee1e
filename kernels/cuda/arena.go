package cuda

import (
	"fmt"
	"sort"
)

// ArenaAlign is the alignment of every arena allocation (cudaMalloc's, and enough for
// 16-byte vector loads and cuBLASLt's operands).
const ArenaAlign = 256

// Arena sub-allocates one large device allocation made at start-up, so training allocates
// nothing from the driver after warm-up (DESIGN: memory is planned, not churned). It is a
// first-fit free list over [base, base+size): Alloc takes the lowest free span that fits
// (which is a bump allocation while nothing has been freed), Free returns a span and merges
// it with free neighbours. Bookkeeping only: it never touches the memory, so it is tested
// on fake addresses. An Arena is not safe for concurrent use; the Device serialises it.
type Arena struct {
	base, size uintptr
	free       []span              // sorted by offset, never adjacent (merged)
	used       map[uintptr]uintptr // offset → size of live allocations
	inUse      uintptr
	peak       uintptr
}

type span struct{ off, size uintptr }

// NewArena manages size bytes at base (base must be ArenaAlign-aligned).
func NewArena(base, size uintptr) (*Arena, error) {
	if base%ArenaAlign != 0 {
		return nil, fmt.Errorf("arena base %#x is not %d-byte aligned", base, ArenaAlign)
	}
	size -= size % ArenaAlign
	a := &Arena{base: base, size: size, used: map[uintptr]uintptr{}}
	if size > 0 {
		a.free = []span{{0, size}}
	}
	return a, nil
}

// Alloc returns the address of n bytes (rounded up to ArenaAlign; n = 0 takes one unit so
// every allocation has a distinct address).
func (a *Arena) Alloc(n uintptr) (uintptr, error) {
	sz := (max(n, 1) + ArenaAlign - 1) / ArenaAlign * ArenaAlign
	for i, s := range a.free {
		if s.size < sz {
			continue
		}
		if s.size == sz {
			a.free = append(a.free[:i], a.free[i+1:]...)
		} else {
			a.free[i] = span{s.off + sz, s.size - sz}
		}
		a.used[s.off] = sz
		a.inUse += sz
		a.peak = max(a.peak, a.inUse)
		return a.base + s.off, nil
	}
	return 0, fmt.Errorf("device arena out of memory: %d bytes wanted, %d of %d in use, largest free span %d (raise the arena size)",
		n, a.inUse, a.size, a.largestFree())
}

// Free returns an allocation made by Alloc.
func (a *Arena) Free(p uintptr) error {
	if p < a.base || p >= a.base+a.size {
		return fmt.Errorf("arena free of %#x: not in the arena [%#x, %#x)", p, a.base, a.base+a.size)
	}
	off := p - a.base
	sz, ok := a.used[off]
	if !ok {
		return fmt.Errorf("arena free of %#x: not a live allocation (double free?)", p)
	}
	delete(a.used, off)
	a.inUse -= sz
	i := sort.Search(len(a.free), func(i int) bool { return a.free[i].off > off })
	a.free = append(a.free, span{})
	copy(a.free[i+1:], a.free[i:])
	a.free[i] = span{off, sz}
	// Merge with the right neighbour, then the left.
	if i+1 < len(a.free) && a.free[i].off+a.free[i].size == a.free[i+1].off {
		a.free[i].size += a.free[i+1].size
		a.free = append(a.free[:i+1], a.free[i+2:]...)
	}
	if i > 0 && a.free[i-1].off+a.free[i-1].size == a.free[i].off {
		a.free[i-1].size += a.free[i].size
		a.free = append(a.free[:i], a.free[i+1:]...)
	}
	return nil
}

// Reset frees every allocation at once.
func (a *Arena) Reset() {
	clear(a.used)
	a.inUse = 0
	a.free = a.free[:0]
	if a.size > 0 {
		a.free = append(a.free, span{0, a.size})
	}
}

// Size is the arena's capacity in bytes; InUse the bytes allocated now; Peak the most ever.
func (a *Arena) Size() uintptr  { return a.size }
func (a *Arena) InUse() uintptr { return a.inUse }
func (a *Arena) Peak() uintptr  { return a.peak }

// Live is the number of allocations not yet freed.
func (a *Arena) Live() int { return len(a.used) }

func (a *Arena) largestFree() uintptr {
	var m uintptr
	for _, s := range a.free {
		m = max(m, s.size)
	}
	return m
}
