package cpu

import (
	"math"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/kernels"
	"github.com/gomegatron/gomegatron/kernels/kernelstest"
	"github.com/gomegatron/gomegatron/tensor"
)

// TestConformance runs the backend-independent suite against the CPU backend.
func TestConformance(t *testing.T) {
	kernelstest.RunAll(t, New())
}

func randTensor(r *rand.Rand, shape ...int) *tensor.Tensor {
	x := tensor.New(tensor.F32, shape...)
	for i := range x.F32() {
		x.F32()[i] = float32(r.NormFloat64())
	}
	return x
}

// TestDeterministicAcrossThreads checks that reductions (attention backward's dk/dv over
// heads and blocks, norm weight gradients, embedding scatter, SumSquares) give the same
// bits with 1 and 4 goroutines, as DESIGN's determinism rule requires.
func TestDeterministicAcrossThreads(t *testing.T) {
	run := func(procs int) [][]float32 {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
		b := New()
		r := rand.New(rand.NewPCG(1, 2))
		p := kernels.AttnParams{Scale: 0.125, Causal: true, QOffset: 30, SlidingWindow: 100}
		q, k, v := randTensor(r, 2, 4, 130, 16), randTensor(r, 2, 2, 160, 16), randTensor(r, 2, 2, 160, 16)
		out, lse := tensor.New(tensor.F32, 2, 4, 130, 16), tensor.New(tensor.F32, 2, 4, 130)
		b.Attention(out, lse, q, k, v, p)
		dout := randTensor(r, 2, 4, 130, 16)
		dq, dk, dv := tensor.New(tensor.F32, q.Shape()...), tensor.New(tensor.F32, k.Shape()...), tensor.New(tensor.F32, v.Shape()...)
		b.AttentionBackward(dq, dk, dv, dout, q, k, v, out, lse, p)

		x, w := randTensor(r, 3000, 300), randTensor(r, 300)
		y, rstd := tensor.New(tensor.F32, 3000, 300), tensor.New(tensor.F32, 3000)
		b.RMSNorm(y, rstd, x, w, 1e-6)
		dx, dw := tensor.New(tensor.F32, 3000, 300), tensor.New(tensor.F32, 300)
		g := randTensor(r, 3000, 300)
		b.RMSNormBackward(dx, dw, g, x, w, rstd)
		db := tensor.New(tensor.F32, 300)
		b.BiasGrad(db, g)

		ids := tensor.New(tensor.I64, 3000)
		for i := range ids.I64() {
			ids.I64()[i] = int64(r.IntN(50))
		}
		dtable := tensor.New(tensor.F32, 50, 300)
		b.EmbeddingBackward(dtable, g, ids, 0)
		ss := float32(b.SumSquares(g))
		return [][]float32{out.F32(), lse.F32(), dq.F32(), dk.F32(), dv.F32(), dx.F32(), dw.F32(), db.F32(), dtable.F32(), {ss}}
	}
	one, four := run(1), run(4)
	for i := range one {
		require.Equalf(t, one[i], four[i], "result %d differs between 1 and 4 threads", i)
	}
}

// TestAttentionNoVisibleKey checks the documented convention for a query that sees no key
// (possible only with a negative QOffset): out = 0, lse = −Inf, and zero gradients.
func TestAttentionNoVisibleKey(t *testing.T) {
	b := New()
	r := rand.New(rand.NewPCG(3, 4))
	p := kernels.AttnParams{Scale: 0.5, Causal: true, QOffset: -2}
	q, k, v := randTensor(r, 1, 1, 4, 8), randTensor(r, 1, 1, 4, 8), randTensor(r, 1, 1, 4, 8)
	out, lse := tensor.New(tensor.F32, 1, 1, 4, 8), tensor.New(tensor.F32, 1, 1, 4)
	b.Attention(out, lse, q, k, v, p)
	// Queries 0 and 1 (positions −2, −1) see nothing; query 2 sees key 0 only.
	require.True(t, math.IsInf(float64(lse.F32()[0]), -1))
	require.True(t, math.IsInf(float64(lse.F32()[1]), -1))
	require.Equal(t, make([]float32, 16), out.F32()[:16])
	require.Equal(t, v.F32()[:8], out.F32()[16:24])
	dq, dk, dv := tensor.New(tensor.F32, 1, 1, 4, 8), tensor.New(tensor.F32, 1, 1, 4, 8), tensor.New(tensor.F32, 1, 1, 4, 8)
	b.AttentionBackward(dq, dk, dv, randTensor(r, 1, 1, 4, 8), q, k, v, out, lse, p)
	// Rows 0 and 1 get no dq; keys 2 and 3 (seen by no query) get no dk or dv.
	zero := append(append(append([]float32{}, dq.F32()[:16]...), dk.F32()[16:]...), dv.F32()[16:]...)
	for _, x := range zero {
		require.Zero(t, x)
		require.False(t, math.IsNaN(float64(x)))
	}
}

