package layers

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/kernels/cpu"
	"github.com/gomegatron/gomegatron/tensor"
)

func TestFakeQuantRoundsLikeFP8(t *testing.T) {
	be := cpu.New()
	sc := &fp8Scratch{be: be}
	src := tensor.FromF32([]float32{0.1, -3.3, 1e-4, 500, -0.015625, 7}, 6)
	dst := tensor.New(tensor.F32, 6)
	var scale float32 = 40
	inv := 1 / scale // dequantisation multiplies by scale_inv, as Transformer Engine does
	amax := tensor.New(tensor.F32, 1)
	sc.fakeQuant(dst, src, tensor.F8E4M3, scale, amax)
	require.Equal(t, float32(500), amax.F32()[0])
	for i, x := range src.F32() {
		want := tensor.F32FromE4M3(tensor.E4M3FromF32(x*scale, true)) * inv
		require.Equal(t, want, dst.F32()[i], "element %d", i)
	}
	require.Equal(t, 448*inv, dst.F32()[3], "overflow saturates to the largest E4M3")
	amax.F32()[0] = 0
	sc.fakeQuant(dst, src, tensor.F8E5M2, 1, amax)
	require.Equal(t, float32(500), amax.F32()[0])
	require.Equal(t, tensor.F32FromE5M2(tensor.E5M2FromF32(-3.3, true)), dst.F32()[1])
}

// TestDelayedScaling checks Transformer Engine's update: scale = fp8_max/amax/2^margin from
// max(history) or history[0], with the history rolled after each step.
func TestDelayedScaling(t *testing.T) {
	for _, tc := range []struct {
		algo   string
		margin int
	}{{"max", 0}, {"most_recent", 0}, {"max", 1}} {
		c, err := Preset("tiny-llama")
		require.NoError(t, err)
		m, err := NewGPTModel(cpu.New(), c, 1)
		require.NoError(t, err)
		require.NoError(t, m.SetFP8(FP8Recipe{Format: "hybrid", Margin: tc.margin, HistoryLen: 3, ComputeAlgo: tc.algo}))
		lin := m.Layers[0].QKV
		amaxes := []float32{4, 2, 1, 0.5}
		for step, a := range amaxes {
			copy(lin.fp8.amax.F32(), []float32{a, 2 * a, 8 * a})
			require.NoError(t, m.UpdateFP8Scales(nil))
			// History after the roll holds this and earlier steps' amaxes (length 3).
			want := a
			if tc.algo == "max" {
				for k := max(0, step-2); k <= step; k++ {
					want = max(want, amaxes[k])
				}
			}
			div := math.Pow(2, float64(tc.margin))
			require.InDelta(t, 448/float64(want)/div, float64(lin.fp8.scale[fp8Input]), 1e-4, "%s step %d input", tc.algo, step)
			require.InDelta(t, 448/float64(2*want)/div, float64(lin.fp8.scale[fp8Weight]), 1e-4, "%s step %d weight", tc.algo, step)
			require.InDelta(t, 57344/float64(8*want)/div, float64(lin.fp8.scale[fp8GradOut]), 1e-2, "%s step %d grad (E5M2)", tc.algo, step)
		}
		require.Equal(t, []float32{0, 0, 0}, lin.fp8.amax.F32(), "the step's amaxes are cleared")
		before := lin.fp8.scale
		m.fp8.ComputeAlgo = "most_recent"
		require.NoError(t, m.UpdateFP8Scales(nil))
		require.Equal(t, before, lin.fp8.scale, "a zero amax keeps the old scale")
	}
	require.Error(t, FP8Recipe{Format: "e5m2", HistoryLen: 1, ComputeAlgo: "max"}.Validate())
}

