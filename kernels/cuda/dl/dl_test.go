package dl_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/kernels/cuda/dl"
	"github.com/gomegatron/gomegatron/kernels/cuda/dl/dltest"
)

const fakeSrc = `
#include <stdint.h>
#include <string.h>
int add16(long a, long b, long c, long d, long e, long f, long g, long h,
          long i, long j, long k, long l, long m, long n, long o, long p) {
	return (int)(a + 2*b + 3*c + 4*d + 5*e + 6*f + 7*g + 8*h + 9*i + 10*j + 11*k + 12*l + 13*m + 14*n + 15*o + 16*p);
}
int neg(void) { return -7; }
int narrow(int x, unsigned y) { return x * 10 + (int)y; }
const char* name(void) { return "fake name"; }
int out(int* p, double* q) { *p = 42; *q = 2.5; return 0; }
typedef struct { char internal[128]; } uid;
int uidsum(void** comm, int nranks, uid id, int rank) {
	int s = 0; for (int i = 0; i < 128; i++) s += (unsigned char)id.internal[i];
	*comm = (void*)0x1234; return s + 1000*nranks + 100000*rank;
}
`

func TestCallTrampolines(t *testing.T) {
	dir := t.TempDir()
	p := dltest.Build(t, dir, "libfake.so", fakeSrc)
	l, err := dl.Open(p, false)
	require.NoError(t, err)
	defer l.Close()

	sym := func(n string) dl.Func {
		f, err := l.Sym(n)
		require.NoError(t, err)
		return f
	}
	args := make([]uintptr, 16)
	want := 0
	for i := range args {
		args[i] = uintptr(i + 3)
		want += (i + 1) * (i + 3)
	}
	require.Equal(t, want, sym("add16").Status(args...), "16 arguments, 10 of them on the stack")
	require.Equal(t, -7, sym("neg").Status(), "negative int status sign-extends")
	// A 32-bit int argument passed as a word with garbage-free upper bits, and a negative one.
	require.Equal(t, -5*10+3, sym("narrow").Status(uintptr(uint32(0xFFFFFFFB)), 3))
	require.Equal(t, "fake name", dl.GoString(sym("name").Call()))

	var i32 int32
	var f64 float64
	require.Equal(t, 0, sym("out").Status(ptr(&i32), ptrF(&f64)))
	require.Equal(t, int32(42), i32)
	require.Equal(t, 2.5, f64)

	var id [128]byte
	sum := 0
	for i := range id {
		id[i] = byte(i * 7)
		sum += int(id[i])
	}
	var comm uintptr
	require.Equal(t, sum+1000*4+100000*3, sym("uidsum").CallUniqueID(ptrU(&comm), 4, &id, 3))
	require.Equal(t, uintptr(0x1234), comm)

	require.True(t, strings.HasSuffix(l.File(sym("neg")), "libfake.so"))
	_, err = l.Sym("missing_symbol")
	require.ErrorContains(t, err, "missing_symbol")
}

func TestOpenErrors(t *testing.T) {
	if !dl.Supported {
		t.Skip("built without cgo")
	}
	_, err := dl.Open(filepath.Join(t.TempDir(), "libnothere.so"), false)
	require.ErrorContains(t, err, "libnothere.so")

	s := dl.Search{Dirs: []string{t.TempDir()}}
	_, err = s.OpenFirst("nvrtcVersion", false, "libgomegatron-absent.so.13", "libgomegatron-absent.so.12")
	require.ErrorContains(t, err, "libgomegatron-absent.so.13 not found")
	require.ErrorContains(t, err, "libgomegatron-absent.so.12", "every attempt is listed")
}

// TestOpenFirstOrder: a wheel folder wins over the system loader, a library without the
// probe symbol is skipped, and the CUDA 13 soname wins over 12 in the same folder.
func TestOpenFirstOrder(t *testing.T) {
	root := t.TempDir()
	a := filepath.Join(root, "a")
	b := filepath.Join(root, "b")
	dltest.Build(t, a, "libfakelt.so.13", "int other(void){return 1;}")
	dltest.Build(t, b, "libfakelt.so.12", "int probe(void){return 12;}")
	dltest.Build(t, b, "libfakelt.so.13", "int probe(void){return 13;}")
	s := dl.Search{Dirs: []string{a, b}}
	l, err := s.OpenFirst("probe", false, "libfakelt.so.13", "libfakelt.so.12")
	require.NoError(t, err)
	defer l.Close()
	f, _ := l.Sym("probe")
	require.Equal(t, 13, f.Status())
	require.Equal(t, filepath.Join(b, "libfakelt.so.13"), l.Path)
}

