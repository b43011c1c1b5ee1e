package cuda

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/kernels"
	"github.com/gomegatron/gomegatron/kernels/cpu"
	"github.com/gomegatron/gomegatron/kernels/cuda/dl"
	"github.com/gomegatron/gomegatron/kernels/cuda/dl/dltest"
	"github.com/gomegatron/gomegatron/tensor"
)

// fakeGPU builds the fake driver, NVRTC and cuBLASLt of testdata/fake (host memory as
// "device" memory, a few kernels run on the host) and loads them.
type fakeGPU struct {
	libs          *Libraries
	drv, nvrtc    *dl.Lib
	cache, libDir string
}

func newFakeGPU(t testing.TB) *fakeGPU {
	needTestdata(t, "testdata/fake/cuda.c")
	dir := t.TempDir()
	src := func(f string) string {
		b, err := os.ReadFile(filepath.Join("testdata/fake", f))
		require.NoError(t, err)
		return string(b)
	}
	drvPath := dltest.Build(t, filepath.Join(dir, "drv"), "libcuda.so.1", src("cuda.c"))
	libDir := filepath.Join(dir, "wheel")
	dltest.Build(t, libDir, "libnvrtc.so.13", src("nvrtc.c"))
	dltest.Build(t, libDir, "libcublasLt.so.13", src("cublaslt.c"))
	libs, err := Load(dl.Search{Driver: drvPath, Dirs: []string{libDir}})
	require.NoError(t, err)
	f := &fakeGPU{libs: libs, cache: filepath.Join(dir, "cubin"), libDir: libDir}
	f.drv, err = dl.Open(drvPath, false) // the same handle: reads the fake's counters
	require.NoError(t, err)
	f.nvrtc, err = dl.Open(filepath.Join(libDir, "libnvrtc.so.13"), false)
	require.NoError(t, err)
	return f
}

func (f *fakeGPU) call(t testing.TB, l *dl.Lib, name string) uintptr {
	fn, err := l.Sym(name)
	require.NoError(t, err)
	return fn.Call()
}

