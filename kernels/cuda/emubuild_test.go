package cuda

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/kernels/cuda/dl/dltest"
)

// TestBuildEmulatorInto builds the kernel emulator into $GOMEGATRON_EMU_OUT (libcuda.so.1
// and wheel/ with the fake NVRTC and cuBLASLt) for scripts/gpu/rehearse.sh, which runs the
// GPU check's test binaries on it; skipped without the variable.
func TestBuildEmulatorInto(t *testing.T) {
	out := os.Getenv("GOMEGATRON_EMU_OUT")
	if out == "" {
		t.Skip("GOMEGATRON_EMU_OUT is not set")
	}
	files, _, err := Sources()
	require.NoError(t, err)
	idx, err := KernelIndex(files)
	require.NoError(t, err)
	drv, lib := dltest.Emulator(t, ".", idx)
	require.NoError(t, os.MkdirAll(filepath.Join(out, "wheel"), 0o755))
	copyFile := func(src, dst string) {
		b, err := os.ReadFile(src)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(dst, b, 0o755))
	}
	copyFile(drv, filepath.Join(out, "libcuda.so.1"))
	ents, err := os.ReadDir(lib)
	require.NoError(t, err)
	for _, e := range ents {
		copyFile(filepath.Join(lib, e.Name()), filepath.Join(out, "wheel", e.Name()))
	}
}
