package cpu

import (
	"fmt"
	"strings"
	"unsafe"

	"github.com/gomegatron/gomegatron/tensor"
)

// BF16 activations (see kernels' package doc) run through each op's F32 code: an op
// first hands its activations to bf16, which, when they are BF16, widens them into pooled
// F32 scratch, calls the op again on F32 views and rounds the written ones back once. So
// a BF16 call equals the F32 call on the widened inputs, rounded, by construction.

// act is one activation operand of a call: its name (for panics) and whether the op reads
// it, writes it, or both.
type act struct {
	name        string
	t           *tensor.Tensor
	read, write bool
}

// rd, wr and rw describe an activation the op reads, overwrites in full, or updates.
func rd(name string, t *tensor.Tensor) act { return act{name, t, true, false} }
func wr(name string, t *tensor.Tensor) act { return act{name, t, false, true} }
func rw(name string, t *tensor.Tensor) act { return act{name, t, true, true} }

// bf16 returns false, doing nothing, unless acts are BF16; then it runs f on F32 views of
// them (in acts' order) as described above and returns true. Mixed dtypes panic.
// Operands sharing storage (an in-place op) share one scratch buffer, so f sees the
// aliasing the caller set up; write-only ones are not widened (f overwrites them).
func (b *Backend) bf16(op string, f func(v []*tensor.Tensor), acts ...act) bool {
	n := 0
	for _, a := range acts {
		if a.t.DType() == tensor.BF16 {
			n++
		}
	}
	if n == 0 {
		return false
	}
	if n != len(acts) {
		panic(fmt.Sprintf("cpu.%s: activations must all be F32 or all BF16, got %s", op, describeActs(acts)))
	}
	owner := make([]int, len(acts)) // index of the first operand with the same storage
	read := make([]bool, len(acts))
	write := make([]bool, len(acts))
	for i, a := range acts {
		if a.t.Device.Type != tensor.CPU {
			panic(fmt.Sprintf("cpu.%s: %s %v is not a host tensor", op, a.name, a.t))
		}
		owner[i] = i
		for j := range i {
			if owner[j] != j {
				continue
			}
			if same, overlap := storageRel(a.t, acts[j].t); same {
				owner[i] = j
				break
			} else if overlap {
				// One scratch per storage cannot mirror a partial overlap.
				panic(fmt.Sprintf("cpu.%s: %s %v and %s %v overlap partially", op, a.name, a.t, acts[j].name, acts[j].t))
			}
		}
		read[owner[i]] = read[owner[i]] || a.read
		write[owner[i]] = write[owner[i]] || a.write
	}
	bufs := make([]*scratchBuf, len(acts))
	views := make([]*tensor.Tensor, len(acts))
	for i, a := range acts {
		if owner[i] == i {
			bufs[i] = b.getScratch(a.t.Numel())
			if read[i] {
				widenBF16(bufs[i].v, a.t.U16())
			}
		}
		views[i] = tensor.FromF32(bufs[owner[i]].v, a.t.Shape()...)
	}
	f(views)
	for i, a := range acts {
		if owner[i] != i {
			continue
		}
		if write[i] {
			roundBF16(a.t.U16(), bufs[i].v)
		}
		b.putScratch(bufs[i])
	}
	return true
}

// storageRel reports whether x and y are views of the same bytes, or else overlap.
func storageRel(x, y *tensor.Tensor) (same, overlap bool) {
	if len(x.Data) == 0 || len(y.Data) == 0 {
		return false, false
	}
	x0, y0 := uintptr(unsafe.Pointer(unsafe.SliceData(x.Data))), uintptr(unsafe.Pointer(unsafe.SliceData(y.Data)))
	x1, y1 := x0+uintptr(len(x.Data)), y0+uintptr(len(y.Data))
	if x0 == y0 && x1 == y1 {
		return true, true
	}
	return false, x0 < y1 && y0 < x1
}

func describeActs(acts []act) string {
	s := make([]string, len(acts))
	for i, a := range acts {
		s[i] = fmt.Sprintf("%s %v", a.name, a.t)
	}
	return strings.Join(s, ", ")
}

// widenBF16 writes the exact F32 values of src into dst.
func widenBF16(dst []float32, src []uint16) {
	parallelFor(len(src), elemGrain, func(lo, hi int) {
		d := dst[lo:hi]
		for i, h := range src[lo:hi] {
			d[i] = tensor.F32FromBF16(h)
		}
	})
}

// roundBF16 rounds src into dst, to nearest even (tensor.BF16FromF32, as Cast).
func roundBF16(dst []uint16, src []float32) {
	parallelFor(len(dst), elemGrain, func(lo, hi int) {
		s := src[lo:hi]
		for i := range dst[lo:hi] {
			dst[lo+i] = tensor.BF16FromF32(s[i])
		}
	})
}
