package optim_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/kernels/cpu"
	"github.com/gomegatron/gomegatron/layers"
	"github.com/gomegatron/gomegatron/optim"
	"github.com/gomegatron/gomegatron/tensor"
)

// TestShadowWeights: the model's weights become BF16 views of one buffer (Data = Low),
// the fp32 main copy keeps the precise values, each step leaves the weights the rounding
// of the main copy, and every non-GEMM parameter's Wide F32 copy equals its weight after
// creation, each step and SyncMainFromWeights; a no-op for F32 models.
func TestShadowWeights(t *testing.T) {
	cfg, err := layers.Preset("tiny-llama")
	require.NoError(t, err)
	be := cpu.New()
	m, err := layers.NewGPTModel(be, cfg, 7)
	require.NoError(t, err)
	opt := optim.NewAdam(be, m.Params, optim.DefaultAdam(), false, optim.Groups{})
	opt.ShadowWeights()
	require.Nil(t, m.Params[0].Low, "F32 model: no 16-bit weights")
	opt.SetModelDType(tensor.BF16)
	rounded := map[string][]float32{}
	for _, p := range m.Params {
		rounded[p.Name] = append([]float32(nil), p.Data.F32()...)
	}
	opt.ShadowWeights()
	before := opt.Memory()
	opt.ShadowWeights() // idempotent
	require.Equal(t, before, opt.Memory())
	wide := 0
	matches := func(what string) {
		wide = 0
		main := opt.State().Main.F32()
		for i, p := range m.Params {
			require.Equal(t, tensor.BF16, p.Data.DType(), p.Name)
			require.Same(t, p.Data, p.Low, "%s: GEMMs read the weights themselves", p.Name)
			off := opt.Buffers().Layout.Offsets[i]
			want := tensor.FromF32Values(tensor.BF16, main[off:off+p.Numel()], p.Numel())
			require.Equal(t, want.Data, p.Data.Data, "%s: %s is the rounded main copy", what, p.Name)
			require.Equal(t, p.NonGEMM, p.Wide != nil, p.Name)
			if p.Wide != nil {
				require.Equal(t, p.Data.ToF32(), p.Wide.F32(), "%s: %s Wide", what, p.Name)
				wide += 4 * p.Numel()
			}
		}
	}
	matches("after ShadowWeights")
	for _, p := range m.Params {
		require.Equal(t, rounded[p.Name], p.Data.ToF32(), "%s: the same weights in half the bytes", p.Name)
	}
	g := opt.Buffers().Grad.F32()
	for i := range g {
		g[i] = float32(i%13) - 6
	}
	_, ok, err := opt.Step(1e-2)
	require.NoError(t, err)
	require.True(t, ok)
	matches("after a step")
	w := m.Params[3].Data.U16()
	w[0] ^= 0x0010 // a loaded weight that differs from the main copy
	opt.SyncMainFromWeights()
	matches("after SyncMainFromWeights")
	mem := opt.Memory()
	require.Equal(t, int64(2*opt.Buffers().Layout.Numel), mem.Weights, "16-bit weights, one copy")
	require.Equal(t, int64(wide), mem.Wide)
}
