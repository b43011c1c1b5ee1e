package cuda

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/kernels/cuda/dl"
	"github.com/gomegatron/gomegatron/kernels/cuda/dl/dltest"
	"github.com/gomegatron/gomegatron/kernels/kernelstest"
)

// emuBackend builds testdata/emu: a fake driver that runs the real kernel sources on the
// CPU (every CUDA thread a fiber), with the fake NVRTC and the fake cuBLASLt (a host GEMM),
// and opens a Backend on it. It skips when g++ is missing.
func emuBackend(t *testing.T) *Backend {
	files, _, err := Sources()
	require.NoError(t, err)
	idx, err := KernelIndex(files)
	require.NoError(t, err)
	drv, wheel := dltest.Emulator(t, ".", idx)
	libs, err := Load(dl.Search{Driver: drv, Dirs: []string{wheel}})
	require.NoError(t, err)
	b, err := NewOn(libs, Options{ArenaBytes: 512 << 20, WorkspaceBytes: 1 << 20, CacheDir: filepath.Join(t.TempDir(), "cubin")})
	require.NoError(t, err)
	t.Cleanup(func() { b.Close() })
	return b
}

// TestEmulator runs the kernel sources on the CPU through the whole CUDA backend (argument
// packing, grid sizes, the Go side of every op) and checks them like the GPU tests do:
// the backend-independent conformance suite, every op against kernels/cpu with
// NaN-poisoned outputs, attention variants, GEMM through the fake cuBLASLt (FP8 with its
// scale pointers too), and the software FP8 rounding bit for bit. What it cannot check is
// the inline PTX itself (emulated by plain C++ here) and speed: those need the GPU.
func TestEmulator(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the emulator runs every kernel thread as a fiber")
	}
	g := emuBackend(t)
	for _, c := range kernelstest.Checks() {
		if c.Name == "AttentionBlocks" && os.Getenv("GOMEGATRON_EMU_FULL") == "" {
			// Block-boundary cases of the CPU's tiled attention at sizes that take the
			// fiber emulator half a minute; the GPU run and GOMEGATRON_EMU_FULL=1 include it.
			continue
		}
		t.Run("Conformance/"+c.Name, func(t *testing.T) { c.Run(t, g) })
	}
	t.Run("VsCPU", func(t *testing.T) { vsCPU(t, g) })
	t.Run("AttentionVsCPU", func(t *testing.T) { attentionVsCPU(t, g, false) })
	t.Run("FlashAttentionVsCPU", func(t *testing.T) { attentionVsCPU(t, g, true) })
	t.Run("FlashAttentionPipeVsCPU", func(t *testing.T) { flashVariantVsCPU(t, g, &g.flashPipe) })
	t.Run("FlashAttentionWideVsCPU", func(t *testing.T) { flashVariantVsCPU(t, g, &g.flashWide) })
	t.Run("GemmVsCPU", func(t *testing.T) { gemmVsCPU(t, g) })
	t.Run("GemmFP8", func(t *testing.T) { gemmFP8(t, g) })
	t.Run("FP8SoftwareRounding", func(t *testing.T) { fp8SoftwareRounding(t, g) })
	t.Run("Bind", func(t *testing.T) { bindCheck(t, g) })
	t.Run("ModelVsCPU", func(t *testing.T) { modelVsCPU(t, g) })
	t.Run("DecodeVsCPU", func(t *testing.T) { decodeVsCPU(t, g) })
}
