package tcp

import (
	"unsafe"

	"github.com/gomegatron/gomegatron/comm"
	"github.com/gomegatron/gomegatron/tensor"
)

// Reduction kernels. A reduction keeps an accumulator in the "wide" type of the dtype
// (float32 for F32, BF16 and F16; the dtype itself otherwise) and folds the ranks'
// contributions into it in rank order:
//
//	acc = widen(x_0); acc = acc ⊕ widen(x_1); …; acc = acc ⊕ widen(x_{n-1}); out = narrow(acc [/ n])
//
// so half-precision sums are rounded once, at the end (as NCCL does not: NCCL rounds after
// every step; we prefer the more accurate and algorithm-independent f32 fold). Max and Min
// propagate NaN. Integer sums wrap around.

type number interface {
	~float32 | ~float64 | ~int32 | ~int64 | ~uint8
}

// wideSize is the accumulator's bytes per element.
func wideSize(dt tensor.DType) int {
	if dt == tensor.BF16 || dt == tensor.F16 {
		return 4
	}
	return dt.Size()
}

func view[T any](b []byte) []T {
	if len(b) == 0 {
		return nil
	}
	var z T
	return unsafe.Slice((*T)(unsafe.Pointer(&b[0])), len(b)/int(unsafe.Sizeof(z)))
}

func foldT[T number](acc, x []T, op comm.Op) {
	x = x[:len(acc)]
	switch op {
	case comm.Sum, comm.Avg:
		for i, v := range x {
			acc[i] += v
		}
	case comm.Max:
		for i, v := range x {
			if v > acc[i] || v != v { // v != v: NaN wins
				acc[i] = v
			}
		}
	case comm.Min:
		for i, v := range x {
			if v < acc[i] || v != v {
				acc[i] = v
			}
		}
	}
}

// widen writes src (dtype dt) into the accumulator layout acc.
func widen(acc, src []byte, dt tensor.DType) {
	switch dt {
	case tensor.BF16:
		a := view[float32](acc)
		for i, h := range view[uint16](src) {
			a[i] = tensor.F32FromBF16(h)
		}
	case tensor.F16:
		a := view[float32](acc)
		for i, h := range view[uint16](src) {
			a[i] = tensor.F32FromF16(h)
		}
	default:
		copy(acc, src)
	}
}

// fold computes acc = acc ⊕ src elementwise; tmp is scratch for widening half types (≥ the
// accumulator's size in bytes).
func fold(acc, src, tmp []byte, dt tensor.DType, op comm.Op) {
	switch dt {
	case tensor.F32:
		foldT(view[float32](acc), view[float32](src), op)
	case tensor.F64:
		foldT(view[float64](acc), view[float64](src), op)
	case tensor.I32:
		foldT(view[int32](acc), view[int32](src), op)
	case tensor.I64:
		foldT(view[int64](acc), view[int64](src), op)
	case tensor.U8:
		foldT(acc, src, op)
	case tensor.BF16, tensor.F16:
		w := tmp[:len(acc)]
		widen(w, src, dt)
		foldT(view[float32](acc), view[float32](w), op)
	}
}

// narrow writes the accumulator into dst (dtype dt), dividing by n first for Avg.
func narrow(dst, acc []byte, dt tensor.DType, op comm.Op, n int) {
	if op == comm.Avg {
		switch dt {
		case tensor.F64:
			a := view[float64](acc)
			for i := range a {
				a[i] /= float64(n)
			}
		default:
			a := view[float32](acc)
			for i := range a {
				a[i] /= float32(n)
			}
		}
	}
	switch dt {
	case tensor.BF16:
		d := view[uint16](dst)
		for i, v := range view[float32](acc) {
			d[i] = tensor.BF16FromF32(v)
		}
	case tensor.F16:
		d := view[uint16](dst)
		for i, v := range view[float32](acc) {
			d[i] = tensor.F16FromF32(v)
		}
	default:
		copy(dst, acc)
	}
}

func combineT[T number](dst, a, b []T, op comm.Op) {
	a, b = a[:len(dst)], b[:len(dst)]
	switch op {
	case comm.Sum, comm.Avg:
		for i := range dst {
			dst[i] = a[i] + b[i]
		}
	case comm.Max:
		for i := range dst {
			if v := b[i]; v > a[i] || v != v {
				dst[i] = v
			} else {
				dst[i] = a[i]
			}
		}
	case comm.Min:
		for i := range dst {
			if v := b[i]; v < a[i] || v != v {
				dst[i] = v
			} else {
				dst[i] = a[i]
			}
		}
	}
}

// combine computes dst = a ⊕ b elementwise for a dtype that is its own accumulator (not
// BF16/F16); dst may alias a or b.
func combine(dst, a, b []byte, dt tensor.DType, op comm.Op) {
	switch dt {
	case tensor.F32:
		combineT(view[float32](dst), view[float32](a), view[float32](b), op)
	case tensor.F64:
		combineT(view[float64](dst), view[float64](a), view[float64](b), op)
	case tensor.I32:
		combineT(view[int32](dst), view[int32](a), view[int32](b), op)
	case tensor.I64:
		combineT(view[int64](dst), view[int64](a), view[int64](b), op)
	case tensor.U8:
		combineT(dst, a, b, op)
	}
}

// reduceInto writes the rank-order fold of src(0), …, src(n-1) into dst:
// ((x_0 ⊕ x_1) ⊕ …) ⊕ x_{n-1}, divided by n for Avg. dst may alias one of the sources: each
// element is read before it is written. acc (m·wideSize bytes) and tmp (m·4 bytes) are
// scratch. Types that are their own accumulator fold without extra copies (acc = x_0 ⊕ x_1,
// dst = acc ⊕ x_{n-1}); the operations and their order are the same either way.
func reduceInto(dst []byte, src func(r int) []byte, n int, acc, tmp []byte, dt tensor.DType, op comm.Op) {
	if dt == tensor.BF16 || dt == tensor.F16 || n == 1 {
		acc = acc[:len(dst)/dt.Size()*wideSize(dt)]
		widen(acc, src(0), dt)
		for r := 1; r < n; r++ {
			fold(acc, src(r), tmp, dt, op)
		}
		narrow(dst, acc, dt, op, n)
		return
	}
	if n == 2 {
		combine(dst, src(0), src(1), dt, op)
	} else {
		acc = acc[:len(dst)]
		combine(acc, src(0), src(1), dt, op)
		for r := 2; r < n-1; r++ {
			fold(acc, src(r), tmp, dt, op)
		}
		combine(dst, acc, src(n-1), dt, op)
	}
	if op == comm.Avg {
		switch dt {
		case tensor.F64:
			for i, v := range view[float64](dst) {
				view[float64](dst)[i] = v / float64(n)
			}
		case tensor.F32:
			d := view[float32](dst)
			for i := range d {
				d[i] /= float32(n)
			}
		}
	}
}
