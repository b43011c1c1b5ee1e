package cuda

import (
	"fmt"
	"math"
	"unsafe"

	"github.com/gomegatron/gomegatron/kernels"
	"github.com/gomegatron/gomegatron/kernels/cpu"
	"github.com/gomegatron/gomegatron/tensor"
)

// Fill sets every element of x (F32 or BF16) to v.
func (b *Backend) Fill(x *tensor.Tensor, v float32) {
	dt := b.acts("Fill", x)
	b.elem("gm_fill"+sfx(dt), x.Numel(), x.Ptr, v, int64(x.Numel()))
}

// Copy copies src into dst (same shape and dtype, any dtype).
func (b *Backend) Copy(dst, src *tensor.Tensor) {
	b.mustDev("Copy", dst, src)
	sameShape("Copy", dst, src)
	if dst.DType() != src.DType() {
		panic(fmt.Sprintf("cuda.Copy: dtype mismatch %v vs %v", dst, src))
	}
	b.run(func() error { return b.dev.copyDtoD(dst.Ptr, src.Ptr, dst.Bytes()) })
}

// Permute: out.shape[i] = x.shape[perm[i]], rank ≤ 4: a strided copy into out's
// contiguous strides from x's strides reordered by perm.
func (b *Backend) Permute(out, x *tensor.Tensor, perm []int) {
	dt := b.acts("Permute", out, x)
	r := x.Rank()
	if r < 1 || r > 4 || len(perm) != r || out.Rank() != r {
		panic(fmt.Sprintf("cuda.Permute: out %v, x %v, perm %v: need equal ranks 1..4", out, x, perm))
	}
	seen := [4]bool{}
	for i, p := range perm {
		if p < 0 || p >= r || seen[p] || out.Dim(i) != x.Dim(p) {
			panic(fmt.Sprintf("cuda.Permute: perm %v does not map x %v onto out %v", perm, x, out))
		}
		seen[p] = true
	}
	xstride, ostride, st := make([]int, r), make([]int, r), make([]int, r)
	xs, os := 1, 1
	for i := r - 1; i >= 0; i-- {
		xstride[i], ostride[i] = xs, os
		xs *= x.Dim(i)
		os *= out.Dim(i)
	}
	for i, p := range perm {
		st[i] = xstride[p]
	}
	b.stridedCopy(dt, out.Ptr, x.Ptr, out.Shape(), ostride, st)
}

// StridedCopy: see kernels.Backend. The offsets move the device pointers.
func (b *Backend) StridedCopy(dst, src *tensor.Tensor, p kernels.StridedCopyParams) {
	dt := b.acts("StridedCopy", dst, src)
	if err := p.Validate(dst.Numel(), src.Numel()); err != nil {
		panic(fmt.Sprintf("cuda.StridedCopy: dst %v, src %v: %v", dst, src, err))
	}
	es := uintptr(dt.Size())
	b.stridedCopy(dt, dst.Ptr+uintptr(p.DstOff)*es, src.Ptr+uintptr(p.SrcOff)*es, p.Shape, p.DstStride, p.SrcStride)
}

// stridedCopy launches gm_strided_copy over shape (rank 1..4, padded to 4 with leading
// unit dims) from src to dst, both already offset.
func (b *Backend) stridedCopy(dt tensor.DType, dst, src uintptr, shape, dstStride, srcStride []int) {
	r := len(shape)
	d := [4]int64{1, 1, 1, 1}
	var ds, ss [4]int64
	n := 1
	for k := range r {
		d[4-r+k], ds[4-r+k], ss[4-r+k] = int64(shape[k]), int64(dstStride[k]), int64(srcStride[k])
		n *= shape[k]
	}
	b.elem("gm_strided_copy"+sfx(dt), n, dst, src, d[0], d[1], d[2], d[3], ds[0], ds[1], ds[2], ds[3], ss[0], ss[1], ss[2], ss[3])
}

