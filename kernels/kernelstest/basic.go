package kernelstest

import (
	"fmt"
	"math"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/kernels"
	"github.com/gomegatron/gomegatron/tensor"
)

// refGemm is C[i] = α·op(A[i])·op(B[i]) + β·C[i] in float64 (see kernels.GemmParams).
func refGemm(p kernels.GemmParams, a, b, c []float64) []float64 {
	out := append([]float64(nil), c...)
	lda, ldb, ldc := p.LDA, p.LDB, p.LDC
	for bi := range max(p.Batch, 1) {
		for i := range p.M {
			for j := range p.N {
				var s float64
				for k := range p.K {
					var av, bv float64
					if p.TransA {
						av = a[bi*p.StrideA+k*lda+i]
					} else {
						av = a[bi*p.StrideA+i*lda+k]
					}
					if p.TransB {
						bv = b[bi*p.StrideB+j*ldb+k]
					} else {
						bv = b[bi*p.StrideB+k*ldb+j]
					}
					s += av * bv
				}
				ci := bi*p.StrideC + i*ldc + j
				out[ci] = float64(p.Alpha)*s + float64(p.Beta)*c[ci]
			}
		}
	}
	return out
}

// Gemm checks batched, strided, transposed GEMMs with F32, BF16 and F16 operands against
// float64 products of the (rounded) operands. C's padding (ldc > N) must be left alone.
func Gemm(t *testing.T, b kernels.Backend) {
	type tc struct {
		name   string
		p      kernels.GemmParams
		dt     tensor.DType
		packed bool // LDs 0: the backend must use the row lengths
	}
	var cases []tc
	for _, dt := range []tensor.DType{tensor.F32, tensor.BF16, tensor.F16} {
		for _, ta := range []bool{false, true} {
			for _, tb := range []bool{false, true} {
				cases = append(cases,
					tc{fmt.Sprintf("%v/ta=%v/tb=%v/packed", dt, ta, tb), kernels.GemmParams{TransA: ta, TransB: tb, M: 13, N: 17, K: 19, Alpha: 1, Batch: 1}, dt, true},
					tc{fmt.Sprintf("%v/ta=%v/tb=%v/strided-batch", dt, ta, tb), kernels.GemmParams{TransA: ta, TransB: tb, M: 9, N: 70, K: 33, Alpha: 0.75, Beta: -1.5, Batch: 3}, dt, false})
			}
		}
	}
	cases = append(cases,
		tc{"f32/broadcast-B", kernels.GemmParams{M: 8, N: 5, K: 6, Alpha: 2, Beta: 1, Batch: 4, StrideB: -1}, tensor.F32, false},
		tc{"f32/large", kernels.GemmParams{TransB: true, M: 130, N: 97, K: 260, Alpha: 1, Batch: 1}, tensor.F32, true})
	r := newRand(1)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := c.p
			ar, ac := p.M, p.K
			if p.TransA {
				ar, ac = p.K, p.M
			}
			br, bc := p.K, p.N
			if p.TransB {
				br, bc = p.N, p.K
			}
			p.LDA, p.LDB, p.LDC = ac, bc, p.N
			if !c.packed {
				p.LDA, p.LDB, p.LDC = ac+3, bc+1, p.N+2
			}
			p.StrideA, p.StrideB, p.StrideC = ar*p.LDA+5, br*p.LDB+2, p.M*p.LDC+1
			if c.p.StrideB < 0 {
				p.StrideB = 0
			}
			if p.Batch == 1 {
				p.StrideA, p.StrideB, p.StrideC = 0, 0, 0
			}
			na := (p.Batch-1)*p.StrideA + ar*p.LDA
			nb := (p.Batch-1)*p.StrideB + br*p.LDB
			nc := (p.Batch-1)*p.StrideC + p.M*p.LDC
			av, bv, cv := randVals(r, na, 1), randVals(r, nb, 1), randVals(r, nc, 1)
			ta, tb, tcv := dev(b, c.dt, av, na), dev(b, c.dt, bv, nb), devF32(b, cv, nc)
			// The reference multiplies the values the backend holds (rounded to dt).
			ra, rb := f64s(get(b, ta)), f64s(get(b, tb))
			want := refGemm(p, ra, rb, f64s(cv))
			q := p
			if c.packed {
				q.LDA, q.LDB, q.LDC = 0, 0, 0
			}
			b.Gemm(q, ta, tb, tcv)
			got := get(b, tcv)
			requireClose(t, "C", got, want, tolF32)
			// Elements outside every C matrix keep their values exactly.
			for i := range got {
				if !inC(p, i) {
					require.Equalf(t, cv[i], got[i], "C padding element %d changed", i)
				}
			}
		})
	}
}

