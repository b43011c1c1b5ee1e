package cuda

import (
	"errors"
	"fmt"

	"github.com/gomegatron/gomegatron/kernels"
	"github.com/gomegatron/gomegatron/tensor"
)

// cudaType maps a tensor dtype to cudaDataType.
func cudaType(dt tensor.DType) (int, bool) {
	switch dt {
	case tensor.F32:
		return rF32, true
	case tensor.F16:
		return rF16, true
	case tensor.BF16:
		return rBF16, true
	case tensor.F8E4M3:
		return rE4M3, true
	case tensor.F8E5M2:
		return rE5M2, true
	}
	return 0, false
}

// rowMajorSpec maps the row-major C = op(A)·op(B) of kernels.GemmParams onto cuBLASLt's
// column-major API. A row-major matrix is its transpose in column-major, so
// Cᵀ (N×M) = op(B)ᵀ·op(A)ᵀ: cuBLAS's "A" is our B with op TransB, its "B" is our A with op
// TransA, m = N, n = M. Leading dimensions are the row strides (packed: the stored row
// length).
func rowMajorSpec(p kernels.GemmParams, at, bt, ct, dt int) (matmulSpec, error) {
	if p.M < 0 || p.N < 0 || p.K < 0 {
		return matmulSpec{}, fmt.Errorf("negative size in %+v", p)
	}
	lda, ldb, ldc := p.LDA, p.LDB, p.LDC
	if lda == 0 {
		lda = p.K
		if p.TransA {
			lda = p.M
		}
	}
	if ldb == 0 {
		ldb = p.N
		if p.TransB {
			ldb = p.K
		}
	}
	if ldc == 0 {
		ldc = p.N
	}
	batch := max(p.Batch, 1)
	return matmulSpec{
		transA: p.TransB, transB: p.TransA,
		m: p.N, n: p.M, k: p.K,
		aType: bt, bType: at, cType: ct, dType: dt,
		lda: ldb, ldb: lda, ldc: ldc, ldd: ldc,
		batch:   batch,
		strideA: int64(p.StrideB), strideB: int64(p.StrideA), strideC: int64(p.StrideC), strideD: int64(p.StrideC),
		compute: computeF32,
	}, nil
}

// gemmElems checks that a tensor holds every element a (possibly strided, batched) matrix
// touches: (batch−1)·stride + (rows−1)·ld + cols.
func gemmElems(op, name string, t *tensor.Tensor, batch, stride, rows, cols, ld int) {
	if rows == 0 || cols == 0 {
		return
	}
	need := (batch-1)*stride + (rows-1)*ld + cols
	if t.Numel() < need || ld < cols {
		panic(fmt.Sprintf("cuda.%s: %s %v too small for %d×%d (ld %d) × batch %d stride %d", op, name, t, rows, cols, ld, batch, stride))
	}
}

// Gemm: see kernels.GemmParams. A and B are F32 (fp32, or TF32 when b.TF32), BF16 or F16;
// C is F32, or BF16 with BF16 A and B (cuBLASLt forms Alpha·AB + Beta·C in F32 and rounds
// once into C); accumulation in fp32 (CUBLAS_COMPUTE_32F).
func (b *Backend) Gemm(p kernels.GemmParams, a, bm, c *tensor.Tensor) {
	b.mustDev("Gemm", a, bm, c)
	if a.DType() != bm.DType() || (c.DType() != tensor.F32 && (c.DType() != tensor.BF16 || a.DType() != tensor.BF16)) {
		panic(fmt.Sprintf("cuda.Gemm: A %v and B %v must share a dtype and C %v be F32 (or BF16 with BF16 A and B)", a, bm, c))
	}
	at, ok := cudaType(a.DType())
	if !ok || a.DType() == tensor.F8E4M3 || a.DType() == tensor.F8E5M2 {
		panic(fmt.Sprintf("cuda.Gemm: A %v: want F32, BF16 or F16 (FP8 goes through GemmFP8)", a))
	}
	ct, _ := cudaType(c.DType())
	s, err := rowMajorSpec(p, at, at, ct, ct)
	must(err)
	if a.DType() == tensor.F32 && b.TF32 {
		s.compute = computeF32TF32
	}
	b.checkGemm("Gemm", p, a, bm, c)
	if p.M == 0 || p.N == 0 {
		return
	}
	if p.K == 0 { // an empty sum: C = Beta·C, row by row (cuBLASLt rejects k = 0)
		if p.Beta != 1 {
			for i := range max(p.Batch, 1) {
				for r := range p.M {
					row := b.Wrap(c.DType(), c.Ptr+uintptr(c.DType().Size()*(i*p.StrideC+r*s.ldc)), p.N)
					b.Scale(row, p.Beta)
				}
			}
		}
		return
	}
	b.matmul(s, p.Alpha, p.Beta, bm.Ptr, a.Ptr, c.Ptr, c.Ptr) // cuBLAS's A is our B
}

func (b *Backend) checkGemm(op string, p kernels.GemmParams, a, bm, c *tensor.Tensor) {
	batch := max(p.Batch, 1)
	s, _ := rowMajorSpec(p, 0, 0, 0, 0)
	ar, ac := p.M, p.K
	if p.TransA {
		ar, ac = p.K, p.M
	}
	br, bc := p.K, p.N
	if p.TransB {
		br, bc = p.N, p.K
	}
	if p.K > 0 {
		gemmElems(op, "A", a, batch, p.StrideA, ar, ac, s.ldb)
		gemmElems(op, "B", bm, batch, p.StrideB, br, bc, s.lda)
	}
	gemmElems(op, "C", c, batch, p.StrideC, p.M, p.N, s.ldc)
}

