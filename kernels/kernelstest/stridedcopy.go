package kernelstest

import (
	"fmt"
	"math"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/kernels"
	"github.com/gomegatron/gomegatron/tensor"
)

// viewEnd is one past the last flat element a non-empty strided view touches.
func viewEnd(off int, shape, stride []int) int {
	for k, d := range shape {
		off += (d - 1) * stride[k]
	}
	return off + 1
}

// refStridedCopy applies kernels.Backend.StridedCopy's formula to raw host storage with
// elemSize-byte elements: dst.flat[DstOff + Σ iₖ·DstStride[k]] = src.flat[SrcOff + Σ iₖ·SrcStride[k]]
// for every index of p.Shape, in row-major order.
func refStridedCopy(dst, src []byte, elemSize int, p kernels.StridedCopyParams) {
	n := tensor.ShapeNumel(p.Shape)
	for e := range n {
		d, s, rem := p.DstOff, p.SrcOff, e
		for k := len(p.Shape) - 1; k >= 0; k-- {
			i := rem % p.Shape[k]
			rem /= p.Shape[k]
			d += i * p.DstStride[k]
			s += i * p.SrcStride[k]
		}
		copy(dst[d*elemSize:(d+1)*elemSize], src[s*elemSize:(s+1)*elemSize])
	}
}

