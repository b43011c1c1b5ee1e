package cpu

import (
	"fmt"
	"math"

	"github.com/gomegatron/gomegatron/tensor"
)

// amaxBlock is the fixed block size of CastWithAmax's partial maxima.
const amaxBlock = 16384

// CastWithAmax rounds src·scale (src F32 or BF16) into dst with round-to-nearest-even: BF16, F16,
// F8E4M3 or F8E5M2 (FP8 saturating to ±max finite, as Transformer Engine casts), or F32
// (a scaled copy). It returns amax = max|src| computed before scaling; a NaN in src makes
// amax NaN so overflow checks see it.
func (b *Backend) CastWithAmax(dst, src *tensor.Tensor, scale float32) float32 {
	var wide float32
	if b.bf16("CastWithAmax", func(t []*tensor.Tensor) { wide = b.CastWithAmax(dst, t[0], scale) }, rd("src", src)) {
		return wide
	}
	if dst.Numel() != src.Numel() {
		panic(fmt.Sprintf("cpu.CastWithAmax: dst %v and src %v differ in size", dst, src))
	}
	ss := f32("CastWithAmax", src)
	var u16 []uint16
	var u8 []byte
	var d32 []float32
	dt := dst.DType()
	switch dt {
	case tensor.BF16, tensor.F16:
		u16 = dst.U16()
	case tensor.F8E4M3, tensor.F8E5M2:
		u8 = dst.Data
	case tensor.F32:
		d32 = dst.F32()
	default:
		panic(fmt.Sprintf("cpu.CastWithAmax: cannot cast into %v", dst))
	}
	nb := (len(ss) + amaxBlock - 1) / amaxBlock
	part := b.getScratch(nb)
	defer b.putScratch(part)
	parallelFor(nb, 1, func(lo, hi int) {
		for blk := lo; blk < hi; blk++ {
			i0, i1 := blk*amaxBlock, min((blk+1)*amaxBlock, len(ss))
			var am float32
			for i := i0; i < i1; i++ {
				x := ss[i]
				am = max(am, float32(math.Abs(float64(x))))
				y := x * scale
				switch dt {
				case tensor.BF16:
					u16[i] = tensor.BF16FromF32(y)
				case tensor.F16:
					u16[i] = tensor.F16FromF32(y)
				case tensor.F8E4M3:
					u8[i] = tensor.E4M3FromF32(y, true)
				case tensor.F8E5M2:
					u8[i] = tensor.E5M2FromF32(y, true)
				default:
					d32[i] = y
				}
			}
			part.v[blk] = am
		}
	})
	var amax float32
	for _, a := range part.v {
		amax = max(amax, a)
	}
	return amax
}

// Cast converts src into dst among F32, BF16 and F16 (see kernels.Backend).
func (b *Backend) Cast(dst, src *tensor.Tensor) {
	n := src.Numel()
	if dst.Numel() != n {
		panic(fmt.Sprintf("cpu.Cast: dst %v and src %v differ in size", dst, src))
	}
	load, store := floatLoader(src), floatStorer(dst)
	fp8 := src.DType() == tensor.F8E4M3 || src.DType() == tensor.F8E5M2
	if load == nil || store == nil || fp8 && dst.DType() != tensor.F32 {
		panic(fmt.Sprintf("cpu.Cast: cannot cast %v into %v (F32, BF16 and F16; FP8 into F32)", src, dst))
	}
	parallelFor(n, 1<<14, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			store(i, load(i))
		}
	})
}

// floatLoader reads element i of an F32, BF16, F16 or FP8 tensor as float32 (nil for others).
func floatLoader(t *tensor.Tensor) func(i int) float32 {
	switch t.DType() {
	case tensor.F32:
		v := t.F32()
		return func(i int) float32 { return v[i] }
	case tensor.BF16:
		v := t.U16()
		return func(i int) float32 { return tensor.F32FromBF16(v[i]) }
	case tensor.F16:
		v := t.U16()
		return func(i int) float32 { return tensor.F32FromF16(v[i]) }
	case tensor.F8E4M3:
		return func(i int) float32 { return tensor.F32FromE4M3(t.Data[i]) }
	case tensor.F8E5M2:
		return func(i int) float32 { return tensor.F32FromE5M2(t.Data[i]) }
	}
	return nil
}

// floatStorer writes element i of an F32, BF16 or F16 tensor, rounding to nearest even.
func floatStorer(t *tensor.Tensor) func(i int, x float32) {
	switch t.DType() {
	case tensor.F32:
		v := t.F32()
		return func(i int, x float32) { v[i] = x }
	case tensor.BF16:
		v := t.U16()
		return func(i int, x float32) { v[i] = tensor.BF16FromF32(x) }
	case tensor.F16:
		v := t.U16()
		return func(i int, x float32) { v[i] = tensor.F16FromF32(x) }
	}
	return nil
}

// Round rounds the F32 tensor x in place to the nearest BF16 or F16 value.
func (b *Backend) Round(x *tensor.Tensor, dt tensor.DType) {
	v := f32("Round", x)
	var rt func(float32) float32
	switch dt {
	case tensor.BF16:
		rt = func(f float32) float32 { return tensor.F32FromBF16(tensor.BF16FromF32(f)) }
	case tensor.F16:
		rt = func(f float32) float32 { return tensor.F32FromF16(tensor.F16FromF32(f)) }
	case tensor.F32:
		return
	default:
		panic(fmt.Sprintf("cpu.Round: cannot round to %v (BF16 or F16)", dt))
	}
	parallelFor(len(v), 1<<14, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			v[i] = rt(v[i])
		}
	})
}

// CastWithAmaxInto is CastWithAmax folding max|src| into amax[0].
func (b *Backend) CastWithAmaxInto(dst, src *tensor.Tensor, scale float32, amax *tensor.Tensor) {
	a := f32("CastWithAmaxInto", amax)
	if len(a) != 1 {
		panic(fmt.Sprintf("cpu.CastWithAmaxInto: amax %v must have one element", amax))
	}
	a[0] = max(a[0], b.CastWithAmax(dst, src, scale))
}