// matmul plans (once per shape) and runs one cuBLASLt matmul.
func (b *Backend) matmul(s matmulSpec, alpha, beta float32, a, bm, c, d uintptr) {
	lt := b.dev.libs.lt
	b.run(func() error {
		pl, ok := b.plans[s]
		if !ok {
			var err error
			if pl, err = lt.newPlan(b.lt, s, b.wsBytes); err != nil {
				return err
			}
			b.plans[s] = pl
		}
		run := func() error { return lt.run(b.lt, pl, alpha, beta, a, bm, c, d, b.ws, b.wsBytes, b.dev.stream) }
		if b.dev.prof != nil {
			return b.dev.prof.time(s.opName(), run)
		}
		return run()
	})
}

// FP8Scales are the per-tensor scaling pointers of an FP8 GEMM: device addresses of
// float32 values (cuBLASLt reads them on the device, so delayed-scaling recipes update them
// without a host round trip). AScale and BScale dequantise the inputs (the inverse of the
// cast scale); DScale quantises an FP8 output; AmaxD receives max|D| before DScale. Zero
// means unused (a scale of 1).
type FP8Scales struct {
	AScale, BScale, DScale, AmaxD uintptr
	// FastAccum (CUBLASLT_MATMUL_DESC_FAST_ACCUM) trades accumulation precision for speed;
	// Transformer Engine uses it in forward passes.
	FastAccum bool
}

// GemmFP8 computes D = Alpha·AScale·BScale·A·Bᵀ (+ Beta·D) with FP8 A and B on Hopper or
// Ada through cuBLASLt. cuBLASLt's FP8 path is "TN" only, which in row-major terms is
// TransA = false, TransB = true: A [M, K] and B [N, K], the layout of a linear layer's
// input and weight. E5M2×E5M2 is not supported (E4M3×E4M3, E4M3×E5M2, E5M2×E4M3 are).
// D is F32, BF16 or F16, or FP8 (then Beta must be 0 and DScale/AmaxD apply).
func (b *Backend) GemmFP8(p kernels.GemmParams, a, bm, d *tensor.Tensor, sc FP8Scales) error {
	b.mustDev("GemmFP8", a, bm, d)
	if p.TransA || !p.TransB {
		return fmt.Errorf("cuda.GemmFP8: only TransA=false, TransB=true (cuBLASLt's TN FP8 layout) is supported, got %+v", p)
	}
	at, okA := cudaType(a.DType())
	bt, okB := cudaType(bm.DType())
	fp8 := func(t int) bool { return t == rE4M3 || t == rE5M2 }
	if !okA || !okB || !fp8(at) || !fp8(bt) {
		return fmt.Errorf("cuda.GemmFP8: A %v and B %v must be F8E4M3 or F8E5M2", a, bm)
	}
	if at == rE5M2 && bt == rE5M2 {
		return fmt.Errorf("cuda.GemmFP8: E5M2×E5M2 is not supported by cuBLASLt")
	}
	dt, ok := cudaType(d.DType())
	if !ok {
		return fmt.Errorf("cuda.GemmFP8: D %v has no cuBLASLt type", d)
	}
	ct := dt
	if fp8(dt) {
		if p.Beta != 0 {
			return fmt.Errorf("cuda.GemmFP8: Beta must be 0 with an FP8 output")
		}
		ct = rBF16 // cuBLASLt wants a 16-bit C type beside an FP8 D; with β = 0 C is not read
	}
	s, err := rowMajorSpec(p, at, bt, ct, dt)
	if err != nil {
		return err
	}
	s.aScale, s.bScale = sc.BScale, sc.AScale // cuBLAS's A is our B
	s.dScale, s.amaxD, s.fastAccum = sc.DScale, sc.AmaxD, sc.FastAccum
	b.checkGemm("GemmFP8", p, a, bm, d)
	if p.M == 0 || p.N == 0 {
		return nil
	}
	lt := b.dev.libs.lt
	err = b.dev.Do(func() error {
		pl, ok := b.plans[s]
		if !ok {
			var err error
			if pl, err = lt.newPlan(b.lt, s, b.wsBytes); err != nil {
				return err
			}
			b.plans[s] = pl
		}
		run := func() error {
			return lt.run(b.lt, pl, p.Alpha, p.Beta, bm.Ptr, a.Ptr, d.Ptr, d.Ptr, b.ws, b.wsBytes, b.dev.stream)
		}
		if b.dev.prof != nil {
			return b.dev.prof.time(s.opName(), run)
		}
		return run()
	})
	if e := (*Error)(nil); errors.As(err, &e) && e.Code == 15 {
		for _, ptr := range []uintptr{sc.AScale, sc.BScale, sc.DScale, sc.AmaxD} {
			if ptr%16 != 0 {
				return fmt.Errorf("%w (scale pointer %#x is not 16-byte aligned: cuBLASLt refused a B scale 4 bytes after the A scale on an H200; give each scale its own allocation)", err, ptr)
			}
		}
	}
	return err
}

var _ kernels.FP8Gemmer = (*Backend)(nil)

// GemmFP8TN is GemmFP8 with per-tensor scaling folded into p.Alpha (kernels.FP8Gemmer). It
// declines devices before compute capability 8.9 and dimensions that are not multiples of
// 16 (cuBLASLt's FP8 requirement), and panics on a failing call, as the other ops do.
func (b *Backend) GemmFP8TN(p kernels.GemmParams, a, bm, c *tensor.Tensor, fast bool) bool {
	if b.dev.CC < 89 || p.M%16 != 0 || p.N%16 != 0 || p.K%16 != 0 || p.Batch > 1 {
		return false
	}
	must(b.GemmFP8(p, a, bm, c, FP8Scales{FastAccum: fast && !b.NoFastFP8Accum}))
	return true
}
