package cpu

import (
	"fmt"

	"github.com/gomegatron/gomegatron/tensor"
)

// Elementwise ops work on the flat element range; they split it into chunks of at least
// elemGrain elements.
const elemGrain = 16384

// Fill sets every element of x (F32 or BF16) to v.
func (be *Backend) Fill(x *tensor.Tensor, v float32) {
	if be.bf16("Fill", func(t []*tensor.Tensor) { be.Fill(t[0], v) }, wr("x", x)) {
		return
	}
	xs := f32("Fill", x)
	parallelFor(len(xs), elemGrain, func(lo, hi int) {
		s := xs[lo:hi]
		for i := range s {
			s[i] = v
		}
	})
}

// Copy copies src into dst: same shape and dtype (any dtype).
func (*Backend) Copy(dst, src *tensor.Tensor) {
	sameShape("Copy", dst, src)
	if dst.DType() != src.DType() {
		panic(fmt.Sprintf("cpu.Copy: dtype mismatch %v vs %v", dst, src))
	}
	d, s := dst.Data, src.Data
	parallelFor(len(d), 4*elemGrain, func(lo, hi int) { copy(d[lo:hi], s[lo:hi]) })
}

// Permute writes out = x with dimensions reordered, out.shape[i] = x.shape[perm[i]], for
// F32 (or BF16) tensors of rank 1 to 4. The loop runs over out in order and gathers from x.
func (be *Backend) Permute(out, x *tensor.Tensor, perm []int) {
	if be.bf16("Permute", func(t []*tensor.Tensor) { be.Permute(t[0], t[1], perm) }, wr("out", out), rd("x", x)) {
		return
	}
	r := x.Rank()
	if r < 1 || r > 4 || len(perm) != r || out.Rank() != r {
		panic(fmt.Sprintf("cpu.Permute: out %v, x %v, perm %v: need equal ranks 1..4", out, x, perm))
	}
	seen := [4]bool{}
	for i, p := range perm {
		if p < 0 || p >= r || seen[p] || out.Dim(i) != x.Dim(p) {
			panic(fmt.Sprintf("cpu.Permute: perm %v does not map x %v onto out %v", perm, x, out))
		}
		seen[p] = true
	}
	xs, os := f32("Permute", x), f32("Permute", out)
	// Pad to rank 4 with leading unit dims; st[i] is x's stride along out dim i.
	var xstride [4]int
	s := 1
	for i := r - 1; i >= 0; i-- {
		xstride[i] = s
		s *= x.Dim(i)
	}
	var dims, st [4]int
	for i := range 4 {
		dims[i], st[i] = 1, 0
	}
	for i := range r {
		dims[4-r+i] = out.Dim(i)
		st[4-r+i] = xstride[perm[i]]
	}
	rows := dims[0] * dims[1] * dims[2]
	n3 := dims[3]
	parallelFor(rows, grainFor(n3), func(lo, hi int) {
		for row := lo; row < hi; row++ {
			i2 := row % dims[2]
			i1 := (row / dims[2]) % dims[1]
			i0 := row / (dims[2] * dims[1])
			base := i0*st[0] + i1*st[1] + i2*st[2]
			o := os[row*n3 : (row+1)*n3]
			if st[3] == 1 {
				copy(o, xs[base:base+n3])
				continue
			}
			for j := range o {
				o[j] = xs[base+j*st[3]]
			}
		}
	})
}

// Scale: x ← α·x.
func (be *Backend) Scale(x *tensor.Tensor, alpha float32) {
	if be.bf16("Scale", func(t []*tensor.Tensor) { be.Scale(t[0], alpha) }, rw("x", x)) {
		return
	}
	xs := f32("Scale", x)
	parallelFor(len(xs), elemGrain, func(lo, hi int) {
		s := xs[lo:hi]
		for i := range s {
			s[i] *= alpha
		}
	})
}

// Axpy: y ← y + α·x.
func (be *Backend) Axpy(y *tensor.Tensor, alpha float32, x *tensor.Tensor) {
	if be.bf16("Axpy", func(t []*tensor.Tensor) { be.Axpy(t[0], alpha, t[1]) }, rw("y", y), rd("x", x)) {
		return
	}
	sameShape("Axpy", y, x)
	ys, xs := f32("Axpy", y), f32("Axpy", x)
	parallelFor(len(ys), elemGrain, func(lo, hi int) {
		yy, xx := ys[lo:hi], xs[lo:hi]
		for i := range yy {
			yy[i] += alpha * xx[i]
		}
	})
}

// Add: out = a + b (out may alias a or b).
func (be *Backend) Add(out, a, b *tensor.Tensor) {
	if be.bf16("Add", func(t []*tensor.Tensor) { be.Add(t[0], t[1], t[2]) }, wr("out", out), rd("a", a), rd("b", b)) {
		return
	}
	sameShape("Add", out, a, b)
	os, as, bs := f32("Add", out), f32("Add", a), f32("Add", b)
	parallelFor(len(os), elemGrain, func(lo, hi int) {
		o, x, y := os[lo:hi], as[lo:hi], bs[lo:hi]
		for i := range o {
			o[i] = x[i] + y[i]
		}
	})
}

// Mul: out = a ⊙ b (out may alias a or b).
func (be *Backend) Mul(out, a, b *tensor.Tensor) {
	if be.bf16("Mul", func(t []*tensor.Tensor) { be.Mul(t[0], t[1], t[2]) }, wr("out", out), rd("a", a), rd("b", b)) {
		return
	}
	sameShape("Mul", out, a, b)
	os, as, bs := f32("Mul", out), f32("Mul", a), f32("Mul", b)
	parallelFor(len(os), elemGrain, func(lo, hi int) {
		o, x, y := os[lo:hi], as[lo:hi], bs[lo:hi]
		for i := range o {
			o[i] = x[i] * y[i]
		}
	})
}

