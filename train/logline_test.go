package train_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/kernels/cpu"
	"github.com/gomegatron/gomegatron/layers"
	"github.com/gomegatron/gomegatron/train"
)

// TestFLOPsMLA checks multi-latent attention's FLOPs (Megatron's num_floating_point_operations
// terms) against the model itself: the token-linear attention term is 6 FLOPs per weight of
// the attention projections and per latent-norm channel, so two models that differ only in
// attention differ by B·s·L·6·Δparams plus the core-attention terms.
func TestFLOPsMLA(t *testing.T) {
	for _, rq := range []int{0, 16} {
		cfg, err := layers.Preset("tiny-llama")
		require.NoError(t, err)
		cfg.MultiLatentAttention, cfg.GroupQueryAttention, cfg.QKLayernorm = true, false, true
		cfg.QLoRARank, cfg.KVLoRARank, cfg.QKHeadDim, cfg.QKPosEmbHeadDim, cfg.VHeadDim = rq, 12, 8, 4, 6
		cfg.SeqLength, cfg.MakeVocabSizeDivisibleBy = 32, 1
		m, err := layers.NewGPTModel(cpu.New(), cfg, 1)
		require.NoError(t, err)
		attnParams := 0
		for _, p := range m.Params {
			if strings.Contains(p.Name, "layers.0.self_attention.") {
				attnParams += p.Data.Numel()
			}
		}
		// The same model with core attention counted apart: at s = 1 the s² term is one
		// position's; doubling s isolates it.
		const batch = 3
		c := m.Cfg
		f1 := train.FLOPs(&c, batch)
		c.SeqLength *= 2
		f2 := train.FLOPs(&c, batch)
		s := float64(cfg.SeqLength)
		// f(s) = B·s·(lin) + B·s²·core  ⇒  core = (f(2s) − 2f(s))/(2·B·s²).
		core := (f2 - 2*f1) / (2 * batch * s * s)
		H := float64(cfg.NumAttentionHeads)
		require.InDelta(t, 3*H*float64(8+4+6)*float64(cfg.NumLayers), core, 1e-6, "q=%d core attention", rq)
		dense := cfg
		dense.MultiLatentAttention, dense.QKLayernorm, dense.NumQueryGroups = false, false, 4
		require.NoError(t, dense.Finalize())
		noAttn := train.FLOPs(&dense, batch) - batch*s*6*float64(dense.HiddenSize*dense.KVChannels*dense.NumAttentionHeads*4)*float64(dense.NumLayers) -
			batch*s*s*6*float64(dense.KVChannels*dense.NumAttentionHeads)*float64(dense.NumLayers)
		lin := f1 - batch*s*s*core - noAttn
		require.InDelta(t, batch*s*6*float64(attnParams)*float64(cfg.NumLayers), lin, 1e-3, "q=%d projections", rq)
	}
}
