package cuda

import (
	"math"
	"math/rand/v2"
	"os"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/kernels/cpu"
	"github.com/gomegatron/gomegatron/tensor"
)

// Tolerances on the relative L2 error against the CPU backend (DESIGN.md).
const (
	tolF32  = 1e-5
	tolTF32 = 5e-4
	tolBF16 = 1e-2
)

var testGPU = sync.OnceValues(func() (*Backend, error) {
	size := int64(8 << 30)
	if v := os.Getenv("GOMEGATRON_CUDA_ARENA_MB"); v != "" {
		size = 0 // the device reads it
	}
	return New(Options{ArenaBytes: size})
})

// gpu returns the shared test backend or skips the test with the reason CUDA is missing.
func gpu(t testing.TB) *Backend {
	t.Helper()
	if ok, reason := Available(); !ok {
		t.Skip("CUDA not available: " + reason)
	}
	b, err := testGPU()
	require.NoError(t, err, "CUDA is available but the backend failed to start")
	return b
}

// env pairs every test tensor with a CPU twin: ops run on both and results are compared.
// act is the dtype of the activations the act* helpers make (F32 unless a test sets it).
type env struct {
	t   *testing.T
	g   *Backend
	c   *cpu.Backend
	r   *rand.Rand
	own []*tensor.Tensor
	act tensor.DType
}

type pair struct{ h, d *tensor.Tensor }

func newEnv(t *testing.T, g *Backend) *env {
	e := &env{t: t, g: g, c: cpu.New(), r: rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())), act: tensor.F32}
	t.Cleanup(func() {
		for _, d := range e.own {
			_ = g.Free(d)
		}
	})
	return e
}

func (e *env) device(h *tensor.Tensor) *tensor.Tensor {
	d := e.g.Alloc(h.DType(), h.Shape()...)
	e.own = append(e.own, d)
	e.g.Upload(d, h)
	return d
}

// randn is a pair holding fresh normal values times scale (rounded to dt).
func (e *env) randn(dt tensor.DType, scale float64, shape ...int) pair {
	h := tensor.New(dt, shape...)
	v := make([]float32, h.Numel())
	for i := range v {
		v[i] = float32(e.r.NormFloat64() * scale)
	}
	tensor.ConvertFromF32(h, v)
	return pair{h, e.device(h)}
}

// ids is a pair of I64 or I32 indices uniform in [lo, hi).
func (e *env) ids(dt tensor.DType, n int, lo, hi int) pair {
	h := tensor.New(dt, n)
	for i := range n {
		v := int64(lo + e.r.IntN(hi-lo))
		if dt == tensor.I64 {
			h.I64()[i] = v
		} else {
			h.I32()[i] = int32(v)
		}
	}
	return pair{h, e.device(h)}
}

// out is an output pair: zero on the CPU, poisoned with NaN (all-ones bytes for integer
// types) on the GPU, so an element the kernel fails to write shows up.
func (e *env) out(dt tensor.DType, shape ...int) pair {
	h := tensor.New(dt, shape...)
	poison := tensor.New(dt, shape...)
	if dt.IsFloat() {
		v := make([]float32, poison.Numel())
		for i := range v {
			v[i] = float32(math.NaN())
		}
		tensor.ConvertFromF32(poison, v)
	} else {
		for i := range poison.Data {
			poison.Data[i] = 0xff
		}
	}
	return pair{h, e.device(poison)}
}

// actIn is an activation input pair (dtype e.act) of normal values times scale, actOut an
// activation output pair (see out).
func (e *env) actIn(scale float64, shape ...int) pair { return e.randn(e.act, scale, shape...) }
func (e *env) actOut(shape ...int) pair               { return e.out(e.act, shape...) }

// actTol is the tolerance of an activation output whose F32 tolerance is tol: with BF16
// activations both backends round the same F32 math once, so exact stays exact and the
// rest may differ by the odd flipped rounding (tolBF16).
func (e *env) actTol(tol float64) float64 {
	if e.act == tensor.BF16 && tol > 0 {
		return tolBF16
	}
	return tol
}

// get downloads a device tensor.
func (e *env) get(d *tensor.Tensor) *tensor.Tensor {
	h := tensor.New(d.DType(), d.Shape()...)
	e.g.Download(h, d)
	return h
}

// check compares the GPU result with the CPU one by relative L2 error; a NaN on one side
// only fails.
func (e *env) check(what string, p pair, tol float64) {
	e.t.Helper()
	got := e.get(p.d).ToF32()
	want := p.h.ToF32()
	var num, den float64
	for i := range want {
		gn, wn := math.IsNaN(float64(got[i])), math.IsNaN(float64(want[i]))
		if gn != wn {
			e.t.Fatalf("%s[%d]: got %v, CPU %v (unwritten or NaN mismatch)", what, i, got[i], want[i])
		}
		if gn {
			continue
		}
		if math.IsInf(float64(want[i]), 0) || math.IsInf(float64(got[i]), 0) {
			require.Equalf(e.t, want[i], got[i], "%s[%d]", what, i)
			continue
		}
		d := float64(got[i]) - float64(want[i])
		num += d * d
		den += float64(want[i]) * float64(want[i])
	}
	rel := math.Sqrt(num)
	if den > 0 {
		rel = math.Sqrt(num / den)
	}
	require.LessOrEqualf(e.t, rel, tol, "%s: relative L2 error %.3g > %.3g", what, rel, tol)
}

// checkBits requires bitwise-equal storage.
func (e *env) checkBits(what string, p pair) {
	e.t.Helper()
	got := e.get(p.d)
	require.Equal(e.t, p.h.Data, got.Data, what)
}

// i32 is a pair holding vals (I32, of the given shape).
func (e *env) i32(vals []int32, shape ...int) pair {
	h := tensor.New(tensor.I32, shape...)
	copy(h.I32(), vals)
	return pair{h, e.device(h)}
}

// docStarts is KeyStart [b, s] for sequences packed from documents of the given lengths
// (repeated to fill s, each batch row starting one document further on): every token's
// document start (--reset-attention-mask).
func docStarts(b, s int, lens ...int) []int32 {
	out := make([]int32, b*s)
	for bi := range b {
		start, k := 0, bi
		for i := range s {
			if i-start == lens[k%len(lens)] {
				start, k = i, k+1
			}
			out[bi*s+i] = int32(start)
		}
	}
	return out
}

// docPositions is RoPE's Positions [b, s] for the documents of docStarts: every token's
// position within its document (--reset-position-ids).
func docPositions(b, s int, lens ...int) []int32 {
	pos := docStarts(b, s, lens...)
	for i := range pos {
		pos[i] = int32(i%s) - pos[i]
	}
	return pos
}

// emptyRows sets the key start of the given rows to t (past every key).
func emptyRows(ks []int32, t int, rows ...int) []int32 {
	for _, r := range rows {
		ks[r] = int32(t)
	}
	return ks
}