// TestFakeDevice drives the whole runtime against the fake driver: device set-up on its
// locked thread, NVRTC compilation with the header and options, the CUBIN cache, module
// loading and kernel lookup, arena allocation with zeroing, chunked transfers through the
// pinned staging buffer, kernel argument packing (pointers, float32, int32, int64, the
// attention struct), amax read-back, cuBLASLt descriptors, events and error names.
func TestFakeDevice(t *testing.T) {
	f := newFakeGPU(t)
	b, err := NewOn(f.libs, Options{ArenaBytes: 64 << 20, PinnedBytes: 4096, CacheDir: f.cache, WorkspaceBytes: 1 << 20})
	require.NoError(t, err)
	defer b.Close()
	d := b.GPU()
	require.Equal(t, "Fake GPU", d.Name)
	require.Equal(t, 90, d.CC)
	require.Equal(t, 132, d.SMs)

	files, _, err := Sources()
	require.NoError(t, err)
	require.Equal(t, len(files), int(f.call(t, f.nvrtc, "fake_compiles")), "one compilation per source file")
	require.Equal(t, "--gpu-architecture=sm_90a -std=c++17 --device-as-default-execution-space ", dl.GoString(f.call(t, f.nvrtc, "fake_opts")))
	cached, _ := filepath.Glob(filepath.Join(f.cache, "*-sm_90a-nvrtc13.0-*.cubin"))
	require.Len(t, cached, len(files))

	t.Run("cache", func(t *testing.T) {
		_, err := NewOn(f.libs, Options{ArenaBytes: 1 << 20, CacheDir: f.cache})
		require.ErrorContains(t, err, "cuBLASLt workspace of 32 MiB (Options.WorkspaceBytes): device arena out of memory")
		b2, err := NewOn(f.libs, Options{ArenaBytes: 4 << 20, WorkspaceBytes: 1 << 20, CacheDir: f.cache})
		require.NoError(t, err)
		require.NoError(t, b2.Close())
		require.Equal(t, len(files), int(f.call(t, f.nvrtc, "fake_compiles")), "a second start compiles nothing")
	})

	t.Run("alloc-transfer", func(t *testing.T) {
		x := b.Alloc(tensor.U8, 10007)
		require.Zero(t, x.Ptr%ArenaAlign)
		h := tensor.New(tensor.U8, 10007)
		b.Download(h, x)
		require.Equal(t, make([]byte, 10007), h.Data, "Alloc zeroes (the fake's memory starts as garbage)")
		r := rand.New(rand.NewPCG(1, 2))
		for i := range h.Data {
			h.Data[i] = byte(r.Uint32())
		}
		b.Upload(x, h) // 3 chunks through the 4 KiB staging buffer
		back := tensor.New(tensor.U8, 10007)
		b.Download(back, x)
		require.Equal(t, h.Data, back.Data)
		y := b.Alloc(tensor.U8, 10007)
		b.Copy(y, x)
		b.Download(back, y)
		require.Equal(t, h.Data, back.Data)
		require.NoError(t, b.Free(x))
		require.NoError(t, b.Free(y))
		require.Error(t, b.Free(y))
	})

	t.Run("kernels", func(t *testing.T) {
		n := 1000
		x := b.Alloc(tensor.F32, n)
		b.Fill(x, 2.5)
		require.Equal(t, "gm_fill_f32", dl.GoString(f.call(t, f.drv, "fake_last_kernel")))
		require.Equal(t, uint32(4), uint32(f.call(t, f.drv, "fake_last_grid")), "⌈1000/256⌉ blocks")
		require.Equal(t, uint32(256), uint32(f.call(t, f.drv, "fake_last_block")))
		y := b.Alloc(tensor.F32, n)
		hy := tensor.New(tensor.F32, n)
		for i := range hy.F32() {
			hy.F32()[i] = float32(i)
		}
		b.Upload(y, hy)
		b.Axpy(y, -0.5, x)
		got := tensor.New(tensor.F32, n)
		b.Download(got, y)
		for i, v := range got.F32() {
			require.Equal(t, float32(i)-1.25, v)
		}
		hy.F32()[7] = -9
		b.Upload(y, hy)
		o := b.Alloc(tensor.F32, n)
		require.Equal(t, float32(999), b.CastWithAmax(o, y, 2), "amax read back from the device")
		b.Download(got, o)
		require.Equal(t, float32(-18), got.F32()[7])
	})

	t.Run("bind", func(t *testing.T) {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		v, err := b.Bind()
		require.NoError(t, err)
		x := b.Alloc(tensor.F32, 300)
		v.Fill(x, 1.5)
		b.Axpy(x, 2, x) // the device thread and the bound view share the stream
		v.Axpy(x, 1, x) // (the fake driver runs fill and axpy only)
		got := tensor.New(tensor.F32, 300)
		v.Download(got, x)
		for _, g := range got.F32() {
			require.Equal(t, float32(9), g)
		}
		require.NoError(t, b.Free(x))
	})

	t.Run("attention-args", func(t *testing.T) {
		q, k := b.Alloc(tensor.F32, 1, 4, 3, 8), b.Alloc(tensor.F32, 1, 2, 5, 8)
		v, out, lse := b.Alloc(tensor.F32, 1, 2, 5, 8), b.Alloc(tensor.F32, 1, 4, 3, 8), b.Alloc(tensor.F32, 1, 4, 3)
		p := kernels.AttnParams{Causal: true, Scale: 0.125, ALiBiSlopes: []float32{1, 2, 3, 4}, SlidingWindow: 2, QOffset: 2}
		b.Attention(out, lse, q, k, v, p)
		b.Sync()
		geom := dl.Bytes(f.call(t, f.drv, "fake_attn_geom"), 80)
		require.Equal(t, []byte(geomStruct(attnGeom{b: 1, h: 4, g: 2, s: 3, t: 5, d: 8}, p)), geom)
		sl := dl.Bytes(f.call(t, f.drv, "fake_attn_slopes"), 16)
		require.Equal(t, f32Bytes(p.ALiBiSlopes), sl)
		require.Equal(t, uint32(3), uint32(f.call(t, f.drv, "fake_last_grid")), "12 query rows, 4 warps a block")
		ks32, ksf, ksHost := b.Alloc(tensor.I32, 1, 3), b.Alloc(tensor.F32, 1, 3), tensor.New(tensor.I32, 1, 3)
		for _, c := range []struct {
			ks   *tensor.Tensor
			want string
		}{
			{ksf, "cuda.Attention: KeyStart float32[1 3]@cuda:0 for q float32[1 4 3 8]@cuda:0: need I32 [1, 3]"},
			{b.Alloc(tensor.I32, 4), "cuda.Attention: KeyStart int32[4]@cuda:0 for q float32[1 4 3 8]@cuda:0: need I32 [1, 3]"},
			{ksHost, "cuda.Attention: int32[1 3]@cpu is not a tensor on cuda:0"},
		} {
			pk := p
			pk.KeyStart = c.ks
			require.ErrorContains(t, recovered(func() { b.Attention(out, lse, q, k, v, pk) }), c.want)
		}
		pk := p
		pk.KeyStart = ksf
		require.ErrorContains(t, recovered(func() { b.AttentionBackward(q, k, v, out, q, k, v, out, lse, pk) }), "cuda.AttentionBackward: KeyStart float32")
		require.ErrorContains(t, recovered(func() { b.RoPE(q, q, kernels.RoPEParams{Base: 1e4, Positions: ks32, PosOffset: 2}) }),
			"cuda.RoPE: Positions int32[1 3]@cuda:0 for x float32[1 4 3 8]@cuda:0: need I32 [1, 3] and PosOffset 0 (have 2)")
		require.ErrorContains(t, recovered(func() { b.RoPE(q, q, kernels.RoPEParams{Base: 1e4, Positions: ksf}) }), "cuda.RoPE: Positions float32[1 3]")
		require.ErrorContains(t, recovered(func() { b.RoPE(q, q, kernels.RoPEParams{Base: 1e4, Positions: ksHost}) }), "cuda.RoPE: int32[1 3]@cpu is not a tensor on cuda:0")
	})

	t.Run("gemm", func(t *testing.T) {
		c := cpu.New()
		r := rand.New(rand.NewPCG(5, 6))
		for _, tr := range [][2]bool{{false, false}, {false, true}, {true, false}, {true, true}} {
			m, n, k := 7, 9, 5
			p := kernels.GemmParams{TransA: tr[0], TransB: tr[1], M: m, N: n, K: k, Alpha: 0.5, Beta: 2, Batch: 2,
				StrideA: m*k + 3, StrideB: k * n, StrideC: m * n}
			vals := func(nn int) *tensor.Tensor {
				v := make([]float32, nn)
				for i := range v {
					v[i] = float32(r.NormFloat64())
				}
				return tensor.FromF32(v, nn)
			}
			ha, hb, hc := vals(2*(m*k+3)), vals(2*k*n), vals(2*m*n)
			da, db, dc := b.Alloc(tensor.F32, ha.Numel()), b.Alloc(tensor.F32, hb.Numel()), b.Alloc(tensor.F32, hc.Numel())
			b.Upload(da, ha)
			b.Upload(db, hb)
			b.Upload(dc, hc)
			c.Gemm(p, ha, hb, hc)
			b.Gemm(p, da, db, dc)
			got := tensor.New(tensor.F32, hc.Numel())
			b.Download(got, dc)
			require.InDeltaSlicef(t, toF64(hc.F32()), toF64(got.F32()), 1e-5, "trans %v", tr)
		}
	})

	t.Run("errors", func(t *testing.T) {
		err := d.Do(func() error { return d.launch("gm_no_such_kernel", 1, 32, 0) })
		require.ErrorContains(t, err, "no kernel gm_no_such_kernel")
		_, err = NewOn(f.libs, Options{ArenaBytes: 2 << 30, CacheDir: f.cache})
		require.ErrorContains(t, err, "cuMemAlloc_v2 (arena of 2048 MiB (1024 MiB free of 2048)): CUDA_ERROR_OUT_OF_MEMORY (2): out of memory")
		require.ErrorContains(t, recovered(func() { b.Alloc(tensor.F32, 1<<30) }),
			"cuda.Alloc float32[1073741824]: device arena out of memory: 4294967296 bytes wanted")
		require.ErrorContains(t, recovered(func() { b.Fill(tensor.New(tensor.F32, 3), 1) }), "cuda.Fill: float32[3]@cpu is not a tensor on cuda:0")
		xf, xb, xh := b.Alloc(tensor.F32, 4), b.Alloc(tensor.BF16, 4), b.Alloc(tensor.F16, 4)
		b.Fill(xb, 1)
		require.Equal(t, "gm_fill_bf16", dl.GoString(f.call(t, f.drv, "fake_last_kernel")), "BF16 activations pick the _bf16 kernel")
		require.ErrorContains(t, recovered(func() { b.Add(xf, xb, xf) }),
			"cuda.Add: activations must be all F32 or all BF16, got float32[4]@cuda:0, bfloat16[4]@cuda:0, float32[4]@cuda:0")
		require.ErrorContains(t, recovered(func() { b.Scale(xh, 2) }), "cuda.Scale: activations must be all F32 or all BF16, got float16[4]@cuda:0")
		require.ErrorContains(t, recovered(func() { b.RMSNorm(xb, xb, xb, xf, 1e-5) }), "cuda.RMSNorm: want an F32 tensor, got bfloat16[4]@cuda:0")
		require.ErrorContains(t, recovered(func() { b.Gemm(kernels.GemmParams{M: 2, N: 2, K: 1}, xf, xf, xb) }), "C bfloat16[4]@cuda:0 be F32 (or BF16 with BF16 A and B)")
		for _, x := range []*tensor.Tensor{xf, xb, xh} {
			require.NoError(t, b.Free(x))
		}
		e0, err := d.NewEvent()
		require.NoError(t, err)
		e1, _ := d.NewEvent()
		require.NoError(t, e0.Record())
		require.NoError(t, e1.Record())
		ms, err := e0.Elapsed(e1)
		require.NoError(t, err)
		require.Equal(t, float32(1.5), ms)
		require.NoError(t, e0.Destroy())
		require.NoError(t, e1.Destroy())
	})
}

