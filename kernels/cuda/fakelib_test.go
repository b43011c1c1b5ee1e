package cuda

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/kernels/cuda/dl"
	"github.com/gomegatron/gomegatron/kernels/cuda/dl/dltest"
)

// stubs returns C definitions returning 0 for every name not in skip.
func stubs(names []string, skip ...string) string {
	var b strings.Builder
	for _, n := range names {
		if !contains(skip, n) {
			fmt.Fprintf(&b, "int %s(void) { return 0; }\n", n)
		}
	}
	return b.String()
}

func contains(v []string, s string) bool {
	for _, x := range v {
		if x == s {
			return true
		}
	}
	return false
}

// fakeDriver builds a libcuda.so.1 whose cuInit returns initResult and which reports
// devices GPUs; the symbols in omit are left out.
func fakeDriver(t *testing.T, dir string, initResult, devices int, omit ...string) string {
	special := []string{"cuInit", "cuGetErrorName", "cuGetErrorString", "cuDriverGetVersion", "cuDeviceGetCount"}
	src := fmt.Sprintf(`
int cuInit(unsigned flags) { return %d; }
int cuGetErrorName(int code, const char** s) {
	switch (code) {
	case 100: *s = "CUDA_ERROR_NO_DEVICE"; return 0;
	case 2: *s = "CUDA_ERROR_OUT_OF_MEMORY"; return 0;
	}
	return 1;
}
int cuGetErrorString(int code, const char** s) {
	switch (code) {
	case 100: *s = "no CUDA-capable device is detected"; return 0;
	case 2: *s = "out of memory"; return 0;
	}
	return 1;
}
int cuDriverGetVersion(int* v) { *v = 13000; return 0; }
int cuDeviceGetCount(int* n) { *n = %d; return 0; }
`, initResult, devices) + stubs(DriverSymbols(), append(special, omit...)...)
	return dltest.Build(t, dir, "libcuda.so.1", src)
}

func fakeNVRTC(t *testing.T, dir string) {
	src := `
int nvrtcVersion(int* a, int* b) { *a = 13; *b = 0; return 0; }
const char* nvrtcGetErrorString(int c) { return c == 6 ? "NVRTC_ERROR_COMPILATION" : "NVRTC_ERROR_OTHER"; }
` + stubs(NVRTCSymbols(), "nvrtcVersion", "nvrtcGetErrorString")
	dltest.Build(t, dir, "libnvrtc.so.13", src)
}

func fakeCublasLt(t *testing.T, dir string) {
	src := "unsigned long cublasLtGetVersion(void) { return 130100; }\n" + stubs(CublasLtSymbols(), "cublasLtGetVersion")
	dltest.Build(t, dir, "libcublasLt.so.13", src)
}

// systemHas reports whether the system loader finds a library (then tests that need it to
// be missing cannot run on this machine).
func systemHas(so string) bool {
	l, err := dl.Open(so, false)
	if err != nil {
		return false
	}
	_ = l.Close()
	return true
}

func TestProbeReasons(t *testing.T) {
	root := t.TempDir()
	noDev := fakeDriver(t, filepath.Join(root, "nodev"), 100, 0)
	zero := fakeDriver(t, filepath.Join(root, "zero"), 0, 0)
	one := fakeDriver(t, filepath.Join(root, "one"), 0, 1)
	old := fakeDriver(t, filepath.Join(root, "old"), 0, 1, "cuMemAlloc_v2", "cuLaunchKernel")
	libs := filepath.Join(root, "wheel")
	fakeNVRTC(t, libs)
	fakeCublasLt(t, libs)
	empty := filepath.Join(root, "empty")
	require.NoError(t, os.MkdirAll(empty, 0o755))

	cases := []struct {
		name   string
		s      dl.Search
		ok     bool
		reason []string
	}{
		{"no driver", dl.Search{Driver: filepath.Join(root, "absent/libcuda.so.1")}, false, []string{"CUDA driver: dlopen", "absent/libcuda.so.1"}},
		{"cuInit fails", dl.Search{Driver: noDev}, false, []string{"cuInit: CUDA_ERROR_NO_DEVICE (100): no CUDA-capable device is detected"}},
		{"no device", dl.Search{Driver: zero}, false, []string{"reports no device"}},
		{"old driver", dl.Search{Driver: old}, false, []string{"lacks [cuMemAlloc_v2 cuLaunchKernel]"}},
		{"found", dl.Search{Driver: one, Dirs: []string{libs}}, true, []string{
			"CUDA driver 13.0 (" + one + ")", "1 device(s)", "NVRTC 13.0 (" + filepath.Join(libs, "libnvrtc.so.13") + ")",
			"cuBLASLt 130100 (" + filepath.Join(libs, "libcublasLt.so.13") + ")"}},
	}
	if !systemHas("libnvrtc.so.13") && !systemHas("libnvrtc.so.12") {
		cases = append(cases, struct {
			name   string
			s      dl.Search
			ok     bool
			reason []string
		}{"no NVRTC", dl.Search{Driver: one, Dirs: []string{empty}}, false, []string{"libnvrtc.so.13 not found (searched " + empty}})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ok, reason := Probe(c.s)
			require.Equal(t, c.ok, ok, reason)
			for _, r := range c.reason {
				require.Contains(t, reason, r)
			}
			require.NotContains(t, reason, "\n")
		})
	}
}

// TestAvailableFromEnv runs Available in a child process (it loads once per process) with
// GOMEGATRON_LIBCUDA pointing at a driver whose cuInit reports no device.
func TestAvailableFromEnv(t *testing.T) {
	if os.Getenv("GM_CUDA_AVAILABLE_CHILD") == "1" {
		ok, reason := Available()
		fmt.Printf("AVAILABLE=%v REASON=%s\n", ok, reason)
		return
	}
	drv := fakeDriver(t, t.TempDir(), 100, 0)
	cmd := exec.Command(os.Args[0], "-test.run=^TestAvailableFromEnv$", "-test.v")
	cmd.Env = append(os.Environ(), "GM_CUDA_AVAILABLE_CHILD=1", dl.EnvDriver+"="+drv)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, string(out))
	require.Contains(t, string(out), "AVAILABLE=false REASON=cuInit: CUDA_ERROR_NO_DEVICE (100): no CUDA-capable device is detected")
}

func TestErrorNames(t *testing.T) {
	drvPath := fakeDriver(t, t.TempDir(), 0, 1)
	d, err := loadDriver(dl.Search{Driver: drvPath})
	require.NoError(t, err)
	err = d.check("cuMemAlloc_v2", 2, "arena of %d MiB", 512)
	require.EqualError(t, err, "cuMemAlloc_v2 (arena of 512 MiB): CUDA_ERROR_OUT_OF_MEMORY (2): out of memory")
	var ce *Error
	require.ErrorAs(t, err, &ce)
	require.Equal(t, "CUDA_ERROR_OUT_OF_MEMORY", ce.Name)
	require.EqualError(t, d.check("cuCtxSynchronize", 719, ""), "cuCtxSynchronize: CUresult(719) (719)", "unknown codes still say the number")
	require.NoError(t, d.check("cuInit", 0, ""))
	require.EqualError(t, cublasCheck("cublasLtMatmul", 15, "m 1"), "cublasLtMatmul (m 1): CUBLAS_STATUS_NOT_SUPPORTED (15)")
}
