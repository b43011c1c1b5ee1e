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

// TestLayerVariantGradients checks backward passes against central differences of the
// loss: --qk-layernorm's q_layernorm and k_layernorm weights (RMSNorm, and LayerNorm with
// its bias) and the QKV weight behind them; and Falcon-40B's parallel attention with the
// MLP's own norm (--parallel-attention-mlp-norm), both norms of the layer input and the
// fc1 weight behind the MLP's.
func TestLayerVariantGradients(t *testing.T) {
	const s, b = 8, 2
	for _, tc := range []struct {
		name  string
		mod   func(*layers.Config)
		check func(name string) bool
		want  int // parameters checked
	}{
		{"qk-rmsnorm", func(c *layers.Config) { c.QKLayernorm = true }, qkParam, 2*2 + 1},
		{"qk-layernorm", func(c *layers.Config) { c.QKLayernorm, c.Normalization = true, "LayerNorm" }, qkParam, 2*2*2 + 1},
		{"mla", mlaVariant(16, true, "yarn", 6), mlaParam, 6},
		{"mla-lite", mlaVariant(0, false, "rope", 12), mlaParam, 3},
		{"falcon-40b", func(c *layers.Config) {
			c.Normalization, c.SwiGLU, c.ParallelAttention, c.ParallelMLPNorm, c.FFNHiddenSize = "LayerNorm", false, true, true, 128
		}, func(n string) bool {
			return strings.Contains(n, "layers.0.") && (strings.Contains(n, "layernorm") || strings.HasSuffix(n, "linear_fc1.weight"))
		}, 2*2 + 1},
	} {
		cfg := mustPreset("tiny-llama")
		tc.mod(&cfg)
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
		_, n, err := m.Forward(st, bt, 1, 0)
		require.NoError(t, err)
		require.NoError(t, m.Backward(st, float32(1/n), nil))
		checked := 0
		for _, p := range m.Params {
			if !tc.check(p.Name) {
				continue
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
				require.InDelta(t, fd, float64(g[i]), 2e-3+0.02*math.Abs(fd), "%s %s[%d]", tc.name, p.Name, i)
			}
			checked++
		}
		require.Equal(t, tc.want, checked, tc.name)
	}
}

// qkParam selects the head norms' parameters and the last layer's QKV weight.
func qkParam(n string) bool {
	return strings.Contains(n, "self_attention.q_layernorm") || strings.Contains(n, "self_attention.k_layernorm") ||
		strings.HasSuffix(n, "layers.1.self_attention.linear_qkv.weight")
}

// mlaParam selects the last layer's multi-latent attention weights.
func mlaParam(n string) bool {
	return strings.Contains(n, "layers.1.self_attention.") && !strings.Contains(n, "linear_proj")
}
