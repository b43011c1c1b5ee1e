package layers_test

import (
	"context"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/comm"
	"github.com/gomegatron/gomegatron/comm/tcp"
	"github.com/gomegatron/gomegatron/kernels"
	"github.com/gomegatron/gomegatron/kernels/cpu"
	"github.com/gomegatron/gomegatron/layers"
	"github.com/gomegatron/gomegatron/optim"
)

// runSharded runs one forward and backward on tp in-process ranks and returns the loss and
// every parameter's full (unsharded) gradient and value.
func runSharded(t *testing.T, cfg layers.Config, tp int, sp bool, bt layers.Batch, s, b int) (float64, map[string][]float32, map[string][]float32) {
	t.Helper()
	return runShardedWith(t, cfg, tp, sp, bt, s, b, nil)
}

// runShardedWith is runSharded with setup applied to each rank's model before its stash.
func runShardedWith(t *testing.T, cfg layers.Config, tp int, sp bool, bt layers.Batch, s, b int, setup func(kernels.Backend, *layers.GPTModel) error) (float64, map[string][]float32, map[string][]float32) {
	t.Helper()
	var comms []comm.Comm
	if tp > 1 {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var err error
		comms, err = tcp.LocalWorld(ctx, tp, tcp.Options{Timeout: 30 * time.Second})
		require.NoError(t, err)
		defer func() {
			for _, c := range comms {
				c.Close()
			}
		}()
	}
	models := make([]*layers.GPTModel, tp)
	losses := make([]float64, tp)
	errs := make([]error, tp)
	var wg sync.WaitGroup
	for r := 0; r < tp; r++ {
		wg.Add(1)
		go func(r int) {
			defer wg.Done()
			par := layers.Parallel{SequenceParallel: sp}
			if tp > 1 {
				par.TP = comms[r]
			}
			be := cpu.New()
			m, err := layers.NewParallelGPTModel(be, cfg, par, 99)
			if err != nil {
				errs[r] = err
				return
			}
			optim.Attach(be, m.Params, 1)
			if setup != nil {
				if errs[r] = setup(be, m); errs[r] != nil {
					return
				}
			}
			st := m.NewStash(s, b)
			sum, n, err := m.Forward(st, bt, 1, 0)
			if err == nil {
				err = m.Backward(st, float32(1/n), nil)
			}
			if err == nil {
				err = m.ReduceSequenceParallelGrads()
			}
			models[r], losses[r], errs[r] = m, sum/n, err
		}(r)
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	grads, vals := map[string][]float32{}, map[string][]float32{}
	for i, p := range models[0].Params {
		g, v := make([][]float32, tp), make([][]float32, tp)
		for r := 0; r < tp; r++ {
			q := models[r].Params[i]
			g[r], v[r] = q.Grad.F32(), q.Data.ToF32()
		}
		grads[p.Name] = layers.Unshard(g, p.FullShape, p.PartitionDim, p.GLU)
		vals[p.Name] = layers.Unshard(v, p.FullShape, p.PartitionDim, p.GLU)
	}
	for r := 1; r < tp; r++ {
		require.Equal(t, losses[0], losses[r], "every TP rank reports the same loss")
	}
	return losses[0], grads, vals
}

func testBatch(b, s, vocab int) layers.Batch {
	bt := layers.Batch{Tokens: make([]int64, b*s), Labels: make([]int64, b*s), LossMask: make([]float32, b*s)}
	x := uint64(12345)
	for i := range bt.Tokens {
		x = x*6364136223846793005 + 1442695040888963407
		bt.Tokens[i] = int64(x>>33) % int64(vocab)
		x = x*6364136223846793005 + 1442695040888963407
		bt.Labels[i] = int64(x>>33) % int64(vocab)
		bt.LossMask[i] = float32(i % 7 % 2) // a mask with holes
	}
	return bt
}

// TestTensorParallelMatchesSingle checks that TP (with and without sequence parallelism)
// gives the single-process loss and gradients for every model family's layer variant.
func TestTensorParallelMatchesSingle(t *testing.T) {
	const s, b = 16, 2
	for name, mod := range layerVariants() {
		cfg := mustPreset("tiny-llama")
		mod(&cfg)
		cfg.MakeVocabSizeDivisibleBy = 1
		bt := testBatch(b, s, cfg.VocabSize)
		refLoss, refGrads, refVals := runSharded(t, cfg, 1, false, bt, s, b)
		for _, tp := range []int{2, 4} {
			if cfg.NumQueryGroups%tp != 0 && cfg.GroupQueryAttention {
				continue
			}
			for _, sp := range []bool{false, true} {
				loss, grads, vals := runSharded(t, cfg, tp, sp, bt, s, b)
				require.InDelta(t, refLoss, loss, 1e-5*math.Abs(refLoss), "%s tp=%d sp=%v loss", name, tp, sp)
				for k, want := range refGrads {
					require.Equal(t, refVals[k], vals[k], "%s: initial %s must not depend on the layout", name, k)
					require.Len(t, grads[k], len(want), k)
					require.LessOrEqual(t, relErr(grads[k], want), 1e-5, "%s tp=%d sp=%v grad %s", name, tp, sp, k)
				}
			}
		}
	}
}

// layerVariants changes the tiny Llama into each model family's layer variant.
func layerVariants() map[string]func(*layers.Config) {
	return map[string]func(*layers.Config){
		"llama-gqa": func(c *layers.Config) {},
		"gpt2":      func(c *layers.Config) { *c = mustPreset("tiny-gpt2") },
		"bloom": func(c *layers.Config) {
			*c = mustPreset("tiny-gpt2")
			c.PositionEmbeddingType, c.EmbeddingLayerNorm = "alibi", true
		},
		"falcon": func(c *layers.Config) {
			c.Normalization, c.SwiGLU, c.ParallelAttention, c.GroupQueryAttention, c.NumQueryGroups = "LayerNorm", false, true, false, 4
			c.FFNHiddenSize = 256
		},
		"post-ln-qkv-bias": func(c *layers.Config) {
			c.ApplyResidualConnectionPostLayernorm, c.AddQKVBias, c.RotaryPercent = true, true, 0.5
		},
		// Falcon-40B: parallel attention with the MLP's own norm (ln_attn, ln_mlp), GQA.
		"falcon-40b": func(c *layers.Config) {
			c.Normalization, c.SwiGLU, c.ParallelAttention, c.ParallelMLPNorm = "LayerNorm", false, true, true
			c.FFNHiddenSize = 256
		},
		// ChatGLM / GLM-4: interleaved RoPE on half of each head, QKV biases.
		"glm-interleaved-half-rope": func(c *layers.Config) { c.RotaryInterleaved, c.RotaryPercent, c.AddQKVBias = true, 0.5, true },
		// Qwen3: RMSNorm over each head's queries and keys, before RoPE (GQA, 2 groups).
		"qwen3-qk-layernorm": func(c *layers.Config) { c.QKLayernorm = true },
		// LayerNorm (with bias) as the head norm, multi-head.
		"qk-layernorm-layernorm": func(c *layers.Config) {
			c.QKLayernorm, c.Normalization, c.GroupQueryAttention, c.NumQueryGroups = true, "LayerNorm", false, 4
		},
		// DeepSeek-V2: multi-latent attention with a query latent, latent norms, YaRN and
		// values narrower than the heads; and DeepSeek-V2-Lite's direct query projection.
		"deepseek-v2-mla":      mlaVariant(16, true, "yarn", 6),
		"deepseek-v2-lite-mla": mlaVariant(0, false, "rope", 12),
		// Baichuan 2 13B: ALiBi with RMSNorm and SwiGLU, and the NormHead output layer.
		"baichuan2-13b": func(c *layers.Config) {
			c.PositionEmbeddingType, c.GroupQueryAttention, c.NumQueryGroups = "alibi", false, 4
			c.UseNormHead, c.UntieEmbeddingsAndOutputWeights = true, true
		},
	}
}

// relErr is ‖got − want‖/‖want‖ (the absolute error when want is zero).
func relErr(got, want []float32) float64 {
	var num, den float64
	for i := range want {
		d := float64(got[i] - want[i])
		num += d * d
		den += float64(want[i]) * float64(want[i])
	}
	if den == 0 {
		return math.Sqrt(num)
	}
	return math.Sqrt(num / den)
}

func mustPreset(name string) layers.Config {
	c, err := layers.Preset(name)
	if err != nil {
		panic(err)
	}
	return c
}

// mlaVariant is the tiny Llama with multi-latent attention: 4 heads of 8 + 4 channels, a kv
// latent of 12, query latent rq (0: linear_q_proj), latent norms, RoPE type rope or yarn
// (factor 4 over 8 original positions, mscales 0.9 and 0.6), values of width dv.
func mlaVariant(rq int, norms bool, rope string, dv int) func(*layers.Config) {
	return func(c *layers.Config) {
		c.MultiLatentAttention, c.GroupQueryAttention, c.QKLayernorm = true, false, norms
		c.QLoRARank, c.KVLoRARank, c.QKHeadDim, c.QKPosEmbHeadDim, c.VHeadDim = rq, 12, 8, 4, dv
		c.RopeType, c.YarnScalingFactor, c.YarnOrigMaxPositions, c.YarnMScale, c.YarnMScaleAllDim = rope, 4, 8, 0.9, 0.6
	}
}