func wheelTree(t *testing.T, root string, files ...string) {
	for _, f := range files {
		p := filepath.Join(root, f)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, nil, 0o644))
	}
}

// TestSearchFromEnv: override folders first, then wheel folders under the virtualenv and
// PYTHONPATH site-packages (CUDA 13 and 12 layouts) and the virtualenv of a python3 on
// PATH, then the system loader, then
// CUDA_HOME/lib64; LibDirs keeps the folders that hold a library.
func TestSearchFromEnv(t *testing.T) {
	root := t.TempDir()
	venv := filepath.Join(root, "venv")
	sp13 := filepath.Join(venv, "lib/python3.12/site-packages")
	sp12 := filepath.Join(root, "pp/site-packages")
	override := filepath.Join(root, "override")
	cudaHome := filepath.Join(root, "cuda")
	wheelTree(t, sp13, "nvidia/cu13/lib/libnvrtc.so.13", "nvidia/cu13/lib/libcublasLt.so.13", "nvidia/nccl/lib/libnccl.so.2")
	wheelTree(t, sp12, "nvidia/cuda_nvrtc/lib/libnvrtc.so.12", "nvidia/cublas/lib/libcublasLt.so.12", "nvidia/cuda_runtime/lib/README")
	wheelTree(t, root, "override/empty", "cuda/lib64/libnvrtc.so.12")
	pyVenv := filepath.Join(root, "opt/torch/.venv")
	spPath := filepath.Join(pyVenv, "lib/python3.12/site-packages")
	wheelTree(t, pyVenv, "bin/python3", "lib/python3.12/site-packages/nvidia/nccl/lib/libnccl.so.2")
	env := map[string]string{
		dl.EnvLibDirs: override,
		"VIRTUAL_ENV": venv,
		"PYTHONPATH":  sp12,
		"CUDA_HOME":   cudaHome,
		"HOME":        filepath.Join(root, "nohome"),
		"PATH":        filepath.Join(root, "nobin") + ":" + filepath.Join(pyVenv, "bin"),
	}
	s := dl.SearchFromEnv(func(k string) string { return env[k] })
	wantDirs := []string{
		override,
		filepath.Join(sp12, "nvidia/cuda_runtime/lib"),
		filepath.Join(sp12, "nvidia/cuda_nvrtc/lib"),
		filepath.Join(sp12, "nvidia/cublas/lib"),
		filepath.Join(sp13, "nvidia/cu13/lib"),
		filepath.Join(sp13, "nvidia/nccl/lib"),
		filepath.Join(spPath, "nvidia/nccl/lib"),
	}
	require.Equal(t, wantDirs, s.Dirs[:len(wantDirs)], "PYTHONPATH comes before the virtualenv, as in sys.path")
	for _, d := range s.Dirs[len(wantDirs):] {
		require.False(t, strings.HasPrefix(d, root), "unexpected folder %s", d)
	}
	require.Equal(t, cudaHome, s.CUDAHome)

	require.Equal(t, []string{
		filepath.Join(sp12, "nvidia/cuda_nvrtc/lib/libnvrtc.so.12"),
		filepath.Join(sp13, "nvidia/cu13/lib/libnvrtc.so.13"),
		"libnvrtc.so.13", "libnvrtc.so.12",
		filepath.Join(cudaHome, "lib64/libnvrtc.so.12"),
	}, s.Candidates("libnvrtc.so.13", "libnvrtc.so.12"))

	require.Equal(t, []string{
		filepath.Join(sp12, "nvidia/cuda_nvrtc/lib"),
		filepath.Join(sp12, "nvidia/cublas/lib"),
		filepath.Join(sp13, "nvidia/cu13/lib"),
		filepath.Join(sp13, "nvidia/nccl/lib"),
		filepath.Join(spPath, "nvidia/nccl/lib"),
	}, s.LibDirs(), "folders without a library (override, cuda_runtime) are not exported")
}

func ptr(p *int32) uintptr    { return uintptr(unsafePtr(p)) }
func ptrF(p *float64) uintptr { return uintptr(unsafePtr(p)) }
func ptrU(p *uintptr) uintptr { return uintptr(unsafePtr(p)) }
