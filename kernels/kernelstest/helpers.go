package kernelstest

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/kernels"
	"github.com/gomegatron/gomegatron/tensor"
)

// Tolerances on the relative L2 error.
const (
	tolF32 = 1e-5 // F32 forward vs the float64 reference
	tolFD  = 1e-4 // backward vs central finite differences of the float64 reference
	fdEps  = 1e-6 // finite-difference step
)

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0x6b65726e656c73)) }

// randVals returns n normal values times scale.
func randVals(r *rand.Rand, n int, scale float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64() * scale)
	}
	return v
}

// dev creates a backend tensor of dtype dt holding vals (rounded to dt).
func dev(b kernels.Backend, dt tensor.DType, vals []float32, shape ...int) *tensor.Tensor {
	host := tensor.FromF32Values(dt, vals, shape...)
	d := b.Alloc(dt, shape...)
	b.Upload(d, host)
	return d
}

// devF32 creates a backend F32 tensor holding vals.
func devF32(b kernels.Backend, vals []float32, shape ...int) *tensor.Tensor {
	return dev(b, tensor.F32, vals, shape...)
}

// devIdx creates a backend I64 or I32 tensor holding ids.
func devIdx(b kernels.Backend, dt tensor.DType, ids []int64) *tensor.Tensor {
	host := tensor.New(dt, len(ids))
	switch dt {
	case tensor.I64:
		copy(host.I64(), ids)
	case tensor.I32:
		for i, v := range ids {
			host.I32()[i] = int32(v)
		}
	default:
		panic("kernelstest: index dtype " + dt.String())
	}
	d := b.Alloc(dt, len(ids))
	b.Upload(d, host)
	return d
}

// devI32 creates a backend I32 tensor holding vals.
func devI32(b kernels.Backend, vals []int32, shape ...int) *tensor.Tensor {
	host := tensor.New(tensor.I32, shape...)
	copy(host.I32(), vals)
	d := b.Alloc(tensor.I32, shape...)
	b.Upload(d, host)
	return d
}

// host downloads a backend tensor into a fresh host tensor.
func host(b kernels.Backend, t *tensor.Tensor) *tensor.Tensor {
	b.Sync()
	h := tensor.New(t.DType(), t.Shape()...)
	b.Download(h, t)
	return h
}

// get returns a backend tensor's values as float32.
func get(b kernels.Backend, t *tensor.Tensor) []float32 { return host(b, t).ToF32() }

func f64s(v []float32) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}

// relL2 is ‖got − want‖/‖want‖ (the absolute error when want is zero).
func relL2(got []float32, want []float64) float64 {
	var num, den float64
	for i, w := range want {
		d := float64(got[i]) - w
		num += d * d
		den += w * w
	}
	if den == 0 {
		return math.Sqrt(num)
	}
	return math.Sqrt(num / den)
}

// requireClose fails unless got matches want within relative L2 tol.
func requireClose(t *testing.T, what string, got []float32, want []float64, tol float64) {
	t.Helper()
	require.Len(t, got, len(want), what)
	for i, g := range got {
		if math.IsNaN(float64(g)) != math.IsNaN(want[i]) {
			require.Failf(t, "NaN mismatch", "%s[%d]: got %v want %v", what, i, g, want[i])
		}
	}
	e := relL2(got, want)
	require.LessOrEqualf(t, e, tol, "%s: relative L2 error %.3g > %.3g", what, e, tol)
}

// dot is Σ a⊙b.
func dot(a, b []float64) float64 {
	var s float64
	for i := range a {
		s += a[i] * b[i]
	}
	return s
}

// numGrad returns the central finite-difference gradient of loss with respect to x
// (x is perturbed in place and restored).
func numGrad(x []float64, loss func() float64) []float64 {
	g := make([]float64, len(x))
	for i := range x {
		x0 := x[i]
		x[i] = x0 + fdEps
		lp := loss()
		x[i] = x0 - fdEps
		lm := loss()
		x[i] = x0
		g[i] = (lp - lm) / (2 * fdEps)
	}
	return g
}

// minus returns a − b elementwise (for accumulated gradients).
func minus(a, b []float32) []float32 {
	out := make([]float32, len(a))
	for i := range a {
		out[i] = a[i] - b[i]
	}
	return out
}