// TestFP8ChangesOnlyTransformerGEMMs: FP8 moves the logits a little (quantisation is on)
// but not much (the recipe is sane), and records amaxes for every FP8 linear.
func TestFP8ForwardIsCloseButNotEqual(t *testing.T) {
	c, err := Preset("tiny-llama")
	require.NoError(t, err)
	run := func(fp8 bool) []float32 {
		m, err := NewGPTModel(cpu.New(), c, 3)
		require.NoError(t, err)
		if fp8 {
			require.NoError(t, m.SetFP8(FP8Recipe{Format: "e4m3", HistoryLen: 1, ComputeAlgo: "most_recent"}))
		}
		st := m.NewStash(16, 2)
		bt := patternBatch(32)
		_, _, err = m.Forward(st, bt, 0, 0)
		require.NoError(t, err)
		if fp8 {
			for _, lin := range m.fp8Linears() {
				require.Greater(t, lin.fp8.amax.F32()[fp8Input], float32(0))
				require.Greater(t, lin.fp8.amax.F32()[fp8Weight], float32(0))
			}
		}
		return append([]float32(nil), st.Logits.F32()...)
	}
	a, b := run(false), run(true)
	var num, den float64
	for i := range a {
		d := float64(a[i] - b[i])
		num += d * d
		den += float64(a[i]) * float64(a[i])
	}
	rel := math.Sqrt(num / den)
	require.Greater(t, rel, 1e-4, "FP8 quantisation must change the logits")
	require.Less(t, rel, 0.1, "but only by quantisation error")
}

// TestFP8WeightGradient: with Megatron's default fp8_wgrad the weight gradient is
// Σ_n q(dy)ᵀ·q(x) — the output gradient rounded to E5M2 (hybrid) with its scale, the input
// to E4M3 with the input scale — added to what the gradient held; with HighPrecisionWGrad
// (--no-fp8-wgrad) it is dyᵀ·x. The reference quantises element by element here.
func TestFP8WeightGradient(t *testing.T) {
	c, err := Preset("tiny-llama")
	require.NoError(t, err)
	for _, high := range []bool{false, true} {
		m, err := NewGPTModel(cpu.New(), c, 3)
		require.NoError(t, err)
		require.NoError(t, m.SetFP8(FP8Recipe{Format: "hybrid", HistoryLen: 1, ComputeAlgo: "max", HighPrecisionWGrad: high}))
		lin := m.fp8Linears()[2] // linear_fc1
		lin.fp8.scale = [fp8Roles]float32{3.5, 1, 1500}
		const n = 24
		x, dy := tensor.New(tensor.F32, n, lin.In), tensor.New(tensor.F32, n, lin.Out)
		for i, v := 0, x.F32(); i < len(v); i++ {
			v[i] = float32(math.Sin(float64(i)*0.37)) * 2
		}
		for i, v := 0, dy.F32(); i < len(v); i++ {
			v[i] = float32(math.Cos(float64(i)*0.11)) * 1e-2
		}
		lin.W.Grad = tensor.New(tensor.F32, lin.Out, lin.In)
		g := lin.W.Grad.F32()
		for i := range g {
			g[i] = 0.5
		}
		lin.WeightBackward(m.be, nil, dy, x)
		qx := func(v float32) float64 {
			if high {
				return float64(v)
			}
			return float64(tensor.F32FromE4M3(tensor.E4M3FromF32(v*3.5, true))) / 3.5
		}
		qg := func(v float32) float64 {
			if high {
				return float64(v)
			}
			return float64(tensor.F32FromE5M2(tensor.E5M2FromF32(v*1500, true))) / 1500
		}
		var worst, moved float64
		for o := 0; o < lin.Out; o++ {
			for i := 0; i < lin.In; i++ {
				want := 0.5
				for k := 0; k < n; k++ {
					want += qg(dy.F32()[k*lin.Out+o]) * qx(x.F32()[k*lin.In+i])
				}
				var exact float64 = 0.5
				for k := 0; k < n; k++ {
					exact += float64(dy.F32()[k*lin.Out+o]) * float64(x.F32()[k*lin.In+i])
				}
				worst = math.Max(worst, math.Abs(float64(g[o*lin.In+i])-want))
				moved = math.Max(moved, math.Abs(want-exact))
			}
		}
		require.Less(t, worst, 1e-6, "high precision %v: the gradient is Σ q(dy)·q(x)", high)
		if !high {
			require.Greater(t, moved, 1e-4, "FP8 operands change the weight gradient")
		}
	}
}
