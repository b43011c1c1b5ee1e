package optim_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/kernels/cpu"
	"github.com/gomegatron/gomegatron/layers"
	"github.com/gomegatron/gomegatron/optim"
	"github.com/gomegatron/gomegatron/tensor"
)

// TestShadowWeights: every parameter's Low view holds exactly its (bf16-rounded) weight
// after creation, after each step and after SyncMainFromWeights, and no-op for F32 models.
func TestShadowWeights(t *testing.T) {
	cfg, err := layers.Preset("tiny-llama")
	require.NoError(t, err)
	be := cpu.New()
	m, err := layers.NewGPTModel(be, cfg, 7)
	require.NoError(t, err)
	opt := optim.NewAdam(be, m.Params, optim.DefaultAdam(), false, optim.Groups{})
	opt.ShadowWeights()
	require.Nil(t, m.Params[0].Low, "F32 model: no 16-bit copy")
	opt.SetModelDType(tensor.BF16)
	opt.ShadowWeights()
	before := opt.Memory().Weights
	opt.ShadowWeights() // idempotent
	require.Equal(t, before, opt.Memory().Weights)
	matches := func(what string) {
		for _, p := range m.Params {
			require.NotNil(t, p.Low, p.Name)
			require.Equal(t, tensor.BF16, p.Low.DType())
			want := tensor.FromF32Values(tensor.BF16, p.Data.F32(), p.Numel())
			require.Equal(t, want.Data, p.Low.Data, "%s: %s", what, p.Name)
		}
	}
	matches("after ShadowWeights")
	g := opt.Buffers().Grad.F32()
	for i := range g {
		g[i] = float32(i%13) - 6
	}
	_, ok, err := opt.Step(1e-2)
	require.NoError(t, err)
	require.True(t, ok)
	matches("after a step")
	w := m.Params[3].Data.F32()
	w[0] += 0.125
	opt.SyncMainFromWeights()
	matches("after SyncMainFromWeights")
	require.Greater(t, opt.Memory().Weights, int64(4*m.Params.Numel()), "the 16-bit copy is counted")
}