// TestCastWithAmaxNaN checks that a NaN in src shows in amax (overflow detection).
func TestCastWithAmaxNaN(t *testing.T) {
	src := tensor.FromF32([]float32{1, float32(math.NaN()), -3}, 3)
	amax := New().CastWithAmax(tensor.New(tensor.BF16, 3), src, 1)
	require.True(t, math.IsNaN(float64(amax)))
}

// TestShapeMismatchPanics checks that broken invariants panic with the op's name and the
// shapes involved.
func TestShapeMismatchPanics(t *testing.T) {
	b := New()
	f := func(shape ...int) *tensor.Tensor { return tensor.New(tensor.F32, shape...) }
	cases := map[string]func(){
		"cpu.Add":     func() { b.Add(f(2, 3), f(2, 3), f(3, 2)) },
		"cpu.RMSNorm": func() { b.RMSNorm(f(2, 4), f(2), f(2, 4), f(5), 1e-5) },
		"cpu.Attention": func() {
			b.Attention(f(1, 3, 4, 8), f(1, 3, 4), f(1, 3, 4, 8), f(1, 2, 4, 8), f(1, 2, 4, 8), kernels.AttnParams{})
		},
		"cpu.Gemm":    func() { b.Gemm(kernels.GemmParams{M: 4, N: 4, K: 4, Alpha: 1}, f(4, 4), f(3, 4), f(4, 4)) },
		"cpu.RoPE":    func() { b.RoPE(f(1, 1, 2, 8), f(1, 1, 2, 8), kernels.RoPEParams{Base: 1e4, RotaryDim: 7}) },
		"cpu.Permute": func() { b.Permute(f(3, 2), f(3, 2), []int{1, 0}) },
		"cpu.SwiGLU":  func() { b.SwiGLU(f(2, 3), f(2, 7)) },
		"cpu.StridedCopy": func() {
			b.StridedCopy(f(3, 4), f(3, 2), kernels.StridedCopyParams{Shape: []int{3, 2}, DstOff: 3, DstStride: []int{4, 1}, SrcStride: []int{2, 1}})
		},
	}
	for name, fn := range cases {
		require.PanicsWithValue(t, panicMessage(fn), fn, name)
		require.Contains(t, panicMessage(fn), name)
	}
}

func panicMessage(fn func()) (msg any) {
	defer func() { msg = recover() }()
	fn()
	return nil
}

// TestGemmFP8Operands checks FP8 operands (a CPU extension of kernels.Backend.Gemm) against
// the float64 product of their decoded values, with the scale-inverses folded into Alpha.
func TestGemmFP8Operands(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	const m, n, k = 7, 9, 33
	for _, dt := range []tensor.DType{tensor.F8E4M3, tensor.F8E5M2} {
		av, bv := make([]float32, m*k), make([]float32, n*k)
		for i := range av {
			av[i] = float32(r.NormFloat64() * 8)
		}
		for i := range bv {
			bv[i] = float32(r.NormFloat64() * 8)
		}
		a, bt := tensor.FromF32Values(dt, av, m, k), tensor.FromF32Values(dt, bv, n, k)
		c := tensor.New(tensor.F32, m, n)
		New().Gemm(kernels.GemmParams{TransB: true, M: m, N: n, K: k, Alpha: 0.25, Batch: 1}, a, bt, c)
		ad, bd := a.ToF32(), bt.ToF32()
		for i := range m {
			for j := range n {
				var s float64
				for p := range k {
					s += float64(ad[i*k+p]) * float64(bd[j*k+p])
				}
				require.InDeltaf(t, 0.25*s, float64(c.F32()[i*n+j]), 1e-4*math.Max(1, math.Abs(s)), "%v C[%d,%d]", dt, i, j)
			}
		}
	}
}
