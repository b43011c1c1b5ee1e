package dltest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/gomegatron/gomegatron/kernels/cuda/dl"
)

// Emulator builds the host kernel emulator from the kernels/cuda source tree at cudaDir: a
// libcuda.so.1 whose cuLaunchKernel runs the real src/*.cu kernels on the CPU (every CUDA
// thread a fiber; testdata/emu), plus the fake libnvrtc.so.13 and libcublasLt.so.13
// (testdata/fake). index maps each kernel to its source file (cuda.KernelIndex). It
// returns the driver's path and the folder of the other two, which kernels/cuda loads
// through dl.Search{Driver, Dirs} or the environment (dl.EnvDriver, GOMEGATRON_CUDA_LIB_DIRS).
// It skips the test when g++ or cgo is missing.
func Emulator(t testing.TB, cudaDir string, index map[string]string) (driver, libDir string) {
	t.Helper()
	gxx, err := exec.LookPath("g++")
	if err != nil || !dl.Supported {
		t.Skip("g++ (or cgo) not available: cannot build the kernel emulator")
	}
	abs := func(p string) string {
		a, err := filepath.Abs(filepath.Join(cudaDir, p))
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	src, emu, fake := abs("src"), abs("testdata/emu"), abs("testdata/fake")
	if _, err := os.Stat(filepath.Join(emu, "emu.cpp")); err != nil {
		t.Skipf("the emulator's sources are not here (%v): run from the source tree", err)
	}
	dir := t.TempDir()
	files := map[string]bool{}
	var kernels []string
	for k, f := range index {
		kernels = append(kernels, k)
		files[f] = true
	}
	sort.Strings(kernels)
	var inc, reg strings.Builder
	for _, f := range sortedKeys(files) {
		fmt.Fprintf(&inc, "#include %q\n", f)
	}
	for _, k := range kernels {
		fmt.Fprintf(&reg, "GM_REG(%s)\n", k)
	}
	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("kernels.inc", inc.String())
	write("registry.inc", reg.String())
	driver = filepath.Join(dir, "drv", "libcuda.so.1")
	if err := os.MkdirAll(filepath.Dir(driver), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(gxx, "-std=c++17", "-O1", "-shared", "-fPIC", "-DGM_HOST_EMU", "-Wno-unknown-pragmas",
		"-I", dir, "-I", src, "-I", emu, "-o", driver, filepath.Join(emu, "emu.cpp"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the emulator: %v\n%s", err, out)
	}
	libDir = filepath.Join(dir, "wheel")
	for _, l := range [][2]string{{"libnvrtc.so.13", "nvrtc.c"}, {"libcublasLt.so.13", "cublaslt.c"}} {
		b, err := os.ReadFile(filepath.Join(fake, l[1]))
		if err != nil {
			t.Fatal(err)
		}
		Build(t, libDir, l[0], string(b))
	}
	return driver, libDir
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