// SplitQKV / MergeQKV: see kernels.Backend.
func (b *Backend) SplitQKV(q, k, v, qkv *tensor.Tensor, groups, qPerGroup int) {
	b.qkv("SplitQKV", q, k, v, qkv, groups, qPerGroup, false)
}

func (b *Backend) MergeQKV(qkv, q, k, v *tensor.Tensor, groups, qPerGroup int) {
	b.qkv("MergeQKV", q, k, v, qkv, groups, qPerGroup, true)
}

func (b *Backend) qkv(op string, q, k, v, qkv *tensor.Tensor, groups, r int, merge bool) {
	dt := b.acts(op, q, k, v, qkv)
	if q.Rank() != 4 || k.Rank() != 4 || v.Rank() != 4 {
		panic(fmt.Sprintf("cuda.%s: q %v, k %v, v %v must be rank 4", op, q, k, v))
	}
	bs, s, d := q.Dim(0), q.Dim(2), q.Dim(3)
	if q.Dim(1) != groups*r || k.Dim(1) != groups || v.Dim(1) != groups || qkv.Numel() != s*bs*groups*(r+2)*d {
		panic(fmt.Sprintf("cuda.%s: shapes %v %v %v %v do not match the group layout", op, q, k, v, qkv))
	}
	b.elem("gm_qkv"+sfx(dt), qkv.Numel(), q.Ptr, k.Ptr, v.Ptr, qkv.Ptr, int32(s), int32(bs), int32(groups), int32(r), int32(d), bool32(merge))
}

func (b *Backend) Scale(x *tensor.Tensor, alpha float32) {
	dt := b.acts("Scale", x)
	b.elem("gm_scale"+sfx(dt), x.Numel(), x.Ptr, alpha, int64(x.Numel()))
}

func (b *Backend) Axpy(y *tensor.Tensor, alpha float32, x *tensor.Tensor) {
	dt := b.acts("Axpy", y, x)
	sameShape("Axpy", y, x)
	b.elem("gm_axpy"+sfx(dt), y.Numel(), y.Ptr, alpha, x.Ptr, int64(y.Numel()))
}

func (b *Backend) Add(out, x, y *tensor.Tensor) {
	dt := b.acts("Add", out, x, y)
	sameShape("Add", out, x, y)
	b.elem("gm_add"+sfx(dt), out.Numel(), out.Ptr, x.Ptr, y.Ptr, int64(out.Numel()))
}

func (b *Backend) Mul(out, x, y *tensor.Tensor) {
	dt := b.acts("Mul", out, x, y)
	sameShape("Mul", out, x, y)
	b.elem("gm_mul"+sfx(dt), out.Numel(), out.Ptr, x.Ptr, y.Ptr, int64(out.Numel()))
}

// SumSquares returns Σ x², accumulated in float64 on the device: block partial sums into
// scratch, then added in a fixed order, so the result repeats bit for bit.
func (b *Backend) SumSquares(x *tensor.Tensor) float64 {
	dt := b.acts("SumSquares", x)
	var out [8]byte
	if x.Numel() == 0 {
		return 0
	}
	nb := b.grid1D(x.Numel())
	part := b.scratch + 8
	if uintptr(8+8*nb) > b.scratchN {
		panic(fmt.Sprintf("cuda.SumSquares: %d partial sums overflow the %d-byte scratch", nb, b.scratchN))
	}
	b.run(func() error {
		if err := b.dev.launch("gm_sumsq"+sfx(dt), nb, blockSize, 0, part, x.Ptr, int64(x.Numel())); err != nil {
			return err
		}
		if err := b.dev.launch("gm_sumsq_finish", 1, blockSize, 0, b.scratch, part, int32(nb)); err != nil {
			return err
		}
		return b.dev.download(out[:], b.scratch)
	})
	return *(*float64)(unsafe.Pointer(&out[0]))
}

func (b *Backend) AddBias(x, bias *tensor.Tensor) {
	dt := b.acts("AddBias", x)
	b.f32("AddBias", bias)
	n, f := rowsCols(x)
	wantNumel("AddBias", "bias", bias, f)
	b.elem("gm_add_bias"+sfx(dt), n*f, x.Ptr, bias.Ptr, int64(n), int32(f))
}

