package cpu

import (
	"fmt"
	"math"

	"github.com/gomegatron/gomegatron/kernels"
	"github.com/gomegatron/gomegatron/tensor"
)

// AdamW updates p in place from g with moments m and v (all F32, same size), in the
// operation order of torch.optim.AdamW (single-tensor path) with scalars rounded to
// float32 as torch does for float32 tensors:
//
//	p ← p·(1 − LR·WeightDecay)
//	m ← fma(1−β1, g, β1·m),  v ← fma((1−β2)·g, g, β2·v)
//	denom = sqrt(v)/sqrt(1−β2^Step) + Eps
//	p ← p + ((−LR/(1−β1^Step))·m)/denom
//
// The bias corrections are computed in float64 (Python floats in torch). Step ≥ 1. On
// AVX2 machines this reproduces torch 1.13's CPU AdamW bit for bit (TestAdamWMatchesTorch).
func (*Backend) AdamW(p, g, m, v *tensor.Tensor, h kernels.AdamParams) {
	sameShape("AdamW", p, g, m, v)
	if h.Step < 1 {
		panic(fmt.Sprintf("cpu.AdamW: step %d < 1", h.Step))
	}
	ps, gs, ms, vs := f32("AdamW", p), f32("AdamW", g), f32("AdamW", m), f32("AdamW", v)
	lr, b1, b2 := float64(h.LR), float64(h.Beta1), float64(h.Beta2)
	decay := float32(1 - lr*float64(h.WeightDecay))
	beta1, beta2 := h.Beta1, h.Beta2
	omb1, omb2 := float32(1-b1), float32(1-b2)
	bc1 := 1 - math.Pow(b1, float64(h.Step))
	bc2 := 1 - math.Pow(b2, float64(h.Step))
	negStep := float32(-lr / bc1)
	bc2s := float32(math.Sqrt(bc2))
	eps := h.Eps
	parallelFor(len(ps), elemGrain/4, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			gi := gs[i]
			pi := ps[i]
			if decay != 1 {
				pi *= decay
			}
			// torch's vectorised add_(g, alpha) and addcmul_ are fused multiply-adds; a
			// float64 FMA of float32 operands rounds the same way except in rare
			// double-rounding ties.
			mi := float32(math.FMA(float64(omb1), float64(gi), float64(beta1*ms[i])))
			vi := float32(math.FMA(float64(omb2*gi), float64(gi), float64(beta2*vs[i])))
			ms[i], vs[i] = mi, vi
			denom := float32(math.Sqrt(float64(vi)))/bc2s + eps
			ps[i] = pi + negStep*mi/denom
		}
	})
}
