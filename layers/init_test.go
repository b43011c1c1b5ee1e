package layers

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/kernels/cpu"
)

// TestXavierUniformInit: --init-method-xavier-uniform draws every matrix uniform on
// ±sqrt(6/(fan_in+fan_out)) of its full shape (mean 0, variance bound²/3), linear_proj and
// linear_fc2 unscaled, norms 1, biases 0, and a TP=2 shard is the slice of the same tensor.
func TestXavierUniformInit(t *testing.T) {
	cfg, err := Preset("tiny-gpt2")
	require.NoError(t, err)
	cfg.InitMethodXavierUniform = true
	m, err := NewGPTModel(cpu.New(), cfg, 3)
	require.NoError(t, err)
	for _, p := range m.Params {
		v := p.Data.F32()
		if p.Data.Rank() == 1 {
			want := float32(0)
			if hasSuffix(p.Name, "norm.weight") {
				want = 1
			}
			for _, x := range v {
				require.Equal(t, want, x, p.Name)
			}
			continue
		}
		bound := math.Sqrt(6 / float64(p.FullShape[0]+p.FullShape[1]))
		var sum, sq float64
		for _, x := range v {
			require.Less(t, math.Abs(float64(x)), bound, p.Name)
			sum += float64(x)
			sq += float64(x) * float64(x)
		}
		n := float64(len(v))
		require.InDelta(t, 0, sum/n, 4*bound/math.Sqrt(3*n), "%s mean", p.Name)
		require.InDelta(t, bound*bound/3, sq/n, 0.1*bound*bound/3, "%s variance", p.Name)
	}
	shard, err := NewParallelGPTModel(cpu.New(), cfg, Parallel{TPRank: 1, TPSize: 2}, 3)
	require.NoError(t, err)
	w := shard.Params.ByName("decoder.layers.1.mlp.linear_fc2.weight")
	full := m.Params.ByName(w.Name)
	require.Equal(t, Shard(full.Data.F32(), full.FullShape, 1, false, 1, 2), w.Data.F32())
}