func (b *Backend) BiasGrad(db, dout *tensor.Tensor) {
	dt := b.acts("BiasGrad", dout)
	b.f32("BiasGrad", db)
	n, f := rowsCols(dout)
	wantNumel("BiasGrad", "db", db, f)
	b.columnSums(dt, nil, db, dout, nil, nil, nil, n, f)
}

func (b *Backend) ScaleRows(x, s *tensor.Tensor) {
	dt := b.acts("ScaleRows", x)
	b.f32("ScaleRows", s)
	n := s.Numel()
	if n == 0 || x.Numel()%n != 0 {
		panic(fmt.Sprintf("cuda.ScaleRows: x %v is not [%d, ·]", x, n))
	}
	b.elem("gm_scale_rows"+sfx(dt), x.Numel(), x.Ptr, s.Ptr, int64(n), int32(x.Numel()/n))
}

func (b *Backend) RowDot(out, x, y *tensor.Tensor) {
	dt := b.acts("RowDot", x, y)
	b.f32("RowDot", out)
	n := out.Numel()
	if n == 0 || x.Numel() != y.Numel() || x.Numel()%n != 0 {
		panic(fmt.Sprintf("cuda.RowDot: a %v and b %v must both be [%d, ·]", x, y, n))
	}
	b.rowKernel("gm_row_dot"+sfx(dt), n, out.Ptr, x.Ptr, y.Ptr, int32(x.Numel()/n))
}

func embeddingDims(op string, table, rows, ids *tensor.Tensor) (v, h int) {
	if table.Rank() != 2 {
		panic(fmt.Sprintf("cuda.%s: table %v must be [V, H]", op, table))
	}
	v, h = table.Dim(0), table.Dim(1)
	if rows.Numel() != ids.Numel()*h {
		panic(fmt.Sprintf("cuda.%s: rows %v must be [%d, %d] for ids %v", op, rows, ids.Numel(), h, ids))
	}
	return v, h
}

func (b *Backend) Embedding(out, table, ids *tensor.Tensor, start int) {
	dt := b.acts("Embedding", out)
	kernel := "gm_embedding" + sfx(dt)
	if table.DType() == tensor.BF16 { // 16-bit model weights
		b.mustDev("Embedding", table)
		kernel = "gm_embedding_f32_tbf16"
		if dt == tensor.BF16 {
			kernel = "gm_embedding_bf16_tbf16"
		}
	} else {
		b.f32("Embedding", table)
	}
	is64 := b.idsKind("Embedding", ids)
	v, h := embeddingDims("Embedding", table, out, ids)
	b.elem(kernel, out.Numel(), out.Ptr, table.Ptr, ids.Ptr, is64, int64(ids.Numel()), int32(h), int64(start), int64(v))
}

func (b *Backend) EmbeddingBackward(dtable, dout, ids *tensor.Tensor, start int) {
	dt := b.acts("EmbeddingBackward", dout)
	b.f32("EmbeddingBackward", dtable)
	is64 := b.idsKind("EmbeddingBackward", ids)
	v, h := embeddingDims("EmbeddingBackward", dtable, dout, ids)
	b.elem("gm_embedding_bwd"+sfx(dt), dout.Numel(), dtable.Ptr, dout.Ptr, ids.Ptr, is64, int64(ids.Numel()), int32(h), int64(start), int64(v))
}

// rowKernel launches a one-block-per-row kernel.
func (b *Backend) rowKernel(kernel string, rows int, args ...any) {
	b.run(func() error { return b.dev.launch(kernel, rows, blockSize, 0, args...) })
}

func (b *Backend) RMSNorm(out, rstd, x, w *tensor.Tensor, eps float32) {
	dt := b.acts("RMSNorm", out, x)
	b.f32("RMSNorm", rstd, w)
	sameShape("RMSNorm", out, x)
	n, h := rowsCols(x)
	wantNumel("RMSNorm", "w", w, h)
	wantNumel("RMSNorm", "rstd", rstd, n)
	b.rowKernel("gm_rmsnorm"+sfx(dt), n, out.Ptr, rstd.Ptr, x.Ptr, w.Ptr, int32(h), eps)
}

