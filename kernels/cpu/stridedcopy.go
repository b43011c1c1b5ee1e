package cpu

import (
	"fmt"

	"github.com/gomegatron/gomegatron/kernels"
	"github.com/gomegatron/gomegatron/tensor"
)

// StridedCopy copies a strided view of src into one of dst (see kernels.Backend): F32, or
// BF16 copied as its raw 16-bit values (a copy needs no widening).
func (*Backend) StridedCopy(dst, src *tensor.Tensor, p kernels.StridedCopyParams) {
	dt := dst.DType()
	if src.DType() != dt || (dt != tensor.F32 && dt != tensor.BF16) || dst.Device.Type != tensor.CPU || src.Device.Type != tensor.CPU {
		panic(fmt.Sprintf("cpu.StridedCopy: dst %v, src %v: need host tensors of one dtype, F32 or BF16", dst, src))
	}
	if err := p.Validate(dst.Numel(), src.Numel()); err != nil {
		panic(fmt.Sprintf("cpu.StridedCopy: dst %v, src %v: %v", dst, src, err))
	}
	if dt == tensor.F32 {
		stridedCopy(dst.F32(), src.F32(), p)
	} else {
		stridedCopy(dst.U16(), src.U16(), p)
	}
}

// stridedCopy runs over the view in row-major order, padded to rank 4 with leading unit
// dims, in chunks of elements; each chunk copies runs along the last dim (copy() where both
// last strides are 1).
func stridedCopy[T float32 | uint16](d, s []T, p kernels.StridedCopyParams) {
	r := len(p.Shape)
	dims := [4]int{1, 1, 1, 1}
	var ds, ss [4]int
	n := 1
	for k := range r {
		dims[4-r+k], ds[4-r+k], ss[4-r+k] = p.Shape[k], p.DstStride[k], p.SrcStride[k]
		n *= p.Shape[k]
	}
	n3 := dims[3]
	contiguous := ds[3] == 1 && ss[3] == 1
	parallelFor(n, 4*elemGrain, func(lo, hi int) {
		for e := lo; e < hi; {
			row, j0 := e/n3, e%n3
			j1 := min(n3, j0+hi-e)
			i2 := row % dims[2]
			i1 := (row / dims[2]) % dims[1]
			i0 := row / (dims[2] * dims[1])
			do := p.DstOff + i0*ds[0] + i1*ds[1] + i2*ds[2]
			so := p.SrcOff + i0*ss[0] + i1*ss[1] + i2*ss[2]
			if contiguous {
				copy(d[do+j0:do+j1], s[so+j0:so+j1])
			} else {
				for j := j0; j < j1; j++ {
					d[do+j*ds[3]] = s[so+j*ss[3]]
				}
			}
			e += j1 - j0
		}
	})
}