// sumSqBlock is the fixed block size of SumSquares' partial sums, so the summation order
// (and the result bits) do not depend on the number of goroutines.
const sumSqBlock = 8192

// SumSquares returns Σ x² in float64: float64 partial sums over fixed blocks of
// sumSqBlock elements, added in block order.
func (b *Backend) SumSquares(x *tensor.Tensor) float64 {
	var r float64
	if b.bf16("SumSquares", func(t []*tensor.Tensor) { r = b.SumSquares(t[0]) }, rd("x", x)) {
		return r
	}
	xs := f32("SumSquares", x)
	nb := (len(xs) + sumSqBlock - 1) / sumSqBlock
	part := b.getScratch64(nb)
	defer b.putScratch64(part)
	parallelFor(nb, 2, func(lo, hi int) {
		for blk := lo; blk < hi; blk++ {
			s := xs[blk*sumSqBlock : min((blk+1)*sumSqBlock, len(xs))]
			var acc float64
			for _, v := range s {
				acc += float64(v) * float64(v)
			}
			part.v[blk] = acc
		}
	})
	var total float64
	for _, p := range part.v {
		total += p
	}
	return total
}

// AddBias adds bias[F] to every row of x[N, F].
func (b *Backend) AddBias(x, bias *tensor.Tensor) {
	if b.bf16("AddBias", func(t []*tensor.Tensor) { b.AddBias(t[0], bias) }, rw("x", x)) {
		return
	}
	n, f := rowsCols(x)
	wantNumel("AddBias", "bias", bias, f)
	xs, bs := f32("AddBias", x), f32("AddBias", bias)
	parallelFor(n, grainFor(f), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			row := xs[r*f : (r+1)*f]
			for j := range row {
				row[j] += bs[j]
			}
		}
	})
}

// ScaleRows: x[r, :] *= s[r].
func (b *Backend) ScaleRows(x, s *tensor.Tensor) {
	if b.bf16("ScaleRows", func(t []*tensor.Tensor) { b.ScaleRows(t[0], s) }, rw("x", x)) {
		return
	}
	n := s.Numel()
	xs, ss := f32("ScaleRows", x), f32("ScaleRows", s)
	if len(xs)%max(n, 1) != 0 {
		panic(fmt.Sprintf("cpu.ScaleRows: x %v is not [%d, ·]", x, n))
	}
	f := len(xs) / max(n, 1)
	parallelFor(n, grainFor(f), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			row := xs[r*f : (r+1)*f]
			for j := range row {
				row[j] *= ss[r]
			}
		}
	})
}

// RowDot: out[r] = Σ_f a[r, f]·b[r, f], summed in float64 in column order.
func (b *Backend) RowDot(out, x, y *tensor.Tensor) {
	if b.bf16("RowDot", func(t []*tensor.Tensor) { b.RowDot(out, t[0], t[1]) }, rd("a", x), rd("b", y)) {
		return
	}
	n := out.Numel()
	os, xs, ys := f32("RowDot", out), f32("RowDot", x), f32("RowDot", y)
	if len(xs) != len(ys) || len(xs)%max(n, 1) != 0 {
		panic(fmt.Sprintf("cpu.RowDot: a %v and b %v must both be [%d, ·]", x, y, n))
	}
	f := len(xs) / max(n, 1)
	parallelFor(n, grainFor(f), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			var acc float64
			for j, v := range xs[r*f : (r+1)*f] {
				acc += float64(v) * float64(ys[r*f+j])
			}
			os[r] = float32(acc)
		}
	})
}

// BiasGrad: db[f] += Σ_n dout[n, f], summed in float64 in row order, parallel over column
// blocks.
func (b *Backend) BiasGrad(db, dout *tensor.Tensor) {
	if b.bf16("BiasGrad", func(t []*tensor.Tensor) { b.BiasGrad(db, t[0]) }, rd("dout", dout)) {
		return
	}
	n, f := rowsCols(dout)
	wantNumel("BiasGrad", "db", db, f)
	ds, gs := f32("BiasGrad", db), f32("BiasGrad", dout)
	b.columnSums(n, f, func(acc []float64, r, c0, c1 int) {
		row := gs[r*f+c0 : r*f+c1]
		for j, v := range row {
			acc[j] += float64(v)
		}
	}, func(c0 int, acc []float64) {
		for j, v := range acc {
			ds[c0+j] += float32(v)
		}
	})
}

// colBlock is the column-block width of column reductions (dw, db, dtable).
const colBlock = 256

// columnSums runs a column-parallel reduction over n rows: for each block of columns
// [c0, c1) it zeroes a float64 accumulator, calls add(acc, r, c0, c1) for r = 0..n−1 in
// order, then done(c0, acc). The order of additions is fixed, so results are
// reproducible.
func (b *Backend) columnSums(n, f int, add func(acc []float64, r, c0, c1 int), done func(c0 int, acc []float64)) {
	nblk := (f + colBlock - 1) / colBlock
	parallelFor(nblk, max(1, grainFor(n*colBlock)), func(lo, hi int) {
		acc := b.getScratch64(colBlock)
		defer b.putScratch64(acc)
		for blk := lo; blk < hi; blk++ {
			c0, c1 := blk*colBlock, min((blk+1)*colBlock, f)
			a := acc.v[:c1-c0]
			clear(a)
			for r := range n {
				add(a, r, c0, c1)
			}
			done(c0, a)
		}
	})
}
