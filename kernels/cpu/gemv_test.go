package cpu

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/kernels"
	"github.com/gomegatron/gomegatron/tensor"
)

// TestGemvPath: one-row products with a transposed B large enough for the GEMV path match a
// float64 reference (ragged K, α, β = 0 over NaN-poisoned output, β ≠ 0), and give the
// same bits as Sgemm does to within F32 rounding.
func TestGemvPath(t *testing.T) {
	if !hasDotAVX2 {
		t.Skip("no AVX2+FMA: one-row products stay on Sgemm")
	}
	r := rand.New(rand.NewPCG(3, 4))
	be := New()
	for _, c := range []struct {
		n, k        int
		alpha, beta float32
	}{{513, 1031, 1, 0}, {2048, 160, 1.3, 0}, {700, 4096, 0.5, 0.75}, {1 << 18, 1, 1, 0}} {
		require.GreaterOrEqual(t, c.n*c.k, gemvMin)
		a, w, y := tensor.New(tensor.F32, 1, c.k), tensor.New(tensor.F32, c.n, c.k), tensor.New(tensor.F32, 1, c.n)
		for i := range a.F32() {
			a.F32()[i] = float32(r.NormFloat64())
		}
		for i := range w.F32() {
			w.F32()[i] = float32(r.NormFloat64())
		}
		y0 := make([]float32, c.n)
		for i := range y0 {
			y0[i] = float32(r.NormFloat64())
			if c.beta == 0 {
				y0[i] = float32(math.NaN())
			}
		}
		copy(y.F32(), y0)
		be.Gemm(kernels.GemmParams{TransB: true, M: 1, N: c.n, K: c.k, Alpha: c.alpha, Beta: c.beta, Batch: 1}, a, w, y)
		var num, den float64
		for j := 0; j < c.n; j++ {
			var s float64
			for i := 0; i < c.k; i++ {
				s += float64(a.F32()[i]) * float64(w.F32()[j*c.k+i])
			}
			want := float64(c.alpha) * s
			if c.beta != 0 {
				want += float64(c.beta) * float64(y0[j])
			}
			d := float64(y.F32()[j]) - want
			num, den = num+d*d, den+want*want
		}
		require.Less(t, math.Sqrt(num/den), 1e-6, "n=%d k=%d", c.n, c.k)
	}
}

// BenchmarkGemv: a one-row product with a 4096×4096 weight through Gemm (the GEMV path)
// and through Sgemm, which packs the weight first.
func BenchmarkGemv(b *testing.B) {
	const n, k = 4096, 4096
	a, w, y := make([]float32, k), make([]float32, n*k), make([]float32, n)
	for i := range w {
		w[i] = float32(i%13) * 0.01
	}
	b.Run("gemv", func(b *testing.B) {
		b.SetBytes(n * k * 4)
		for range b.N {
			gemv(n, k, 1, a, w, k, 0, y)
		}
	})
	b.Run("sgemm", func(b *testing.B) {
		b.SetBytes(n * k * 4)
		for range b.N {
			Sgemm(false, true, 1, n, k, 1, a, k, w, k, 0, y, n)
		}
	})
}
