package cpu

import (
	"fmt"

	"github.com/gomegatron/gomegatron/kernels"
	"github.com/gomegatron/gomegatron/tensor"
)

// Gemm computes C[i] = Alpha·op(A[i])·op(B[i]) + Beta·C[i] for i < p.Batch (see
// kernels.GemmParams) with one Sgemm call per batch entry; Sgemm parallelises inside.
// A and B are F32, BF16 or F16 (each independently) and, beyond the interface, FP8
// E4M3/E5M2 (fold the scale-inverses into Alpha). Narrow operands are widened exactly to
// float32 into pooled scratch buffers (one buffer per operand, the whole tensor) before
// the Sgemm calls, so every accumulation is fp32. C is F32, or BF16 with A and B BF16:
// then C is widened into scratch, Sgemm forms Alpha·AB + Beta·C in F32 there, and the
// result is rounded once into C.
func (b *Backend) Gemm(p kernels.GemmParams, a, bm, c *tensor.Tensor) {
	batch := max(p.Batch, 1)
	if p.M < 0 || p.N < 0 || p.K < 0 {
		panic(fmt.Sprintf("cpu.Gemm: negative size in %+v", p))
	}
	// Stored shapes: A is M×K (K×M when transposed), B is K×N (N×K), C is M×N.
	ar, ac := p.M, p.K
	if p.TransA {
		ar, ac = p.K, p.M
	}
	br, bc := p.K, p.N
	if p.TransB {
		br, bc = p.N, p.K
	}
	lda, ldb, ldc := orPacked(p.LDA, ac), orPacked(p.LDB, bc), orPacked(p.LDC, p.N)
	checkExtent("A", p, a, batch, p.StrideA, ar, ac, lda)
	checkExtent("B", p, bm, batch, p.StrideB, br, bc, ldb)
	checkExtent("C", p, c, batch, p.StrideC, p.M, p.N, ldc)
	if c.DType() != tensor.BF16 {
		f32("Gemm", c)
	} else if a.DType() != tensor.BF16 || bm.DType() != tensor.BF16 {
		panic(fmt.Sprintf("cpu.Gemm: C %v is BF16, so A and B must be BF16, got A %v, B %v", c, a, bm))
	}
	if p.M == 0 || p.N == 0 {
		return
	}
	cs, cBuf := b.gemmC(p, c, batch, ldc)
	as, aBuf := b.gemmOperand(a)
	bs, bBuf := b.gemmOperand(bm)
	if batch == 1 && p.M == 1 && !p.TransA && p.TransB && hasDotAVX2 && p.N*p.K >= gemvMin {
		gemv(p.N, p.K, p.Alpha, as, bs, ldb, p.Beta, cs)
	} else if batch > 1 && p.M*p.N*p.K <= smallGemm && p.StrideC >= (p.M-1)*ldc+p.N {
		// Many small products (attention-like batches): one goroutine per group of entries,
		// each multiplying on its own thread. The result bits do not depend on the thread
		// count (Sgemm's summation order is fixed by its block sizes).
		parallelFor(batch, max(1, smallGemm/max(1, p.M*p.N*p.K)/8), func(lo, hi int) {
			for i := lo; i < hi; i++ {
				blockGemm(p.TransA, p.TransB, p.M, p.N, p.K, p.Alpha,
					as[i*p.StrideA:], lda, bs[i*p.StrideB:], ldb, p.Beta, cs[i*p.StrideC:], ldc)
			}
		})
	} else {
		for i := range batch {
			Sgemm(p.TransA, p.TransB, p.M, p.N, p.K, p.Alpha,
				as[i*p.StrideA:], lda, bs[i*p.StrideB:], ldb, p.Beta, cs[i*p.StrideC:], ldc)
		}
	}
	if aBuf != nil {
		b.putScratch(aBuf)
	}
	if bBuf != nil {
		b.putScratch(bBuf)
	}
	if cBuf != nil {
		u := c.U16()
		eachCRow(p, batch, ldc, func(off int) {
			for j, v := range cBuf.v[off : off+p.N] {
				u[off+j] = tensor.BF16FromF32(v)
			}
		})
		b.putScratch(cBuf)
	}
}

