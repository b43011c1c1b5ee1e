package layers_test

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/kernels/cpu"
	"github.com/gomegatron/gomegatron/layers"
	"github.com/gomegatron/gomegatron/optim"
	"github.com/gomegatron/gomegatron/tensor"
)

// TestNormHead checks --use-normhead against its definition: the model computes the loss
// of a plain model whose output layer holds the normalised rows Ŵ_v = W_v/‖W_v‖ (every
// other gradient the same), and its output-layer gradient is the plain one taken through
// the normalisation, dW_v = (dŴ_v − Ŵ_v⟨Ŵ_v, dŴ_v⟩)/‖W_v‖, computed here in float64. The
// vocabulary's padding rows, zeros as conversion writes them, stay zero and get no
// gradient.
func TestNormHead(t *testing.T) {
	cfg := mustPreset("tiny-llama")
	cfg.MakeVocabSizeDivisibleBy = 1
	cfg.UntieEmbeddingsAndOutputWeights = true
	cfg.PaddedVocabSize = cfg.VocabSize + 3
	const s, b = 16, 2
	bt := testBatch(b, s, cfg.VocabSize)
	run := func(normHead bool, edit func(w []float32)) (float64, map[string][]float32) {
		c := cfg
		c.UseNormHead = normHead
		be := cpu.New()
		m, err := layers.NewGPTModel(be, c, 5)
		require.NoError(t, err)
		optim.Attach(be, m.Params, 1)
		w := m.Params.ByName("output_layer.weight").Data.F32()
		for i := range w {
			w[i] *= float32(1 + i/cfg.HiddenSize%3) // rows of different norms
		}
		clear(w[cfg.VocabSize*cfg.HiddenSize:]) // the padding rows
		edit(w)
		st := m.NewStash(s, b)
		sum, n, err := m.Forward(st, bt, 1, 0)
		require.NoError(t, err)
		require.NoError(t, m.Backward(st, float32(1/n), nil))
		grads := map[string][]float32{}
		for _, p := range m.Params {
			grads[p.Name] = append([]float32(nil), p.Grad.F32()...)
		}
		return sum / n, grads
	}
	h := cfg.HiddenSize
	var w []float32
	loss, grads := run(true, func(v []float32) { w = append([]float32(nil), v...) })
	norms := make([]float64, len(w)/h)
	for r := range norms {
		for _, x := range w[r*h : (r+1)*h] {
			norms[r] += float64(x) * float64(x)
		}
		norms[r] = math.Sqrt(norms[r])
	}
	plainLoss, plain := run(false, func(v []float32) {
		for i := range v {
			if norms[i/h] > 0 {
				v[i] = float32(float64(w[i]) / norms[i/h])
			}
		}
	})
	require.InDelta(t, plainLoss, loss, 1e-6*math.Abs(plainLoss), "loss")
	for k, g := range plain {
		if k != "output_layer.weight" {
			require.LessOrEqual(t, relErr(grads[k], g), 1e-5, k)
		}
	}
	want := make([]float32, len(w))
	for r, n := range norms {
		if n == 0 {
			continue
		}
		var dot float64
		for j := 0; j < h; j++ {
			dot += float64(w[r*h+j]) / n * float64(plain["output_layer.weight"][r*h+j])
		}
		for j := 0; j < h; j++ {
			i := r*h + j
			want[i] = float32((float64(plain["output_layer.weight"][i]) - float64(w[i])/n*dot) / n)
		}
	}
	got := grads["output_layer.weight"]
	require.LessOrEqual(t, relErr(got, want), 1e-5, "output layer gradient through the normalisation")
	require.Equal(t, make([]float32, 3*h), got[cfg.VocabSize*h:], "the padding rows' gradient")
	require.NotEqual(t, plain["output_layer.weight"], got)

	// 16-bit weight copies (Param.Low), as a GPU run's --bf16 and --fp16 weights: the norm
	// reads BF16 weights directly and F16 ones widened to F32; both follow the F32 model
	// within 16-bit rounding.
	for _, dt := range []tensor.DType{tensor.BF16, tensor.F16} {
		low, lowGrads := runLow(t, cfg, bt, s, b, dt)
		require.InDelta(t, loss, low, 1e-2*loss, "%v loss", dt)
		require.Less(t, relErr(lowGrads, grads["output_layer.weight"]), 3e-2, "%v output layer gradient", dt)
	}
}

// runLow is TestNormHead's NormHead model (rows of different norms, zero padding) with
// Param.Low weight copies in dt: its loss and output-layer gradient.
func runLow(t *testing.T, cfg layers.Config, bt layers.Batch, s, b int, dt tensor.DType) (float64, []float32) {
	cfg.UseNormHead = true
	be := cpu.New()
	m, err := layers.NewGPTModel(be, cfg, 5)
	require.NoError(t, err)
	optim.Attach(be, m.Params, 1)
	out := m.Params.ByName("output_layer.weight")
	w := out.Data.F32()
	for i := range w {
		w[i] *= float32(1 + i/cfg.HiddenSize%3)
	}
	clear(w[cfg.VocabSize*cfg.HiddenSize:])
	m.Params.SetLowPrecision(be, dt)
	st := m.NewStash(s, b)
	sum, n, err := m.Forward(st, bt, 1, 0)
	require.NoError(t, err)
	require.NoError(t, m.Backward(st, float32(1/n), nil))
	return sum / n, append([]float32(nil), out.Grad.F32()...)
}