func (b *Backend) RMSNormBackward(dx, dw, dout, x, w, rstd *tensor.Tensor) {
	op := "RMSNormBackward"
	dt := b.acts(op, dx, dout, x)
	b.f32(op, dw, w, rstd)
	sameShape(op, dx, dout, x)
	n, h := rowsCols(x)
	wantNumel(op, "w", w, h)
	wantNumel(op, "dw", dw, h)
	wantNumel(op, "rstd", rstd, n)
	b.rowKernel("gm_rmsnorm_bwd_dx"+sfx(dt), n, dx.Ptr, dout.Ptr, x.Ptr, w.Ptr, rstd.Ptr, int32(h))
	b.columnSums(dt, dw, nil, dout, x, nil, rstd, n, h)
}

func (b *Backend) LayerNorm(out, mean, rstd, x, w, bias *tensor.Tensor, eps float32) {
	op := "LayerNorm"
	dt := b.acts(op, out, x)
	b.f32(op, mean, rstd, w, bias)
	sameShape(op, out, x)
	n, h := rowsCols(x)
	wantNumel(op, "w", w, h)
	wantNumel(op, "b", bias, h)
	wantNumel(op, "mean", mean, n)
	wantNumel(op, "rstd", rstd, n)
	b.rowKernel("gm_layernorm"+sfx(dt), n, out.Ptr, mean.Ptr, rstd.Ptr, x.Ptr, w.Ptr, bias.Ptr, int32(h), eps)
}

func (b *Backend) LayerNormBackward(dx, dw, db, dout, x, w, mean, rstd *tensor.Tensor) {
	op := "LayerNormBackward"
	dt := b.acts(op, dx, dout, x)
	b.f32(op, dw, db, w, mean, rstd)
	sameShape(op, dx, dout, x)
	n, h := rowsCols(x)
	wantNumel(op, "w", w, h)
	wantNumel(op, "dw", dw, h)
	wantNumel(op, "db", db, h)
	wantNumel(op, "mean", mean, n)
	wantNumel(op, "rstd", rstd, n)
	b.rowKernel("gm_layernorm_bwd_dx"+sfx(dt), n, dx.Ptr, dout.Ptr, x.Ptr, w.Ptr, mean.Ptr, rstd.Ptr, int32(h))
	b.columnSums(dt, dw, db, dout, x, mean, rstd, n, h)
}

// columnSums adds the column sums of dout [n, h] (into db) and of dout⊙x̂ (into dw, with
// x) over the rows, in two passes through arena scratch (colsum_part in norm.cu): row
// chunks of R rows, enough of them to give the GPU ~1000 threads per SM but each at
// least 32 rows long, summed in a fixed order so results do not vary from run to run.
func (b *Backend) columnSums(dt tensor.DType, dw, db, dout, x, mean, rstd *tensor.Tensor, n, h int) {
	if n == 0 || h == 0 {
		return
	}
	k := min(max(1, (1024*max(b.dev.SMs, 1)+h-1)/h), max(1, n/32))
	r := (n + k - 1) / k
	k = (n + r - 1) / r
	b.run(func() error {
		part, err := b.dev.arena.Alloc(uintptr(16 * k * h))
		if err != nil {
			return err
		}
		defer b.dev.arena.Free(part) // reused only by later work on the same stream
		if err := b.dev.launch("gm_colsum_part"+sfx(dt), b.grid1D(k*h), blockSize, 0,
			part, dout.Ptr, ptr(x), ptr(mean), ptr(rstd), int64(n), int32(h), int32(r), int32(k)); err != nil {
			return err
		}
		return b.dev.launch("gm_colsum_finish", b.grid1D(h), blockSize, 0, ptr(dw), ptr(db), part, int32(k), int32(h))
	})
}

