package cuda

import (
	"fmt"
	"testing"

	"github.com/gomegatron/gomegatron/kernels"
	"github.com/gomegatron/gomegatron/tensor"
)

// BenchmarkGemm times cuBLASLt GEMMs with device events (warm-up first, median-free mean
// over b.N back-to-back launches) and reports TFLOP/s = 2·M·N·K / time. Shapes and dtypes
// match scripts/gpu/peer_matmul.py (torch.matmul for bf16 NN, torch._scaled_mm for FP8 TN).
//
//	bf16:     A [n,n] · B [n,n] (NN), D BF16 (as torch.matmul) — through matmul directly
//	bf16-f32: the same through Backend.Gemm (D F32, the interface's C type)
//	fp8:      A [n,n] E4M3 · B [n,n]ᵀ E4M3 (TN), D BF16, per-tensor scales, fast accumulation
func BenchmarkGemm(b *testing.B) {
	g := gpu(b)
	for _, n := range []int{4096, 8192} {
		for _, kind := range []string{"bf16", "bf16-f32", "fp8"} {
			b.Run(fmt.Sprintf("%s/%d", kind, n), func(b *testing.B) { benchGemm(b, g, kind, n) })
		}
	}
}

func benchGemm(b *testing.B, g *Backend, kind string, n int) {
	in := tensor.BF16
	if kind == "fp8" {
		in = tensor.F8E4M3
	}
	out := tensor.BF16
	if kind == "bf16-f32" {
		out = tensor.F32
	}
	// Random operands (never zeros: they run faster than real data).
	src := g.Alloc(tensor.F32, n, n)
	defer g.Free(src)
	host := tensor.New(tensor.F32, n, n)
	v := host.F32()
	x := uint32(12345)
	for i := range v {
		x = x*1664525 + 1013904223
		v[i] = float32(int32(x>>8)%2000) / 1000
	}
	g.Upload(src, host)
	a, bm, d := g.Alloc(in, n, n), g.Alloc(in, n, n), g.Alloc(out, n, n)
	defer g.Free(a)
	defer g.Free(bm)
	defer g.Free(d)
	g.CastWithAmax(a, src, 1)
	g.CastWithAmax(bm, src, 0.5)
	scales := g.Alloc(tensor.F32, 2)
	defer g.Free(scales)
	g.Upload(scales, tensor.FromF32([]float32{1, 1}, 2))

	var run func() error
	switch kind {
	case "fp8":
		p := kernels.GemmParams{TransB: true, M: n, N: n, K: n, Alpha: 1}
		sc := FP8Scales{AScale: scales.Ptr, BScale: scales.Ptr + 4, FastAccum: true}
		run = func() error { return g.GemmFP8(p, a, bm, d, sc) }
	case "bf16":
		p := kernels.GemmParams{M: n, N: n, K: n, Alpha: 1}
		s, err := rowMajorSpec(p, rBF16, rBF16, rBF16, rBF16)
		if err != nil {
			b.Fatal(err)
		}
		run = func() error { g.matmul(s, 1, 0, bm.Ptr, a.Ptr, d.Ptr, d.Ptr); return nil }
	default:
		p := kernels.GemmParams{M: n, N: n, K: n, Alpha: 1}
		run = func() error { g.Gemm(p, a, bm, d); return nil }
	}
	for range 5 { // warm-up: plan creation, clocks
		if err := run(); err != nil {
			b.Fatal(err)
		}
	}
	g.Sync()
	start, err := g.dev.NewEvent()
	if err != nil {
		b.Fatal(err)
	}
	end, _ := g.dev.NewEvent()
	defer start.Destroy()
	defer end.Destroy()
	b.ResetTimer()
	_ = start.Record()
	for range b.N {
		if err := run(); err != nil {
			b.Fatal(err)
		}
	}
	_ = end.Record()
	ms, err := start.Elapsed(end)
	if err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	sec := float64(ms) / 1e3 / float64(b.N)
	b.ReportMetric(2*float64(n)*float64(n)*float64(n)/sec/1e12, "TFLOP/s")
	b.ReportMetric(sec*1e3, "ms/op")
}