// gemmC returns C as float32: its own storage when F32; for BF16 C, a
// pooled scratch copy (returned too, to round back and release). Only C's M×N blocks are
// widened, and only when Beta ≠ 0 (Beta = 0 overwrites C without reading it), so elements
// in LDC/StrideC gaps are never touched.
func (b *Backend) gemmC(p kernels.GemmParams, c *tensor.Tensor, batch, ldc int) ([]float32, *scratchBuf) {
	if c.DType() != tensor.BF16 {
		return f32("Gemm", c), nil
	}
	s := b.getScratch(c.Numel())
	if p.Beta != 0 {
		u := c.U16()
		eachCRow(p, batch, ldc, func(off int) {
			for j, h := range u[off : off+p.N] {
				s.v[off+j] = tensor.F32FromBF16(h)
			}
		})
	}
	return s.v, s
}

// eachCRow calls f with the offset of every row of every C matrix; in parallel unless
// batch entries overlap (StrideC smaller than a matrix), where rows may repeat.
func eachCRow(p kernels.GemmParams, batch, ldc int, f func(off int)) {
	grain := grainFor(p.N)
	if batch > 1 && p.StrideC < (p.M-1)*ldc+p.N {
		grain = batch * p.M
	}
	parallelFor(batch*p.M, grain, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			f((r/p.M)*p.StrideC + (r%p.M)*ldc)
		}
	})
}

// smallGemm is the M·N·K below which a batched Gemm parallelises over batch entries
// instead of inside each product.
const smallGemm = 128 * 128 * 128

func orPacked(ld, cols int) int {
	if ld == 0 {
		return cols
	}
	return ld
}

// checkExtent panics unless t holds batch matrices of rows×cols with row stride ld and
// batch stride stride.
func checkExtent(name string, p kernels.GemmParams, t *tensor.Tensor, batch, stride, rows, cols, ld int) {
	if rows == 0 || cols == 0 {
		return
	}
	if ld < cols || (batch > 1 && stride < 0) {
		panic(fmt.Sprintf("cpu.Gemm: %s %v: leading dim %d < %d columns (params %+v)", name, t, ld, cols, p))
	}
	need := (batch-1)*stride + (rows-1)*ld + cols
	if need > t.Numel() {
		panic(fmt.Sprintf("cpu.Gemm: %s %v holds %d elements, params %+v need %d", name, t, t.Numel(), p, need))
	}
}

// gemmOperand returns t as float32: its own storage when F32, else a pooled scratch copy
// (returned too, for release).
func (b *Backend) gemmOperand(t *tensor.Tensor) ([]float32, *scratchBuf) {
	switch t.DType() {
	case tensor.F32:
		return f32("Gemm", t), nil
	case tensor.BF16, tensor.F16, tensor.F8E4M3, tensor.F8E5M2:
		s := b.getScratch(t.Numel())
		dt := t.DType()
		parallelFor(len(s.v), elemGrain, func(lo, hi int) {
			d := s.v[lo:hi]
			switch dt {
			case tensor.BF16:
				for i, h := range t.U16()[lo:hi] {
					d[i] = tensor.F32FromBF16(h)
				}
			case tensor.F16:
				for i, h := range t.U16()[lo:hi] {
					d[i] = tensor.F32FromF16(h)
				}
			case tensor.F8E4M3:
				for i, h := range t.Data[lo:hi] {
					d[i] = tensor.F32FromE4M3(h)
				}
			default:
				for i, h := range t.Data[lo:hi] {
					d[i] = tensor.F32FromE5M2(h)
				}
			}
		})
		return s.v, s
	}
	panic(fmt.Sprintf("cpu.Gemm: operand %v must be F32, BF16, F16, F8E4M3 or F8E5M2", t))
}