// ptr is t's device address, 0 for nil.
func ptr(t *tensor.Tensor) uintptr {
	if t == nil {
		return 0
	}
	return t.Ptr
}

// ropeTables returns device cos/sin tables [n, d/2] for (base, d, interpolation), computed
// on the host exactly as kernels/cpu does (cpu.RoPEFill), cached and grown as positions
// grow. Device thread.
func (b *Backend) ropeTables(base float64, d, n int, interp float64, sc kernels.RoPEScaling) (ropeTable, error) {
	key := ropeKey{base, d, interp, sc}
	t, ok := b.rope[key]
	if ok && t.n >= n {
		return t, nil
	}
	size := max(n, 4096)
	if ok {
		size = max(size, 2*t.n)
	}
	h := d / 2
	inv := cpu.RoPEInvFreqScaled(base, d, sc)
	cs := make([]float32, size*h)
	sn := make([]float32, size*h)
	cpu.RoPEFill(cs, sn, inv, 0, size, interp, sc.Conc())
	nt := ropeTable{n: size}
	var err error
	if nt.cos, err = b.dev.arena.Alloc(uintptr(4 * len(cs))); err != nil {
		return t, err
	}
	if nt.sin, err = b.dev.arena.Alloc(uintptr(4 * len(sn))); err != nil {
		return t, err
	}
	if err := b.dev.upload(nt.cos, f32Bytes(cs)); err != nil {
		return t, err
	}
	if err := b.dev.upload(nt.sin, f32Bytes(sn)); err != nil {
		return t, err
	}
	if ok { // the old tables' readers were queued before the uploads' syncs
		_ = b.dev.arena.Free(t.cos)
		_ = b.dev.arena.Free(t.sin)
	}
	b.rope[key] = nt
	return nt, nil
}

func f32Bytes(v []float32) []byte {
	if len(v) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&v[0])), 4*len(v))
}

// RoPE: see kernels.RoPEParams; out may alias x. Positions stay on the device, unchecked
// (reading them back would stall the stream): one beyond the cos/sin tables (at least
// max(S, 4096) rows) rotates its token to NaN instead of reading past them.
func (b *Backend) RoPE(out, x *tensor.Tensor, p kernels.RoPEParams) {
	dt := b.acts("RoPE", out, x)
	sameShape("RoPE", out, x)
	if x.Rank() != 4 {
		panic(fmt.Sprintf("cuda.RoPE: x %v must be [B, H, S, D]", x))
	}
	s, dd := x.Dim(2), x.Dim(3)
	d := p.RotaryDim
	if d == 0 {
		d = dd
	}
	if d < 0 || d%2 != 0 || d > dd || p.PosOffset < 0 || p.Base <= 0 {
		panic(fmt.Sprintf("cuda.RoPE: x %v with params %+v: need even RotaryDim ≤ D, PosOffset ≥ 0, Base > 0", x, p))
	}
	if p.Positions != nil {
		b.mustDev("RoPE", p.Positions)
		if p.Positions.DType() != tensor.I32 || p.Positions.Numel() != x.Dim(0)*s || p.PosOffset != 0 {
			panic(fmt.Sprintf("cuda.RoPE: Positions %v for x %v: need I32 [%d, %d] and PosOffset 0 (have %d)", p.Positions, x, x.Dim(0), s, p.PosOffset))
		}
	}
	if x.Numel() == 0 {
		return
	}
	sign := float32(1)
	if p.Inverse {
		sign = -1
	}
	inter := int32(0)
	if p.Interleaved {
		inter = 1
	}
	rows := x.Numel() / dd
	b.run(func() error {
		t, err := b.ropeTables(p.Base, d, max(p.PosOffset+s, p.PosLimit), p.Interpolation, p.Scaling)
		if err != nil {
			return err
		}
		n := rows * (d/2 + dd - d)
		return b.dev.launch("gm_rope"+sfx(dt), b.grid1D(n), blockSize, 0, out.Ptr, x.Ptr, t.cos, t.sin, int64(rows), int32(x.Dim(1)), int32(s),
			int32(dd), int32(d), int32(p.PosOffset), ptr(p.Positions), int32(t.n), sign, inter)
	})
}

