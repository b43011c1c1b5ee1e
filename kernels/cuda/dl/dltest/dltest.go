// Package dltest builds fake shared libraries from a few lines of C with the machine's gcc,
// so the dlopen bindings (CUDA driver, NVRTC, cuBLASLt, NCCL) are tested without a GPU.
package dltest

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/gomegatron/gomegatron/kernels/cuda/dl"
)

// Build compiles csrc into dir/name (a shared library) and returns its path. It skips the
// test when gcc is missing.
func Build(t testing.TB, dir, name, csrc string) string {
	t.Helper()
	if !dl.Supported {
		t.Skip("built without cgo: libraries cannot be loaded")
	}
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("gcc not found: cannot build the fake library " + name)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(dir, name+".c")
	if err := os.WriteFile(src, []byte(csrc), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, name)
	cmd := exec.Command(gcc, "-shared", "-fPIC", "-O1", "-o", out, src, "-lm")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("gcc %s: %v\n%s", name, err, b)
	}
	return out
}
