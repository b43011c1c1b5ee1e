package cuda

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/gomegatron/gomegatron/kernels"
	"github.com/gomegatron/gomegatron/tensor"
)

// TestProfileOnEmulator: with GOMEGATRON_CUDA_PROFILE set, closing the backend writes the
// per-op table: every kernel and matmul launched, with its call count.
func TestProfileOnEmulator(t *testing.T) {
	path := filepath.Join(t.TempDir(), "profile.txt")
	t.Setenv(EnvProfile, path)
	t.Cleanup(func() { // runs after the backend's Close (cleanups run last-registered first)
		b, err := os.ReadFile(path)
		if !assert.NoError(t, err) {
			return
		}
		table := string(b)
		t.Logf("\n%s", table)
		assert.Regexp(t, regexp.MustCompile(`\s3\s+[\d.]+\s+gm_scale_f32`), table, "three Scale launches")
		assert.Regexp(t, regexp.MustCompile(`\s2\s+[\d.]+\s+cublasLt f32·f32→f32 `), table, "two matmuls")
		assert.True(t, strings.HasSuffix(strings.TrimSpace(table), "total"))
	})
	g := emuBackend(t)
	x := g.Alloc(tensor.F32, 64, 64)
	for range 3 {
		g.Scale(x, 2)
	}
	y := g.Alloc(tensor.F32, 64, 64)
	for range 2 {
		g.Gemm(kernels.GemmParams{M: 64, N: 64, K: 64, Alpha: 1, Batch: 1}, x, x, y)
	}
	g.Sync()
}
