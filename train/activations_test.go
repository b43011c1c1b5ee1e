package train

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/kernels/cpu"
	"github.com/gomegatron/gomegatron/tensor"
)

// gpuLike is the CPU backend claiming to be a GPU, for choices made by device type.
type gpuLike struct{ *cpu.Backend }

func (gpuLike) Device() tensor.Device { return tensor.Device{Type: tensor.CUDA} }

// TestActivationDType: BF16 activations exactly for --bf16 on a GPU, unless FP8,
// --fp32-residual-connection or GOMEGATRON_ACTIVATIONS=f32 keep them F32.
func TestActivationDType(t *testing.T) {
	gpu, host := gpuLike{cpu.New()}, cpu.New()
	require.Equal(t, tensor.BF16, (&Args{BF16: true}).activationDType(gpu))
	require.Equal(t, tensor.F32, (&Args{BF16: true}).activationDType(host))
	require.Equal(t, tensor.F32, (&Args{FP16: true}).activationDType(gpu))
	require.Equal(t, tensor.F32, (&Args{BF16: true, FP8Format: "hybrid"}).activationDType(gpu))
	require.Equal(t, tensor.F32, (&Args{BF16: true, FP32ResidualConnection: true}).activationDType(gpu))
	t.Setenv("GOMEGATRON_ACTIVATIONS", "f32")
	require.Equal(t, tensor.F32, (&Args{BF16: true}).activationDType(gpu))
}
