package cpu

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/gomegatron/gomegatron/kernels"
	"github.com/gomegatron/gomegatron/tensor"
)

// Attention at Llama-7B-like head sizes: B=1, H=8 (GQA G=8 and G=2), D=128, causal.
func BenchmarkAttention(b *testing.B) {
	for _, s := range []int{512, 2048} {
		for _, g := range []int{8, 2} {
			be := New()
			r := rand.New(rand.NewPCG(1, 1))
			const h, d = 8, 128
			q, k, v := randTensor(r, 1, h, s, d), randTensor(r, 1, g, s, d), randTensor(r, 1, g, s, d)
			out, lse := tensor.New(tensor.F32, 1, h, s, d), tensor.New(tensor.F32, 1, h, s)
			p := kernels.AttnParams{Scale: 0.088, Causal: true}
			// Causal: half the S² scores; 2 GEMMs of 2·S²·D/2 flops each per head.
			flops := float64(h) * 2 * float64(s) * float64(s) * d
			b.Run(fmt.Sprintf("fwd/S=%d/G=%d", s, g), func(b *testing.B) {
				for b.Loop() {
					be.Attention(out, lse, q, k, v, p)
				}
				b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
			dout := randTensor(r, 1, h, s, d)
			dq, dk, dv := tensor.New(tensor.F32, q.Shape()...), tensor.New(tensor.F32, k.Shape()...), tensor.New(tensor.F32, v.Shape()...)
			be.Attention(out, lse, q, k, v, p)
			b.Run(fmt.Sprintf("bwd/S=%d/G=%d", s, g), func(b *testing.B) {
				for b.Loop() {
					be.AttentionBackward(dq, dk, dv, dout, q, k, v, out, lse, p)
				}
				// FlashAttention's convention: backward = 2.5× forward flops.
				b.ReportMetric(2.5*flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
	}
}

// Row ops at [4096 tokens, 4096 hidden].
func BenchmarkRowOps(b *testing.B) {
	const n, h = 4096, 4096
	be := New()
	r := rand.New(rand.NewPCG(2, 2))
	x, w, g := randTensor(r, n, h), randTensor(r, h), randTensor(r, n, h)
	out, rstd, dx, dw := tensor.New(tensor.F32, n, h), tensor.New(tensor.F32, n), tensor.New(tensor.F32, n, h), tensor.New(tensor.F32, h)
	bytes := int64(4 * n * h)
	b.Run("RMSNorm", func(b *testing.B) {
		b.SetBytes(bytes)
		for b.Loop() {
			be.RMSNorm(out, rstd, x, w, 1e-5)
		}
	})
	b.Run("RMSNormBackward", func(b *testing.B) {
		b.SetBytes(bytes)
		for b.Loop() {
			be.RMSNormBackward(dx, dw, g, x, w, rstd)
		}
	})
	sw := tensor.New(tensor.F32, n, h/2)
	b.Run("SwiGLU", func(b *testing.B) {
		b.SetBytes(bytes)
		for b.Loop() {
			be.SwiGLU(sw, x)
		}
	})
	x4 := x.View(1, 32, n, h/32)
	b.Run("RoPE", func(b *testing.B) {
		b.SetBytes(bytes)
		for b.Loop() {
			be.RoPE(out.View(1, 32, n, h/32), x4, kernels.RoPEParams{Base: 10000, RotaryDim: h / 32})
		}
	})
	m, v := tensor.New(tensor.F32, n, h), tensor.New(tensor.F32, n, h)
	b.Run("AdamW", func(b *testing.B) {
		b.SetBytes(bytes)
		for b.Loop() {
			be.AdamW(out, g, m, v, kernels.AdamParams{LR: 1e-4, Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, WeightDecay: 0.1, Step: 3})
		}
	})
	mx, se := tensor.New(tensor.F32, n), tensor.New(tensor.F32, n)
	b.Run("SumExp", func(b *testing.B) {
		b.SetBytes(bytes)
		for b.Loop() {
			be.RowMax(mx, x)
			be.SumExp(se, x, mx)
		}
	})
}
