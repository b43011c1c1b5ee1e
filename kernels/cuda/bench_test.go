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

	var run func() error
	switch kind {
	case "fp8":
		// Per-tensor scales folded into Alpha, as the model's FP8 layers run them.
		p := kernels.GemmParams{TransB: true, M: n, N: n, K: n, Alpha: 1}
		run = func() error { return g.GemmFP8(p, a, bm, d, FP8Scales{FastAccum: true}) }
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
	sec := timeDevice(b, g, run)
	b.ReportMetric(2*float64(n)*float64(n)*float64(n)/sec/1e12, "TFLOP/s")
	b.ReportMetric(sec*1e3, "ms/op")
}

// timeDevice runs run 5 times to warm up (plan creation, clocks), then b.N times between two
// device events, and returns the mean seconds per run.
func timeDevice(b *testing.B, g *Backend, run func() error) float64 {
	for range 5 {
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
	return float64(ms) / 1e3 / float64(b.N)
}

// BenchmarkOps times the memory-bound ops of a TinyLlama-1.1B step (4096 tokens: mbs 2 ×
// seq 2048; hidden 2048, ffn 5632, vocab 32000) with F32 and BF16 activations, reporting
// GB/s of the bytes each must move (activations read and written, weights and statistics
// left out), and flash attention (32 heads of 64, 4 groups, causal) in TFLOP/s of the
// causal half (fwd 2·2·B·H·S²·D/2, bwd 2.5× that). Compare with the GPU's memory bandwidth
// (H100 SXM ≈ 3.35 TB/s) and the GEMMs' TFLOP/s. -short shrinks every size (a smoke test
// on the kernel emulator).
func BenchmarkOps(b *testing.B) {
	g := gpu(b)
	n, h, f, v, s := 4096, 2048, 5632, 32000, 2048
	if testing.Short() {
		n, h, f, v, s = 128, 128, 192, 256, 64
	}
	for _, dt := range []tensor.DType{tensor.F32, tensor.BF16} {
		es := float64(dt.Size())
		fill := func(shape ...int) *tensor.Tensor {
			t := g.Alloc(dt, shape...)
			g.Fill(t, 0.5)
			return t
		}
		f32 := func(shape ...int) *tensor.Tensor {
			t := g.Alloc(tensor.F32, shape...)
			g.Fill(t, 1)
			return t
		}
		x, y, out, dx := fill(n, h), fill(n, h), fill(n, h), fill(n, h)
		w, dw, rstd := f32(h), f32(h), f32(n)
		gu, act, dgu := fill(n, 2*f), fill(n, f), fill(n, 2*f)
		logits, dlogits := fill(n, v), fill(n, v)
		mx, se, dloss := f32(n), f32(n), f32(n)
		targets := g.Alloc(tensor.I64, n)
		ops := []struct {
			name  string
			bytes float64
			run   func()
		}{
			{"RMSNorm", 2 * float64(n*h) * es, func() { g.RMSNorm(out, rstd, x, w, 1e-5) }},
			{"RMSNormBackward", 3 * float64(n*h) * es, func() { g.RMSNormBackward(dx, dw, out, x, w, rstd) }},
			{"Add", 3 * float64(n*h) * es, func() { g.Add(out, x, y) }},
			{"Permute", 2 * float64(n*h) * es, func() {
				g.Permute(out.View(2, h/64, n/2, 64), x.View(n/2, 2, h/64, 64), []int{1, 2, 0, 3})
			}},
			{"SwiGLU", 3 * float64(n*f) * es, func() { g.SwiGLU(act, gu) }},
			{"SwiGLUBackward", 5 * float64(n*f) * es, func() { g.SwiGLUBackward(dgu, act, gu) }},
			{"SumExp", float64(n*v) * es, func() { g.SumExp(se, logits, mx) }},
			{"CrossEntropyBackward", 2 * float64(n*v) * es, func() { g.CrossEntropyBackward(dlogits, logits, mx, se, targets, dloss, 0) }},
		}
		for _, op := range ops {
			b.Run(fmt.Sprintf("%s/%v", op.name, dt), func(b *testing.B) {
				sec := timeDevice(b, g, func() error { op.run(); return nil })
				b.ReportMetric(op.bytes/sec/1e9, "GB/s")
				b.ReportMetric(sec*1e3, "ms/op")
			})
		}
		const bs, heads, groups, d = 2, 32, 4, 64
		q, o, dq, do := fill(bs, heads, s, d), fill(bs, heads, s, d), fill(bs, heads, s, d), fill(bs, heads, s, d)
		k, vv, dk, dv := fill(bs, groups, s, d), fill(bs, groups, s, d), fill(bs, groups, s, d), fill(bs, groups, s, d)
		lse := f32(bs, heads, s)
		p := kernels.AttnParams{Causal: true, Scale: 0.125}
		flops := 2.0 * 2 * bs * heads * float64(s) * float64(s) * d / 2
		g.FlashAttention = true
		for _, variant := range []string{"", "Wide", "Pipe"} { // the _d64w and _d64p kernels too
			g.flashWide, g.flashPipe = variant == "Wide", variant == "Pipe"
			if variant == "Pipe" && dt != tensor.BF16 {
				continue // BF16 only
			}
			for _, fwd := range []bool{true, false} {
				name, fl := "FlashAttention", flops
				run := func() { g.Attention(o, lse, q, k, vv, p) }
				if !fwd {
					name, fl = "FlashAttentionBackward", 2.5*flops
					run = func() { g.AttentionBackward(dq, dk, dv, do, q, k, vv, o, lse, p) }
				}
				name += variant
				b.Run(fmt.Sprintf("%s/%v", name, dt), func(b *testing.B) {
					sec := timeDevice(b, g, func() error { run(); return nil })
					b.ReportMetric(fl/sec/1e12, "TFLOP/s")
					b.ReportMetric(sec*1e3, "ms/op")
				})
			}
		}
		g.FlashAttention, g.flashWide, g.flashPipe = false, false, false
		for _, t := range []*tensor.Tensor{x, y, out, dx, w, dw, rstd, gu, act, dgu, logits, dlogits, mx, se, dloss, targets, q, o, dq, do, k, vv, dk, dv, lse} {
			_ = g.Free(t)
		}
	}
}