// recovered runs f and returns what it panicked with, as an error.
func recovered(f func()) (err error) {
	defer func() {
		switch r := recover().(type) {
		case nil:
		case error:
			err = r
		default:
			err = fmt.Errorf("%v", r)
		}
	}()
	f()
	return errors.New("no panic")
}

func toF64(v []float32) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}

// needTestdata skips a test whose C sources are missing: a prebuilt test binary run
// outside its package folder (scripts/gpu/check.sh without the source tree).
func needTestdata(t testing.TB, path string) {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		t.Skipf("%s not found (test binary run outside kernels/cuda): %v", path, err)
	}
}

// BenchmarkDispatch measures the host cost of one op on the device thread (closure, channel
// hand-off, argument packing, cgo call) with the fake driver, whose kernel does nothing
// for a one-element Fill.
func BenchmarkDispatch(b *testing.B) {
	f := newFakeGPU(b)
	g, err := NewOn(f.libs, Options{ArenaBytes: 16 << 20, WorkspaceBytes: 1 << 20, CacheDir: f.cache})
	if err != nil {
		b.Fatal(err)
	}
	defer g.Close()
	x := g.Alloc(tensor.F32, 1)
	b.Run("device-thread", func(b *testing.B) {
		for range b.N {
			g.Fill(x, 1)
		}
	})
	b.Run("bound", func(b *testing.B) {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		v, err := g.Bind()
		if err != nil {
			b.Fatal(err)
		}
		for range b.N {
			v.Fill(x, 1)
		}
	})
}