func swigluDims(op string, out, x *tensor.Tensor) (n, f int) {
	n, f2 := rowsCols(x)
	if f2%2 != 0 || out.Numel() != n*f2/2 || (out.Rank() > 0 && out.Dim(-1) != f2/2) {
		panic(fmt.Sprintf("cuda.%s: x %v must be [N, 2F] and out %v [N, F]", op, x, out))
	}
	return n, f2 / 2
}

func (b *Backend) SwiGLU(out, x *tensor.Tensor) {
	dt := b.acts("SwiGLU", out, x)
	n, f := swigluDims("SwiGLU", out, x)
	b.elem("gm_swiglu"+sfx(dt), n*f, out.Ptr, x.Ptr, int64(n), int32(f))
}

func (b *Backend) SwiGLUBackward(dx, dout, x *tensor.Tensor) {
	dt := b.acts("SwiGLUBackward", dx, dout, x)
	n, f := swigluDims("SwiGLUBackward", dout, x)
	sameShape("SwiGLUBackward", dx, x)
	b.elem("gm_swiglu_bwd"+sfx(dt), n*f, dx.Ptr, dout.Ptr, x.Ptr, int64(n), int32(f))
}

func (b *Backend) GeLU(out, x *tensor.Tensor, tanh bool) {
	dt := b.acts("GeLU", out, x)
	sameShape("GeLU", out, x)
	b.elem("gm_gelu"+sfx(dt), x.Numel(), out.Ptr, x.Ptr, int64(x.Numel()), bool32(tanh))
}

func (b *Backend) GeLUBackward(dx, dout, x *tensor.Tensor, tanh bool) {
	dt := b.acts("GeLUBackward", dx, dout, x)
	sameShape("GeLUBackward", dx, dout, x)
	b.elem("gm_gelu_bwd"+sfx(dt), x.Numel(), dx.Ptr, dout.Ptr, x.Ptr, int64(x.Numel()), bool32(tanh))
}

func (b *Backend) SquaredReLU(out, x *tensor.Tensor) {
	dt := b.acts("SquaredReLU", out, x)
	sameShape("SquaredReLU", out, x)
	b.elem("gm_relu2"+sfx(dt), x.Numel(), out.Ptr, x.Ptr, int64(x.Numel()))
}

func (b *Backend) SquaredReLUBackward(dx, dout, x *tensor.Tensor) {
	dt := b.acts("SquaredReLUBackward", dx, dout, x)
	sameShape("SquaredReLUBackward", dx, dout, x)
	b.elem("gm_relu2_bwd"+sfx(dt), x.Numel(), dx.Ptr, dout.Ptr, x.Ptr, int64(x.Numel()))
}

func (b *Backend) dropoutMask(op string, mask *tensor.Tensor, n int) {
	b.mustDev(op, mask)
	if (mask.DType() != tensor.U8 && mask.DType() != tensor.Bool) || mask.Numel() != n {
		panic(fmt.Sprintf("cuda.%s: mask %v must be U8 (or Bool) with %d elements", op, mask, n))
	}
}

// Dropout draws the same mask as kernels/cpu (cpu.DropoutBits).
func (b *Backend) Dropout(out, mask, x *tensor.Tensor, p float32, seed, offset uint64) {
	dt := b.acts("Dropout", out, x)
	sameShape("Dropout", out, x)
	b.dropoutMask("Dropout", mask, x.Numel())
	if p < 0 || p > 1 {
		panic(fmt.Sprintf("cuda.Dropout: p = %v outside [0, 1]", p))
	}
	scale := 1 / (1 - p)
	b.elem("gm_dropout"+sfx(dt), x.Numel(), out.Ptr, mask.Ptr, x.Ptr, p, scale, seed, offset, int64(x.Numel()))
}