func inC(p kernels.GemmParams, i int) bool {
	for bi := range p.Batch {
		o := i - bi*p.StrideC
		if o >= 0 && o < p.M*p.LDC && o%p.LDC < p.N {
			return true
		}
	}
	return false
}

// Elementwise checks Fill, Copy, Scale, Axpy, Add, Mul and SumSquares. These are their own
// backwards (linear maps, or Mul by the other factor), so the forward check covers both.
func Elementwise(t *testing.T, b kernels.Backend) {
	r := newRand(2)
	const n = 40000 + 7
	x, y := randVals(r, n, 1), randVals(r, n, 2)
	fx, fy := f64s(x), f64s(y)
	ref := func(f func(a, b float64) float64) []float64 {
		out := make([]float64, n)
		for i := range out {
			out[i] = f(fx[i], fy[i])
		}
		return out
	}
	t.Run("Fill", func(t *testing.T) {
		d := devF32(b, x, n)
		b.Fill(d, -2.5)
		requireClose(t, "Fill", get(b, d), ref(func(a, b float64) float64 { return -2.5 }), 0)
	})
	t.Run("Copy", func(t *testing.T) {
		for _, dt := range []tensor.DType{tensor.F32, tensor.BF16} {
			src, dst := dev(b, dt, x[:7*(n/7)], 7, n/7), b.Alloc(dt, 7, n/7)
			b.Copy(dst, src)
			require.Equal(t, host(b, src).Data, host(b, dst).Data, dt.String())
		}
	})
	t.Run("Scale", func(t *testing.T) {
		d := devF32(b, x, n)
		b.Scale(d, 0.3)
		requireClose(t, "Scale", get(b, d), ref(func(a, _ float64) float64 { return 0.3 * a }), 1e-7)
	})
	t.Run("Axpy", func(t *testing.T) {
		dy, dx := devF32(b, y, n), devF32(b, x, n)
		b.Axpy(dy, -1.7, dx)
		requireClose(t, "Axpy", get(b, dy), ref(func(a, b float64) float64 { return b - 1.7*a }), 1e-7)
	})
	t.Run("Add", func(t *testing.T) {
		da, db := devF32(b, x, n), devF32(b, y, n)
		out := b.Alloc(tensor.F32, n)
		b.Add(out, da, db)
		requireClose(t, "Add", get(b, out), ref(func(a, b float64) float64 { return a + b }), 1e-7)
		b.Add(da, da, db) // aliasing out = a
		requireClose(t, "Add aliased", get(b, da), ref(func(a, b float64) float64 { return a + b }), 1e-7)
	})
	t.Run("Mul", func(t *testing.T) {
		da, db := devF32(b, x, n), devF32(b, y, n)
		out := b.Alloc(tensor.F32, n)
		b.Mul(out, da, db)
		requireClose(t, "Mul", get(b, out), ref(func(a, b float64) float64 { return a * b }), 1e-7)
	})
	t.Run("SumSquares", func(t *testing.T) {
		var want float64
		for _, v := range fx {
			want += v * v
		}
		got := b.SumSquares(devF32(b, x, n))
		require.InEpsilon(t, want, got, 1e-12)
		require.Equal(t, got, b.SumSquares(devF32(b, x, n)), "SumSquares must be deterministic")
	})
}

// refPermute gathers x (shape) into out with out.shape[i] = shape[perm[i]].
func refPermute(x []float64, shape, perm []int) []float64 {
	r := len(shape)
	stride := make([]int, r)
	s := 1
	for i := r - 1; i >= 0; i-- {
		stride[i] = s
		s *= shape[i]
	}
	oshape := make([]int, r)
	for i, p := range perm {
		oshape[i] = shape[p]
	}
	out := make([]float64, len(x))
	idx := make([]int, r)
	for o := range out {
		rem, off := o, 0
		for i := r - 1; i >= 0; i-- {
			idx[i] = rem % oshape[i]
			rem /= oshape[i]
			off += idx[i] * stride[perm[i]]
		}
		out[o] = x[off]
	}
	return out
}

