package layers_test

import (
	"math"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/kernels/cpu"
	"github.com/gomegatron/gomegatron/layers"
	"github.com/gomegatron/gomegatron/optim"
)

// TestQKLayernormGradients checks --qk-layernorm's backward against central differences
// of the loss: the q_layernorm and k_layernorm weights (RMSNorm and LayerNorm with its
// bias) and the QKV weight behind them, whose gradient passes through the norms.
func TestQKLayernormGradients(t *testing.T) {
	const s, b = 8, 2
	for _, norm := range []string{"RMSNorm", "LayerNorm"} {
		cfg := mustPreset("tiny-llama")
		cfg.QKLayernorm, cfg.Normalization = true, norm
		cfg.MakeVocabSizeDivisibleBy, cfg.InitMethodStd = 1, 0.3
		be := cpu.New()
		m, err := layers.NewGPTModel(be, cfg, 5)
		require.NoError(t, err)
		optim.Attach(be, m.Params, 1)
		bt := testBatch(b, s, cfg.VocabSize)
		st := m.NewStash(s, b)
		loss := func() float64 {
			sum, n, err := m.Forward(st, bt, 1, 0)
			require.NoError(t, err)
			return sum / n
		}
		sum, n, err := m.Forward(st, bt, 1, 0)
		require.NoError(t, err)
		require.NoError(t, m.Backward(st, float32(1/n), nil))
		_ = sum
		checked := 0
		for _, p := range m.Params {
			if !strings.Contains(p.Name, "layernorm") || !strings.Contains(p.Name, "self_attention") {
				if !strings.HasSuffix(p.Name, "layers.1.self_attention.linear_qkv.weight") {
					continue
				}
			}
			w, g := p.Data.F32(), p.Grad.F32()
			for _, i := range []int{0, 3, len(w) / 2, len(w) - 1} {
				const eps = 1e-2
				orig := w[i]
				w[i] = orig + eps
				up := loss()
				w[i] = orig - eps
				down := loss()
				w[i] = orig
				fd := (up - down) / (2 * eps)
				require.InDelta(t, fd, float64(g[i]), 2e-3+0.02*math.Abs(fd), "%s %s[%d]", norm, p.Name, i)
				checked++
			}
		}
		want := 2 * 2 * 4 // two layers × q and k weights × 4 elements
		if norm == "LayerNorm" {
			want *= 2 // and their biases
		}
		require.Equal(t, want+4, checked, norm)
	}
}