func (b *Backend) DropoutBackward(dx, dout, mask *tensor.Tensor, p float32) {
	dt := b.acts("DropoutBackward", dx, dout)
	sameShape("DropoutBackward", dx, dout)
	b.dropoutMask("DropoutBackward", mask, dx.Numel())
	b.elem("gm_dropout_bwd"+sfx(dt), dx.Numel(), dx.Ptr, dout.Ptr, mask.Ptr, 1/(1-p), int64(dx.Numel()))
}

func ceRows(op string, logits *tensor.Tensor, perRow ...*tensor.Tensor) (n, v int) {
	n, v = rowsCols(logits)
	for _, t := range perRow {
		if t.Numel() != n {
			panic(fmt.Sprintf("cuda.%s: %v must have one element per row of logits %v", op, t, logits))
		}
	}
	return n, v
}

func (b *Backend) RowMax(mx, logits *tensor.Tensor) {
	dt := b.acts("RowMax", logits)
	b.f32("RowMax", mx)
	n, v := ceRows("RowMax", logits, mx)
	b.rowKernel("gm_rowmax"+sfx(dt), n, mx.Ptr, logits.Ptr, int32(v))
}

func (b *Backend) SumExp(se, logits, mx *tensor.Tensor) {
	dt := b.acts("SumExp", logits)
	b.f32("SumExp", se, mx)
	n, v := ceRows("SumExp", logits, se, mx)
	b.rowKernel("gm_sumexp"+sfx(dt), n, se.Ptr, logits.Ptr, mx.Ptr, int32(v))
}

func (b *Backend) TargetLogit(tl, logits, targets *tensor.Tensor, start int) {
	dt := b.acts("TargetLogit", logits)
	b.f32("TargetLogit", tl)
	is64 := b.idsKind("TargetLogit", targets)
	n, v := ceRows("TargetLogit", logits, tl, targets)
	b.elem("gm_target_logit"+sfx(dt), n, tl.Ptr, logits.Ptr, targets.Ptr, is64, int64(n), int32(v), int64(start))
}

func (b *Backend) CrossEntropyBackward(dlogits, logits, mx, se, targets, dloss *tensor.Tensor, start int) {
	op := "CrossEntropyBackward"
	dt := b.acts(op, dlogits, logits)
	b.f32(op, mx, se, dloss)
	is64 := b.idsKind(op, targets)
	sameShape(op, dlogits, logits)
	n, v := ceRows(op, logits, mx, se, targets, dloss)
	b.elem("gm_xent_bwd"+sfx(dt), n*v, dlogits.Ptr, logits.Ptr, mx.Ptr, se.Ptr, targets.Ptr, is64, dloss.Ptr, int64(n), int32(v), int64(start))
}

// AdamW: see kernels.AdamParams; the constants are formed on the host as in kernels/cpu.
func (b *Backend) AdamW(p, g, m, v *tensor.Tensor, h kernels.AdamParams) {
	b.f32("AdamW", p, g, m, v)
	sameShape("AdamW", p, g, m, v)
	if h.Step < 1 {
		panic(fmt.Sprintf("cuda.AdamW: step %d < 1", h.Step))
	}
	lr, b1, b2 := float64(h.LR), float64(h.Beta1), float64(h.Beta2)
	decay := float32(1 - lr*float64(h.WeightDecay))
	bc1 := 1 - math.Pow(b1, float64(h.Step))
	bc2 := 1 - math.Pow(b2, float64(h.Step))
	negStep := float32(-lr / bc1)
	bc2s := float32(math.Sqrt(bc2))
	b.elem("gm_adamw_f32", p.Numel(), p.Ptr, g.Ptr, m.Ptr, v.Ptr, decay, h.Beta1, h.Beta2,
		float32(1-b1), float32(1-b2), negStep, bc2s, h.Eps, int64(p.Numel()))
}

