package nccl

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/comm"
	"github.com/gomegatron/gomegatron/kernels/cuda/dl"
	"github.com/gomegatron/gomegatron/kernels/cuda/dl/dltest"
	"github.com/gomegatron/gomegatron/tensor"
)

func fakeNCCL(t *testing.T, dir string, omit ...string) {
	var b strings.Builder
	b.WriteString(`
int ncclGetVersion(int* v) { *v = 22703; return 0; }
const char* ncclGetErrorString(int c) { return c == 4 ? "invalid argument" : "unknown"; }
`)
	for _, s := range Symbols() {
		if s == "ncclGetVersion" || s == "ncclGetErrorString" {
			continue
		}
		skip := false
		for _, o := range omit {
			skip = skip || o == s
		}
		if !skip {
			fmt.Fprintf(&b, "int %s(void) { return 0; }\n", s)
		}
	}
	dltest.Build(t, dir, "libnccl.so.2", b.String())
}

// TestLoadFake: the binding finds libnccl.so.2 in a wheel-shaped folder, reads the
// version, names errors, and lists missing symbols of an old library.
func TestLoadFake(t *testing.T) {
	root := t.TempDir()
	good := filepath.Join(root, "site-packages/nvidia/nccl/lib")
	old := filepath.Join(root, "old")
	fakeNCCL(t, good)
	fakeNCCL(t, old, "ncclCommSplit", "ncclCommGetAsyncError")

	lib, err := Load(dl.Search{Dirs: []string{good}})
	require.NoError(t, err)
	require.Equal(t, 22703, lib.Version())
	require.Equal(t, filepath.Join(good, "libnccl.so.2"), lib.lib.Path)
	require.EqualError(t, lib.check("ncclAllReduce", 4, "float32[8]@cuda:0"), "ncclAllReduce (float32[8]@cuda:0): ncclInvalidArgument (4): invalid argument")
	require.EqualError(t, lib.check("ncclSend", 42, ""), "ncclSend: ncclResult(42) (42): unknown")
	require.NoError(t, lib.check("ncclSend", 0, ""))

	_, err = Load(dl.Search{Dirs: []string{old}})
	require.ErrorContains(t, err, "lacks [ncclCommSplit ncclCommGetAsyncError]")
}

// TestEnums: NCCL's dtype and op codes (nccl.h, as listed in the spec) for every dtype
// comm.Comm supports.
func TestEnums(t *testing.T) {
	want := map[tensor.DType]int{tensor.I8: 0, tensor.U8: 1, tensor.I32: 2, tensor.I64: 4, tensor.F16: 6,
		tensor.F32: 7, tensor.F64: 8, tensor.BF16: 9, tensor.F8E4M3: 10, tensor.F8E5M2: 11}
	for d, code := range want {
		got, ok := ncclType(d)
		require.True(t, ok, d)
		require.Equal(t, code, got, d)
	}
	for _, d := range []tensor.DType{tensor.F32, tensor.F64, tensor.BF16, tensor.F16, tensor.I32, tensor.I64, tensor.U8} {
		require.True(t, comm.SupportedDType(d))
		_, ok := ncclType(d)
		require.True(t, ok, "every dtype comm.Comm supports maps to NCCL: %v", d)
	}
	_, ok := ncclType(tensor.I16)
	require.False(t, ok)
	require.Equal(t, []int{0, 2, 3, 4}, []int{ncclOp(comm.Sum), ncclOp(comm.Max), ncclOp(comm.Min), ncclOp(comm.Avg)})
}

// devTensor is a device tensor header for checks (no device memory behind it).
func devTensor(dt tensor.DType, dev int, ptr uintptr, shape ...int) *tensor.Tensor {
	t := tensor.New(dt, shape...)
	t.Data = nil
	t.Device = tensor.Device{Type: tensor.CUDA, Index: dev}
	t.Ptr = ptr
	return t
}

func TestCheckTensor(t *testing.T) {
	cases := []struct {
		name string
		t    *tensor.Tensor
		err  string
	}{
		{"ok", devTensor(tensor.BF16, 1, 0x1000, 4), ""},
		{"empty", devTensor(tensor.F32, 1, 0, 0), ""},
		{"nil", nil, "AllReduce: tensor is nil"},
		{"host", tensor.New(tensor.F32, 4), "is not on cuda:1 (NCCL communicates device tensors)"},
		{"other gpu", devTensor(tensor.F32, 0, 0x1000, 4), "float32[4]@cuda:0 is not on cuda:1"},
		{"no storage", devTensor(tensor.F32, 1, 0, 4), "has no device storage"},
		{"dtype", devTensor(tensor.I16, 1, 0x1000, 4), "dtype int16 is not supported by NCCL"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := CheckTensor("AllReduce: tensor", c.t, 1)
			if c.err == "" {
				require.NoError(t, err)
			} else {
				require.ErrorContains(t, err, c.err)
			}
		})
	}
}

func TestParseTimeout(t *testing.T) {
	for in, want := range map[string]time.Duration{"90s": 90 * time.Second, "2.5": 2500 * time.Millisecond, " 10m ": 10 * time.Minute} {
		got, err := parseTimeout(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	for _, bad := range []string{"", "-1", "0", "soon"} {
		_, err := parseTimeout(bad)
		require.Error(t, err, bad)
	}
}