// Permute checks every permutation of rank 2 and 3 and several of rank 4 against a gather,
// and that permuting back by the inverse permutation (the backward) restores x.
func Permute(t *testing.T, b kernels.Backend) {
	cases := []struct {
		shape []int
		perm  []int
	}{
		{[]int{5, 7}, []int{1, 0}}, {[]int{5, 7}, []int{0, 1}},
		{[]int{3, 4, 5}, []int{0, 2, 1}}, {[]int{3, 4, 5}, []int{1, 0, 2}}, {[]int{3, 4, 5}, []int{1, 2, 0}},
		{[]int{3, 4, 5}, []int{2, 0, 1}}, {[]int{3, 4, 5}, []int{2, 1, 0}}, {[]int{3, 4, 5}, []int{0, 1, 2}},
		{[]int{2, 3, 4, 5}, []int{0, 2, 1, 3}}, {[]int{2, 3, 4, 5}, []int{2, 0, 1, 3}},
		{[]int{2, 3, 4, 5}, []int{3, 2, 1, 0}}, {[]int{2, 3, 4, 5}, []int{1, 3, 0, 2}},
		{[]int{6, 2, 9, 8}, []int{1, 2, 0, 3}}, {[]int{6, 2, 9, 8}, []int{0, 1, 3, 2}},
	}
	r := newRand(3)
	for _, c := range cases {
		t.Run(fmt.Sprint(c.shape, c.perm), func(t *testing.T) {
			n := 1
			oshape := make([]int, len(c.shape))
			inv := make([]int, len(c.perm))
			for i, p := range c.perm {
				n *= c.shape[i]
				oshape[i] = c.shape[p]
				inv[p] = i
			}
			x := randVals(r, n, 1)
			dx, out, back := devF32(b, x, c.shape...), b.Alloc(tensor.F32, oshape...), b.Alloc(tensor.F32, c.shape...)
			b.Permute(out, dx, c.perm)
			requireClose(t, "out", get(b, out), refPermute(f64s(x), c.shape, c.perm), 0)
			b.Permute(back, out, inv)
			require.Equal(t, x, get(b, back), "inverse permutation")
		})
	}
}

// Bias checks AddBias and BiasGrad (db += Σ_n dout, accumulating onto nonzero db).
func Bias(t *testing.T, b kernels.Backend) {
	r := newRand(4)
	for _, sh := range [][2]int{{3, 5}, {37, 300}, {1000, 40}} {
		t.Run(fmt.Sprint(sh), func(t *testing.T) {
			n, f := sh[0], sh[1]
			x, bias := randVals(r, n*f, 1), randVals(r, f, 1)
			dx := devF32(b, x, n, f)
			b.AddBias(dx, devF32(b, bias, f))
			want := make([]float64, n*f)
			for i := range want {
				want[i] = float64(x[i]) + float64(bias[i%f])
			}
			requireClose(t, "AddBias", get(b, dx), want, 1e-7)

			prior := randVals(r, f, 1)
			db := devF32(b, prior, f)
			b.BiasGrad(db, devF32(b, x, n, f))
			wantDB := make([]float64, f)
			for i, v := range x {
				wantDB[i%f] += float64(v)
			}
			requireClose(t, "BiasGrad (db − prior)", minus(get(b, db), prior), wantDB, tolF32)
		})
	}
}

// Rows checks ScaleRows (x[r, :] *= s[r]) and RowDot (out[r] = Σ_f a[r, f]·b[r, f]), with
// a zero and a negative scale among the rows.
func Rows(t *testing.T, b kernels.Backend) {
	r := newRand(6)
	for _, sh := range [][2]int{{1, 7}, {13, 64}, {300, 129}} {
		t.Run(fmt.Sprint(sh), func(t *testing.T) {
			n, f := sh[0], sh[1]
			x, s, y := randVals(r, n*f, 1), randVals(r, n, 1), randVals(r, n*f, 1)
			s[0] = 0
			if n > 1 {
				s[1] = -2
			}
			dx := devF32(b, x, n, f)
			b.ScaleRows(dx, devF32(b, s, n))
			want := make([]float64, n*f)
			for i := range want {
				want[i] = float64(x[i] * s[i/f])
			}
			requireClose(t, "ScaleRows", get(b, dx), want, 0)

			out := b.Alloc(tensor.F32, n)
			b.Fill(out, float32(math.NaN())) // every row written
			b.RowDot(out, devF32(b, x, n, f), devF32(b, y, n, f))
			wantDot := make([]float64, n)
			for i := range x {
				wantDot[i/f] += float64(x[i]) * float64(y[i])
			}
			requireClose(t, "RowDot", get(b, out), wantDot, tolF32)
		})
	}
}

var _ = math.Abs
