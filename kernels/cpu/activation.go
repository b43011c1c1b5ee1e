package cpu

import (
	"fmt"
	"math"

	"github.com/gomegatron/gomegatron/tensor"
)

// GeLU evaluates each element in float64 (erf, tanh) and rounds once to float32; SwiGLU
// works in float32 with expf (within 2 ulp), which keeps it memory-bound.

func swigluDims(op string, out, x *tensor.Tensor) (n, f int) {
	n, f2 := rowsCols(x)
	if f2%2 != 0 || out.Numel() != n*f2/2 || (out.Rank() > 0 && out.Dim(-1) != f2/2) {
		panic(fmt.Sprintf("cpu.%s: x %v must be [N, 2F] and out %v [N, F]", op, x, out))
	}
	return n, f2 / 2
}

func sigmoid(z float32) float32 { return 1 / (1 + expf(-z)) }

// SwiGLU: x [N, 2F] holds [gate | up]; out [N, F] = silu(gate)⊙up, silu(z) = z·σ(z).
func (b *Backend) SwiGLU(out, x *tensor.Tensor) {
	if b.bf16("SwiGLU", func(t []*tensor.Tensor) { b.SwiGLU(t[0], t[1]) }, wr("out", out), rd("x", x)) {
		return
	}
	n, f := swigluDims("SwiGLU", out, x)
	os, xs := f32("SwiGLU", out), f32("SwiGLU", x)
	parallelFor(n, grainFor(20*f), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			gate, up, o := xs[2*r*f:(2*r+1)*f], xs[(2*r+1)*f:(2*r+2)*f], os[r*f:(r+1)*f]
			for j, g := range gate {
				o[j] = g * sigmoid(g) * up[j]
			}
		}
	})
}

// SwiGLUBackward: dgate = dout⊙up⊙σ(g)(1 + g(1−σ(g))), dup = dout⊙silu(g); dx [N, 2F].
func (b *Backend) SwiGLUBackward(dx, dout, x *tensor.Tensor) {
	if b.bf16("SwiGLUBackward", func(t []*tensor.Tensor) { b.SwiGLUBackward(t[0], t[1], t[2]) },
		wr("dx", dx), rd("dout", dout), rd("x", x)) {
		return
	}
	n, f := swigluDims("SwiGLUBackward", dout, x)
	sameShape("SwiGLUBackward", dx, x)
	op := "SwiGLUBackward"
	ds, gs, xs := f32(op, dx), f32(op, dout), f32(op, x)
	parallelFor(n, grainFor(20*f), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			gate, up := xs[2*r*f:(2*r+1)*f], xs[(2*r+1)*f:(2*r+2)*f]
			dg, du, g := ds[2*r*f:(2*r+1)*f], ds[(2*r+1)*f:(2*r+2)*f], gs[r*f:(r+1)*f]
			for j, z := range gate {
				s := sigmoid(z)
				dgj := g[j] * up[j] * s * (1 + z*(1-s))
				du[j] = g[j] * z * s
				dg[j] = dgj
			}
		}
	})
}

const sqrt2OverPi = 0.7978845608028654 // √(2/π)

// GeLU: exact 0.5x(1+erf(x/√2)), or with tanh 0.5x(1+tanh(√(2/π)(x+0.044715x³))).
func (b *Backend) GeLU(out, x *tensor.Tensor, tanh bool) {
	if b.bf16("GeLU", func(t []*tensor.Tensor) { b.GeLU(t[0], t[1], tanh) }, wr("out", out), rd("x", x)) {
		return
	}
	sameShape("GeLU", out, x)
	os, xs := f32("GeLU", out), f32("GeLU", x)
	parallelFor(len(xs), elemGrain/8, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			z := float64(xs[i])
			if tanh {
				os[i] = float32(0.5 * z * (1 + math.Tanh(sqrt2OverPi*(z+0.044715*z*z*z))))
			} else {
				os[i] = float32(0.5 * z * (1 + math.Erf(z/math.Sqrt2)))
			}
		}
	})
}

// GeLUBackward: dx = dout·gelu'(x) with, exact, gelu'(x) = Φ(x) + x·φ(x), and, for tanh
// with u = √(2/π)(x+0.044715x³), gelu'(x) = 0.5(1+tanh u) + 0.5x(1−tanh²u)·√(2/π)(1+0.134145x²).
func (b *Backend) GeLUBackward(dx, dout, x *tensor.Tensor, tanh bool) {
	if b.bf16("GeLUBackward", func(t []*tensor.Tensor) { b.GeLUBackward(t[0], t[1], t[2], tanh) },
		wr("dx", dx), rd("dout", dout), rd("x", x)) {
		return
	}
	sameShape("GeLUBackward", dx, dout, x)
	op := "GeLUBackward"
	ds, gs, xs := f32(op, dx), f32(op, dout), f32(op, x)
	parallelFor(len(xs), elemGrain/8, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			z := float64(xs[i])
			var d float64
			if tanh {
				t := math.Tanh(sqrt2OverPi * (z + 0.044715*z*z*z))
				d = 0.5*(1+t) + 0.5*z*(1-t*t)*sqrt2OverPi*(1+3*0.044715*z*z)
			} else {
				d = 0.5*(1+math.Erf(z/math.Sqrt2)) + z*math.Exp(-0.5*z*z)/math.Sqrt(2*math.Pi)
			}
			ds[i] = float32(float64(gs[i]) * d)
		}
	})
}

// SquaredReLU: out = max(x, 0)², rounded once.
func (b *Backend) SquaredReLU(out, x *tensor.Tensor) {
	if b.bf16("SquaredReLU", func(t []*tensor.Tensor) { b.SquaredReLU(t[0], t[1]) }, wr("out", out), rd("x", x)) {
		return
	}
	sameShape("SquaredReLU", out, x)
	os, xs := f32("SquaredReLU", out), f32("SquaredReLU", x)
	parallelFor(len(xs), elemGrain, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			var r float32
			if xs[i] > 0 {
				r = xs[i]
			}
			os[i] = r * r
		}
	})
}

// SquaredReLUBackward: dx = dout·2·max(x, 0).
func (b *Backend) SquaredReLUBackward(dx, dout, x *tensor.Tensor) {
	if b.bf16("SquaredReLUBackward", func(t []*tensor.Tensor) { b.SquaredReLUBackward(t[0], t[1], t[2]) },
		wr("dx", dx), rd("dout", dout), rd("x", x)) {
		return
	}
	const op = "SquaredReLUBackward"
	sameShape(op, dx, dout, x)
	ds, gs, xs := f32(op, dx), f32(op, dout), f32(op, x)
	parallelFor(len(xs), elemGrain, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			var d float32
			if xs[i] > 0 {
				d = 2 * xs[i]
			}
			ds[i] = gs[i] * d
		}
	})
}
