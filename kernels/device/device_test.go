package device

import (
	"os"
	"os/exec"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/kernels/cuda"
	"github.com/gomegatron/gomegatron/kernels/cuda/dl"
	"github.com/gomegatron/gomegatron/kernels/cuda/dl/dltest"
	"github.com/gomegatron/gomegatron/tensor"
)

func TestOpenCPUAndBadNames(t *testing.T) {
	be, release, err := Open(Options{Name: "cpu"})
	require.NoError(t, err)
	defer release()
	require.Equal(t, "cpu", be.Name())
	_, _, err = Open(Options{Name: "tpu"})
	require.ErrorContains(t, err, `--device "tpu"`)
}

// TestOpenWithoutGPU: where no CUDA driver loads, cuda fails naming the flag and the
// reason, and auto falls back to the CPU.
func TestOpenWithoutGPU(t *testing.T) {
	if ok, _ := cuda.Available(); ok {
		t.Skip("a CUDA driver loads here")
	}
	_, _, err := Open(Options{Name: "cuda"})
	require.ErrorContains(t, err, "--device cuda:")
	be, release, err := Open(Options{Name: "auto"})
	require.NoError(t, err)
	defer release()
	require.Equal(t, "cpu", be.Name())
}

// TestOpenEmulatedGPU: with the kernel emulator as the driver (found through the
// environment, which a process reads once: hence a child process), cuda and auto open GPU
// Index with TF32 as asked, and a missing GPU is an error.
func TestOpenEmulatedGPU(t *testing.T) {
	if os.Getenv("GM_DEVICE_TEST_CHILD") != "" {
		for _, name := range []string{"cuda", "auto"} {
			be, release, err := Open(Options{Name: name, Index: 1, TF32: true, FlashAttention: true})
			require.NoError(t, err)
			require.Equal(t, tensor.Device{Type: tensor.CUDA, Index: 1}, be.Device())
			require.True(t, be.(*cuda.Backend).TF32)
			require.True(t, be.(*cuda.Backend).FlashAttention)
			release()
		}
		_, _, err := Open(Options{Name: "cuda", Index: 2})
		require.ErrorContains(t, err, "GPU 2")
		return
	}
	files, _, err := cuda.Sources()
	require.NoError(t, err)
	idx, err := cuda.KernelIndex(files)
	require.NoError(t, err)
	drv, libDir := dltest.Emulator(t, "../cuda", idx)
	cmd := exec.Command(os.Args[0], "-test.run", "^TestOpenEmulatedGPU$", "-test.v")
	cmd.Env = append(os.Environ(), "GM_DEVICE_TEST_CHILD=1", dl.EnvDriver+"="+drv, "GOMEGATRON_CUDA_LIB_DIRS="+libDir,
		"GOMEGATRON_CUDA_ARENA_MB=64", "GOMEGATRON_CUBIN_CACHE="+t.TempDir(), "GM_FAKE_DEVICES=2")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Contains(t, string(out), "--- PASS: TestOpenEmulatedGPU")
}

func TestLocalRank(t *testing.T) {
	t.Setenv("LOCAL_RANK", "3")
	require.Equal(t, 3, LocalRank())
	t.Setenv("LOCAL_RANK", "x")
	require.Equal(t, 0, LocalRank())
}
