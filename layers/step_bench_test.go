package layers

import (
	"testing"

	"github.com/gomegatron/gomegatron/kernels/cpu"
	"github.com/gomegatron/gomegatron/tensor"
)

// BenchmarkTrainStep runs forward and backward of a small model's microbatch on the CPU
// backend; with -benchmem its allocs/op show what a step still allocates (DESIGN: a step
// allocates nothing): go test ./layers -run '^$' -bench TrainStep -benchmem.
func BenchmarkTrainStep(b *testing.B) {
	for _, tc := range []struct {
		name string
		set  func(c *Config)
	}{
		{"dense", func(c *Config) {}},
		{"moe", func(c *Config) {
			c.DisableBiasLinear, c.NumExperts, c.MoERouterTopK, c.MoEAuxLossCoeff, c.MoEZLossCoeff = true, 4, 2, 0.01, 0.001
		}},
		{"moe-grouped", func(c *Config) {
			c.DisableBiasLinear, c.NumExperts, c.MoERouterTopK, c.MoEGroupedGemm = true, 4, 2, true
		}},
		{"moe-sinkhorn-jitter", func(c *Config) {
			c.DisableBiasLinear, c.NumExperts, c.MoERouterTopK = true, 4, 1
			c.MoERouterLoadBalancingType, c.MoEInputJitterEps = "sinkhorn", 0.01
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			cfg := Defaults()
			cfg.NumLayers, cfg.HiddenSize, cfg.NumAttentionHeads, cfg.FFNHiddenSize = 2, 16, 2, 32
			cfg.PaddedVocabSize, cfg.VocabSize, cfg.SeqLength, cfg.MaxPositionEmbeddings = 32, 32, 8, 8
			tc.set(&cfg)
			be := cpu.New()
			m, err := NewGPTModel(be, cfg, 1)
			if err != nil {
				b.Fatal(err)
			}
			for _, p := range m.Params {
				p.Grad = be.Alloc(tensor.F32, p.Shape...)
			}
			const s, mb = 8, 2
			st := m.NewStash(s, mb)
			bt := Batch{Tokens: make([]int64, s*mb), Labels: make([]int64, s*mb), LossMask: make([]float32, s*mb)}
			for i := range bt.Tokens {
				bt.Tokens[i], bt.Labels[i], bt.LossMask[i] = int64(i%30), int64((i+1)%30), 1
			}
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if _, _, err := m.Forward(st, bt, 1, uint64(i)); err != nil {
					b.Fatal(err)
				}
				if err := m.Backward(st, 1, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