// StridedCopy checks StridedCopy in F32 and BF16 against a gather on the host values: dst
// starts poisoned with NaN, every element in the view must then hold its src element's
// bits and every other element its NaN; src is left alone. Views that reach past a
// tensor, and other invalid parameters, must panic naming the op.
func StridedCopy(t *testing.T, b kernels.Backend) {
	type P = kernels.StridedCopyParams
	cases := []struct {
		name string
		p    P
	}{
		// src [6, 10], columns 3..7, into a contiguous [6, 5].
		{"column slice", P{Shape: []int{6, 5}, SrcOff: 3, SrcStride: []int{10, 1}, DstStride: []int{5, 1}}},
		// A contiguous [6, 5] into columns 4..8 of a [6, 12].
		{"into columns", P{Shape: []int{6, 5}, DstOff: 4, DstStride: []int{12, 1}, SrcStride: []int{5, 1}}},
		// src [3, 7] broadcast over the middle dim of a [3, 4, 7] window at offset 5.
		{"broadcast", P{Shape: []int{3, 4, 7}, DstOff: 5, DstStride: []int{28, 7, 1}, SrcStride: []int{7, 0, 1}}},
		// src [2, 3, 4, 5] with dims 1 and 2 swapped, into a contiguous [2, 4, 3, 5].
		{"rank 4 permute", P{Shape: []int{2, 4, 3, 5}, DstStride: []int{60, 15, 5, 1}, SrcStride: []int{60, 5, 20, 1}}},
		// src [2, 3, 4, 5] with the last two dims swapped into every other element of
		// padded rows (no unit stride on either side's last dim).
		{"rank 4 transpose", P{Shape: []int{2, 3, 5, 4}, DstOff: 1, DstStride: []int{130, 42, 8, 2}, SrcOff: 2, SrcStride: []int{60, 20, 1, 5}}},
		// Every third element into every second.
		{"rank 1", P{Shape: []int{9}, DstOff: 1, DstStride: []int{2}, SrcOff: 2, SrcStride: []int{3}}},
		// Unit stride on dst only; a broadcast row.
		{"rank 1 broadcast", P{Shape: []int{11}, DstOff: 3, DstStride: []int{1}, SrcOff: 4, SrcStride: []int{0}}},
		// Large enough to split rows over workers: src [200, 1000], columns 100..799.
		{"large slice", P{Shape: []int{200, 700}, SrcOff: 100, SrcStride: []int{1000, 1}, DstStride: []int{700, 1}}},
		{"empty", P{Shape: []int{4, 0, 3}, DstStride: []int{3, 3, 1}, SrcStride: []int{3, 3, 1}}},
	}
	r := newRand(31)
	for _, dt := range []tensor.DType{tensor.F32, tensor.BF16} {
		for _, c := range cases {
			t.Run(fmt.Sprint(dt, "/", c.name), func(t *testing.T) {
				dn, sn := 3, 2 // slack past each view's end
				if tensor.ShapeNumel(c.p.Shape) > 0 {
					dn += viewEnd(c.p.DstOff, c.p.Shape, c.p.DstStride)
					sn += viewEnd(c.p.SrcOff, c.p.Shape, c.p.SrcStride)
				}
				dst := dev(b, dt, nans(dn), dn)
				src := dev(b, dt, randVals(r, sn, 1), sn)
				before, srcBefore := host(b, dst), host(b, src)
				want := append([]byte(nil), before.Data...)
				refStridedCopy(want, srcBefore.Data, dt.Size(), c.p)

				b.StridedCopy(dst, src, c.p)
				got := host(b, dst)
				wt, err := tensor.FromBytes(dt, []int{dn}, want)
				require.NoError(t, err)
				gv, wv := got.ToF32(), wt.ToF32()
				es := dt.Size()
				for i := range dn {
					g, w := got.Data[i*es:(i+1)*es], want[i*es:(i+1)*es]
					if string(g) != string(w) {
						require.Failf(t, "StridedCopy", "dst[%d] = %v, want %v (%v)", i, gv[i], wv[i], c.p)
					}
				}
				require.Equal(t, srcBefore.Data, host(b, src).Data, "src changed")
			})
		}
	}

	t.Run("panics", func(t *testing.T) {
		f32 := func(n int) *tensor.Tensor { return b.Alloc(tensor.F32, n) }
		ok := P{Shape: []int{6, 5}, DstOff: 4, DstStride: []int{12, 1}, SrcStride: []int{5, 1}}
		need := viewEnd(ok.DstOff, ok.Shape, ok.DstStride) // 69
		require.NotPanics(t, func() { b.StridedCopy(f32(need), f32(30), ok) })
		bad := map[string]func(){
			"dst one short": func() { b.StridedCopy(f32(need-1), f32(30), ok) },
			"src one short": func() { b.StridedCopy(f32(need), f32(29), ok) },
			"dst offset past the end": func() {
				b.StridedCopy(f32(4), f32(4), P{Shape: []int{1}, DstOff: 4, DstStride: []int{1}, SrcStride: []int{1}})
			},
			"huge stride": func() {
				b.StridedCopy(f32(8), f32(8), P{Shape: []int{2}, DstStride: []int{math.MaxInt / 2}, SrcStride: []int{1}})
			},
			"rank 5": func() {
				s := []int{1, 1, 1, 1, 1}
				b.StridedCopy(f32(1), f32(1), P{Shape: s, DstStride: s, SrcStride: s})
			},
			"stride count": func() {
				b.StridedCopy(f32(4), f32(4), P{Shape: []int{2, 2}, DstStride: []int{2, 1}, SrcStride: []int{2}})
			},
			"negative stride": func() {
				b.StridedCopy(f32(4), f32(4), P{Shape: []int{2}, DstStride: []int{1}, SrcStride: []int{-1}, SrcOff: 3})
			},
			"negative offset": func() {
				b.StridedCopy(f32(4), f32(4), P{Shape: []int{2}, DstOff: -1, DstStride: []int{1}, SrcStride: []int{1}})
			},
			"dtype mismatch": func() {
				b.StridedCopy(f32(4), b.Alloc(tensor.BF16, 4), P{Shape: []int{4}, DstStride: []int{1}, SrcStride: []int{1}})
			},
			"F16": func() {
				h := b.Alloc(tensor.F16, 4)
				b.StridedCopy(h, h, P{Shape: []int{2}, DstStride: []int{1}, SrcStride: []int{1}, SrcOff: 2})
			},
		}
		for name, fn := range bad {
			require.Panics(t, fn, name)
			require.Contains(t, fmt.Sprint(panicValue(fn)), "StridedCopy", name)
		}
	})
}

// panicValue returns what fn panics with (nil if it returns).
func panicValue(fn func()) (v any) {
	defer func() { v = recover() }()
	fn()
	return nil
}