// castKind checks CastWithAmax's operands and returns the kernel for src's dtype and the
// kernel's code for dst's dtype.
func (b *Backend) castKind(op string, dst, src *tensor.Tensor) (string, int32) {
	kernel := "gm_cast_amax" + sfx(b.acts(op, src))
	b.mustDev(op, dst)
	if dst.Numel() != src.Numel() {
		panic(fmt.Sprintf("cuda.%s: dst %v and src %v differ in size", op, dst, src))
	}
	kind := map[tensor.DType]int32{tensor.BF16: 0, tensor.F16: 1, tensor.F8E4M3: 2, tensor.F8E5M2: 3, tensor.F32: 4}
	k, ok := kind[dst.DType()]
	if !ok {
		panic(fmt.Sprintf("cuda.%s: cannot cast into %v", op, dst))
	}
	return kernel, k
}

// CastWithAmaxInto is CastWithAmax folding max|src| into the device element amax, without
// waiting (the kernel's atomic max on the float bits).
func (b *Backend) CastWithAmaxInto(dst, src *tensor.Tensor, scale float32, amax *tensor.Tensor) {
	kernel, k := b.castKind("CastWithAmaxInto", dst, src)
	b.f32("CastWithAmaxInto", amax)
	wantNumel("CastWithAmaxInto", "amax", amax, 1)
	b.elem(kernel, src.Numel(), dst.Ptr, src.Ptr, scale, k, amax.Ptr, int64(src.Numel()))
}

// CastWithAmax rounds src·scale (src F32 or BF16) into dst (BF16, F16, F8E4M3, F8E5M2
// saturating, or F32) and returns max|src| (NaN if src holds a NaN). It waits for the result.
func (b *Backend) CastWithAmax(dst, src *tensor.Tensor, scale float32) float32 {
	kernel, k := b.castKind("CastWithAmax", dst, src)
	var out [4]byte
	b.run(func() error {
		if err := b.dev.memset32(b.scratch, 0, 1); err != nil {
			return err
		}
		if err := b.dev.launch(kernel, b.grid1D(src.Numel()), blockSize, 0, dst.Ptr, src.Ptr, scale, k, b.scratch, int64(src.Numel())); err != nil {
			return err
		}
		return b.dev.download(out[:], b.scratch)
	})
	return *(*float32)(unsafe.Pointer(&out[0]))
}

// floatKind is the kernels' code for F32 (0), BF16 (1) and F16 (2).
func floatKind(op string, dt tensor.DType) int32 {
	switch dt {
	case tensor.F32:
		return 0
	case tensor.BF16:
		return 1
	case tensor.F16:
		return 2
	}
	panic(fmt.Sprintf("cuda.%s: %v is not F32, BF16 or F16", op, dt))
}

// Cast converts src into dst among F32, BF16 and F16, and FP8 into F32 (see kernels.Backend).
func (b *Backend) Cast(dst, src *tensor.Tensor) {
	b.mustDev("Cast", dst, src)
	if dst.Numel() != src.Numel() {
		panic(fmt.Sprintf("cuda.Cast: dst %v and src %v differ in size", dst, src))
	}
	sk := map[tensor.DType]int32{tensor.F8E4M3: 3, tensor.F8E5M2: 4}[src.DType()]
	if sk == 0 {
		sk = floatKind("Cast", src.DType())
	} else if dst.DType() != tensor.F32 {
		panic(fmt.Sprintf("cuda.Cast: FP8 %v widens into F32 only, not %v", src, dst))
	}
	b.elem("gm_cast", src.Numel(), dst.Ptr, src.Ptr, sk, floatKind("Cast", dst.DType()), int64(src.Numel()))
}

// Round rounds the F32 tensor x in place to the nearest BF16 or F16 value.
func (b *Backend) Round(x *tensor.Tensor, dt tensor.DType) {
	b.f32("Round", x)
	if dt == tensor.F32 {
		return
	}
	k := floatKind("Round", dt)
	if k == 0 {
		panic(fmt.Sprintf("cuda.Round: cannot round to %v (BF16 or F16)", dt))
	}
	b.elem("gm_round_f32", x.Numel(), x.Ptr, k, int64(x.Numel()))
}
