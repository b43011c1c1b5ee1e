package cpu

import (
	"fmt"
	"math"

	"github.com/gomegatron/gomegatron/tensor"
)

// amaxBlock is the fixed block size of CastWithAmax's partial maxima.
const amaxBlock = 16384

// CastWithAmax rounds src·scale (src F32) into dst with round-to-nearest-even: BF16, F16,
// F8E4M3 or F8E5M2 (FP8 saturating to ±max finite, as Transformer Engine casts), or F32
// (a scaled copy). It returns amax = max|src| computed before scaling; a NaN in src makes
// amax NaN so overflow checks see it.
func (b *Backend) CastWithAmax(dst, src *tensor.Tensor, scale float32) float32 {
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
