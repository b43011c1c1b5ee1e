package layers_test

import (
	"fmt"
	"math"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/kernels"
	"github.com/gomegatron/gomegatron/kernels/cpu"
	"github.com/gomegatron/gomegatron/layers"
	"github.com/gomegatron/gomegatron/tensor"
)

// TestBF16Activations runs every layer variant with BF16 activations (as Megatron keeps
// them under --bf16) — with F32 weights, with 16-bit weight copies (Param.Low), under
// TP with sequence parallelism and with full recompute — and checks loss and every
// gradient against F32 activations within bf16 tolerance: rounding each stored
// activation to 8 bits of mantissa moves the loss by ~1e-3 and the gradients by ~1e-2,
// while a wrong op (an unwritten output, a mis-rounded store) moves them by far more.
func TestBF16Activations(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	bf16 := func(low bool, rc *layers.Recompute) func(be kernels.Backend, m *layers.GPTModel) error {
		return func(be kernels.Backend, m *layers.GPTModel) error {
			if low {
				m.Params.SetLowPrecision(be, tensor.BF16)
			}
			if rc != nil {
				if err := m.SetRecompute(*rc); err != nil {
					return err
				}
			}
			return m.SetActivationDType(tensor.BF16)
		}
	}
	mods := layerVariants()
	mods["dropout"] = func(c *layers.Config) { c.HiddenDropout, c.AttentionDropout = 0.1, 0.1 }
	const s, b = 16, 2
	for name, mod := range mods {
		cfg := mustPreset("tiny-llama")
		mod(&cfg)
		cfg.MakeVocabSizeDivisibleBy = 1
		bt := testBatch(b, s, cfg.VocabSize)
		refLoss, refGrads, _ := runSharded(t, cfg, 1, false, bt, s, b)
		variants := []struct {
			name string
			tp   int
			sp   bool
			set  func(kernels.Backend, *layers.GPTModel) error
		}{
			{"f32-weights", 1, false, bf16(false, nil)},
			{"bf16-weights", 1, false, bf16(true, nil)},
			{"tp2-sp", 2, true, bf16(true, nil)},
			{"recompute", 1, false, bf16(true, &layers.Recompute{Granularity: "full", Method: "uniform", NumLayers: 1})},
		}
		for _, v := range variants {
			t.Run(fmt.Sprintf("%s/%s", name, v.name), func(t *testing.T) {
				loss, grads, _ := runShardedWith(t, cfg, v.tp, v.sp, bt, s, b, v.set)
				require.InDelta(t, refLoss, loss, 5e-3*math.Abs(refLoss), "loss")
				var worst float64
				for k, want := range refGrads {
					e := relErr(grads[k], want)
					require.Lessf(t, e, 5e-2, "grad %s: relative error %.3g", k, e)
					worst = max(worst, e)
				}
				t.Logf("loss %.6f vs %.6f, worst grad error %.3g", loss, refLoss, worst)
			})
		}
	}
}

// TestBF16ActivationsRefuseFP8 checks the one combination SetActivationDType refuses.
func TestBF16ActivationsRefuseFP8(t *testing.T) {
	cfg := mustPreset("tiny-llama")
	m, err := layers.NewGPTModel(cpu.New(), cfg, 1)
	require.NoError(t, err)
	require.NoError(t, m.SetFP8(layers.FP8Recipe{Format: "hybrid", HistoryLen: 4, ComputeAlgo: "max"}))
	require.ErrorContains(t, m.SetActivationDType(tensor.BF16), "FP8")
	require.ErrorContains(t, m.SetActivationDType(tensor.F16), "want F32 or BF16")
}
