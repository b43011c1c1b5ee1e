package cpu

import (
	"fmt"

	"github.com/gomegatron/gomegatron/tensor"
)

// DropoutBits is the counter-based random stream behind Dropout: element i of a call with
// (seed, offset) draws u = DropoutBits(seed, offset+i), the (offset+i+1)-th output of a
// SplitMix64 generator whose state starts at mix64(seed):
//
//	u = mix64(mix64(seed) + (offset+i+1)·0x9E3779B97F4A7C15)
//	mix64(z): z = (z ⊕ z>>30)·0xBF58476D1CE4E5B9; z = (z ⊕ z>>27)·0x94D049BB133111EB; z ⊕ z>>31
//
// and keeps the element iff (u >> 40) ≥ p·2²⁴, i.e. with probability 1 − p (p rounded to a
// multiple of 2⁻²⁴). Every backend implements the same formula, so masks agree bit for bit.
func DropoutBits(seed, counter uint64) uint64 {
	return mix64(mix64(seed) + (counter+1)*0x9E3779B97F4A7C15)
}

func mix64(z uint64) uint64 {
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
	z = (z ^ (z >> 27)) * 0x94D049BB133111EB
	return z ^ (z >> 31)
}

func dropoutMask(op string, mask *tensor.Tensor, n int) []byte {
	if (mask.DType() != tensor.U8 && mask.DType() != tensor.Bool) || mask.Numel() != n {
		panic(fmt.Sprintf("cpu.%s: mask %v must be U8 (or Bool) with %d elements", op, mask, n))
	}
	return mask.Data
}

// Dropout keeps element i with probability 1−p (see DropoutBits), mask[i] = 1 for kept
// elements, out = x·mask/(1−p). p = 0 copies x and sets the mask to 1; p = 1 drops all.
func (b *Backend) Dropout(out, mask, x *tensor.Tensor, p float32, seed, offset uint64) {
	if b.bf16("Dropout", func(t []*tensor.Tensor) { b.Dropout(t[0], mask, t[1], p, seed, offset) }, wr("out", out), rd("x", x)) {
		return
	}
	sameShape("Dropout", out, x)
	os, xs := f32("Dropout", out), f32("Dropout", x)
	ms := dropoutMask("Dropout", mask, len(xs))
	if p < 0 || p > 1 {
		panic(fmt.Sprintf("cpu.Dropout: p = %v outside [0, 1]", p))
	}
	thr := dropThreshold(p)
	scale := 1 / (1 - p)
	parallelFor(len(xs), elemGrain/4, func(lo, hi int) {
		if p == 0 {
			copy(os[lo:hi], xs[lo:hi])
			for i := lo; i < hi; i++ {
				ms[i] = 1
			}
			return
		}
		state := mix64(seed) // DropoutBits with the seed mix hoisted
		for i := lo; i < hi; i++ {
			if float32(mix64(state+(offset+uint64(i)+1)*0x9E3779B97F4A7C15)>>40) >= thr {
				ms[i] = 1
				os[i] = xs[i] * scale
			} else {
				ms[i] = 0
				os[i] = 0
			}
		}
	})
}

// DropoutBackward: dx = dout·mask/(1−p).
func (b *Backend) DropoutBackward(dx, dout, mask *tensor.Tensor, p float32) {
	if b.bf16("DropoutBackward", func(t []*tensor.Tensor) { b.DropoutBackward(t[0], t[1], mask, p) }, wr("dx", dx), rd("dout", dout)) {
		return
	}
	sameShape("DropoutBackward", dx, dout)
	ds, gs := f32("DropoutBackward", dx), f32("DropoutBackward", dout)
	ms := dropoutMask("DropoutBackward", mask, len(ds))
	scale := 1 / (1 - p)
	parallelFor(len(ds), elemGrain, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			if ms[i] != 0 {
				ds[i] = gs[i] * scale
			} else {
				ds[i] = 0
			}
		}
	})
}

// dropThreshold is Dropout's keep threshold: keep iff float32(u>>40) ≥ p·2²⁴.
func dropThreshold(p float32) float32 { return p * (1 << 24) }
