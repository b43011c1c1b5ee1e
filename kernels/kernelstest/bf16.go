package kernelstest

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/kernels"
	"github.com/gomegatron/gomegatron/tensor"
)

// tolBF16Same bounds the relative L2 distance between an op's BF16 activations and its F32
// activations rounded to bf16. Equal F32 math rounds to equal values; the bound leaves room
// only for the odd one-ulp flip where a device sums in another order (atomics, tensor-core
// GEMMs), far below the 2⁻⁹ of a wrong rounding everywhere.
const tolBF16Same = 1e-3

// bf16Run is one call of a BF16 case in one activation dtype: tensors made through it get
// the same values in both runs, and the outputs it registers are compared between them.
type bf16Run struct {
	b    kernels.Backend
	dt   tensor.DType // the activations' dtype: F32 or BF16
	r    *rand.Rand
	outs []bf16Out
}

type bf16Out struct {
	name   string
	t      *tensor.Tensor
	act    bool    // an activation: rounded to bf16 before comparing
	scalar float64 // with t nil: a returned value (SumSquares, amax)
}

// bf16Vals returns n random values already rounded to bf16, so both runs start from the
// same numbers.
func bf16Vals(r *rand.Rand, n int, scale float64) []float32 {
	return tensor.FromF32Values(tensor.BF16, randVals(r, n, scale), n).ToF32()
}

// act is a random activation input.
func (c *bf16Run) act(scale float64, shape ...int) *tensor.Tensor {
	return dev(c.b, c.dt, bf16Vals(c.r, tensor.ShapeNumel(shape), scale), shape...)
}

// actOf is an activation input holding vals (which must be bf16 values).
func (c *bf16Run) actOf(vals []float32, shape ...int) *tensor.Tensor {
	return dev(c.b, c.dt, vals, shape...)
}

// actOut is an activation output, poisoned with NaN so unwritten elements fail.
func (c *bf16Run) actOut(name string, shape ...int) *tensor.Tensor {
	t := dev(c.b, c.dt, nans(tensor.ShapeNumel(shape)), shape...)
	c.outs = append(c.outs, bf16Out{name: name, t: t, act: true})
	return t
}

// actInOut is an activation updated in place (random start).
func (c *bf16Run) actInOut(name string, scale float64, shape ...int) *tensor.Tensor {
	t := c.act(scale, shape...)
	c.outs = append(c.outs, bf16Out{name: name, t: t, act: true})
	return t
}

// param is an F32 operand (weight, statistic) with random values times scale plus shift.
func (c *bf16Run) param(scale, shift float64, shape ...int) *tensor.Tensor {
	v := randVals(c.r, tensor.ShapeNumel(shape), scale)
	for i := range v {
		v[i] += float32(shift)
	}
	return devF32(c.b, v, shape...)
}

// paramOut is an F32 output: poisoned, or random (accumulated gradients) with acc.
func (c *bf16Run) paramOut(name string, acc bool, shape ...int) *tensor.Tensor {
	var t *tensor.Tensor
	if acc {
		t = c.param(1, 0, shape...)
	} else {
		t = devF32(c.b, nans(tensor.ShapeNumel(shape)), shape...)
	}
	c.outs = append(c.outs, bf16Out{name: name, t: t})
	return t
}

// out registers an output of another dtype (a dropout mask, FP8), compared as is.
func (c *bf16Run) out(name string, t *tensor.Tensor) {
	c.outs = append(c.outs, bf16Out{name: name, t: t})
}

func (c *bf16Run) scalar(name string, v float64) {
	c.outs = append(c.outs, bf16Out{name: name, scalar: v})
}

func nans(n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(math.NaN())
	}
	return v
}

// bf16Case is one call (or a forward and its backward) of ops on activations.
type bf16Case struct {
	name string
	run  func(c *bf16Run)
}

// BF16 checks the BF16-activation contract of kernels.Backend: each op called with BF16
// activations gives what the same op called with F32 activations holding the same values
// gives, activation outputs rounded to bf16, and the same F32 outputs. The F32 calls are
// checked against float64 references by the other checks, so this pins the BF16 path to
// them.
func BF16(t *testing.T, b kernels.Backend) {
	for i, tc := range bf16Cases() {
		t.Run(tc.name, func(t *testing.T) {
			runs := [2]*bf16Run{}
			for k, dt := range []tensor.DType{tensor.F32, tensor.BF16} {
				runs[k] = &bf16Run{b: b, dt: dt, r: newRand(uint64(100 + i))}
				tc.run(runs[k])
			}
			want, got := runs[0].outs, runs[1].outs
			require.Len(t, got, len(want))
			for k, w := range want {
				g := got[k]
				if w.t == nil {
					require.InDeltaf(t, w.scalar, g.scalar, 1e-5*math.Abs(w.scalar)+1e-30, "%s", w.name)
					continue
				}
				require.Equal(t, w.t.DType() == tensor.F32 && w.act, g.t.DType() == tensor.BF16, "%s: dtype", w.name)
				wv, gv := get(b, w.t), get(b, g.t)
				tol := tolF32
				if w.act {
					wv = tensor.FromF32Values(tensor.BF16, wv, len(wv)).ToF32()
					tol = tolBF16Same
				} else if w.t.DType() != tensor.F32 {
					require.Equalf(t, host(b, w.t).Data, host(b, g.t).Data, "%s", w.name)
					continue
				}
				requireClose(t, w.name, gv, f64s(wv), tol)
			}
		})
	}
}

func bf16Cases() []bf16Case {
	cases := []bf16Case{
		{"Fill", func(c *bf16Run) { c.b.Fill(c.actOut("x", 1001), 0.3) }},
		{"Scale", func(c *bf16Run) { c.b.Scale(c.actInOut("x", 1, 1001), -1.7) }},
		{"Axpy", func(c *bf16Run) { c.b.Axpy(c.actInOut("y", 1, 1001), 0.6, c.act(1, 1001)) }},
		{"Add", func(c *bf16Run) { c.b.Add(c.actOut("out", 37, 29), c.act(1, 37, 29), c.act(1, 37, 29)) }},
		{"Mul", func(c *bf16Run) { c.b.Mul(c.actOut("out", 37, 29), c.act(1, 37, 29), c.act(1, 37, 29)) }},
		{"SumSquares", func(c *bf16Run) { c.scalar("Σx²", c.b.SumSquares(c.act(1, 4099))) }},
		{"Permute", func(c *bf16Run) {
			c.b.Permute(c.actOut("out", 2, 4, 3, 5), c.act(1, 2, 3, 4, 5), []int{0, 2, 1, 3})
		}},
		{"StridedCopy", func(c *bf16Run) {
			c.b.StridedCopy(c.actInOut("dst", 1, 6, 12), c.act(1, 6, 10), kernels.StridedCopyParams{
				Shape: []int{6, 5}, DstOff: 4, DstStride: []int{12, 1}, SrcOff: 3, SrcStride: []int{10, 1},
			})
		}},
		{"SplitMergeQKV", func(c *bf16Run) {
			const s, bs, g, r, d = 5, 2, 2, 3, 8
			qkv := c.act(1, s, bs, g*(r+2)*d)
			q, k, v := c.actOut("q", bs, g*r, s, d), c.actOut("k", bs, g, s, d), c.actOut("v", bs, g, s, d)
			c.b.SplitQKV(q, k, v, qkv, g, r)
			c.b.MergeQKV(c.actOut("qkv", s, bs, g*(r+2)*d), c.act(1, bs, g*r, s, d), c.act(1, bs, g, s, d), c.act(1, bs, g, s, d), g, r)
		}},
		{"Bias", func(c *bf16Run) {
			c.b.AddBias(c.actInOut("x", 1, 19, 70), c.param(1, 0, 70))
			c.b.BiasGrad(c.paramOut("db", true, 70), c.act(1, 19, 70))
		}},
		{"Rows", func(c *bf16Run) {
			c.b.ScaleRows(c.actInOut("x", 1, 19, 70), c.param(1, 0, 19))
			c.b.RowDot(c.paramOut("dot", false, 19), c.act(1, 19, 70), c.act(1, 19, 70))
		}},
		{"Embedding", func(c *bf16Run) {
			const v, h, start = 23, 40, 10
			ids := devIdx(c.b, tensor.I64, []int64{10, 32, 5, 33, 20, 20, 11, 0, 31})
			c.b.Embedding(c.actOut("out", 9, h), c.param(1, 0, v, h), ids, start)
			c.b.EmbeddingBackward(c.paramOut("dtable", true, v, h), c.act(1, 9, h), ids, start)
		}},
		{"RMSNorm", func(c *bf16Run) {
			const n, h = 13, 96
			x := c.act(2, n, h)
			w := c.param(0.3, 1, h)
			c.b.RMSNorm(c.actOut("out", n, h), c.paramOut("rstd", false, n), x, w, 1e-5)
			c.b.RMSNormBackward(c.actOut("dx", n, h), c.paramOut("dw", true, h), c.act(1, n, h), x, w, c.param(0.2, 1, n))
		}},
		{"LayerNorm", func(c *bf16Run) {
			const n, h = 13, 96
			x := c.act(2, n, h)
			w, bias := c.param(0.3, 1, h), c.param(0.3, 0, h)
			c.b.LayerNorm(c.actOut("out", n, h), c.paramOut("mean", false, n), c.paramOut("rstd", false, n), x, w, bias, 1e-5)
			c.b.LayerNormBackward(c.actOut("dx", n, h), c.paramOut("dw", true, h), c.paramOut("db", true, h),
				c.act(1, n, h), x, w, c.param(0.1, 0, n), c.param(0.2, 1, n))
		}},
		{"RoPE", func(c *bf16Run) {
			p := kernels.RoPEParams{Base: 10000, RotaryDim: 12, PosOffset: 3}
			c.b.RoPE(c.actOut("out", 2, 3, 7, 16), c.act(1, 2, 3, 7, 16), p)
			x := c.actInOut("in-place", 1, 2, 3, 7, 16)
			p.Inverse = true
			c.b.RoPE(x, x, p)
		}},
		{"SwiGLU", func(c *bf16Run) {
			x := c.act(2, 11, 2*37)
			c.b.SwiGLU(c.actOut("out", 11, 37), x)
			c.b.SwiGLUBackward(c.actOut("dx", 11, 2*37), c.act(1, 11, 37), x)
		}},
		{"Dropout", func(c *bf16Run) {
			const n = 4001
			mask := c.b.Alloc(tensor.U8, n)
			c.b.Dropout(c.actOut("out", n), mask, c.act(1, n), 0.3, 99, 12345)
			c.out("mask", mask)
			c.b.DropoutBackward(c.actOut("dx", n), c.act(1, n), mask, 0.3)
		}},
		{"CrossEntropy", func(c *bf16Run) {
			const n, v, start = 7, 53, 50
			logits := c.act(3, n, v)
			targets := devIdx(c.b, tensor.I64, []int64{50, 102, 77, 3, 60, 51, 99})
			mx := c.paramOut("mx", false, n)
			c.b.RowMax(mx, logits)
			se := c.paramOut("se", false, n)
			c.b.SumExp(se, logits, mx)
			c.b.TargetLogit(c.paramOut("tl", false, n), logits, targets, start)
			c.b.CrossEntropyBackward(c.actOut("dlogits", n, v), logits, mx, se, targets, c.param(1, 0, n), start)
		}},
		{"CastWithAmax", func(c *bf16Run) {
			src := c.act(100, 3001)
			dst := c.b.Alloc(tensor.F8E4M3, 3001)
			c.scalar("amax", float64(c.b.CastWithAmax(dst, src, 2.5)))
			c.out("fp8", dst)
			amax := c.paramOut("amax-into", true, 1)
			c.b.CastWithAmaxInto(c.b.Alloc(tensor.F8E5M2, 3001), src, 0.5, amax)
		}},
	}
	for _, tanh := range []bool{false, true} {
		cases = append(cases, bf16Case{fmt.Sprint("GeLU/tanh=", tanh), func(c *bf16Run) {
			x := c.act(2, 2001)
			c.b.GeLU(c.actOut("out", 2001), x, tanh)
			c.b.GeLUBackward(c.actOut("dx", 2001), c.act(1, 2001), x, tanh)
		}})
	}
	cases = append(cases, bf16Case{"SquaredReLU", func(c *bf16Run) {
		x := c.act(2, 2001)
		c.b.SquaredReLU(c.actOut("out", 2001), x)
		c.b.SquaredReLUBackward(c.actOut("dx", 2001), c.act(1, 2001), x)
	}})
	for _, ta := range []bool{false, true} {
		for _, tb := range []bool{false, true} {
			cases = append(cases, bf16Case{fmt.Sprintf("Gemm/ta=%v/tb=%v", ta, tb), func(c *bf16Run) {
				p := kernels.GemmParams{TransA: ta, TransB: tb, M: 9, N: 24, K: 40, Alpha: 0.5, Beta: -1, Batch: 2,
					LDA: 40, LDB: 24, LDC: 26}
				if ta {
					p.LDA = 9
				}
				if tb {
					p.LDB = 40
				}
				p.StrideA, p.StrideB, p.StrideC = 9*40+5, 40*24+3, 9*26+1
				a, bm := c.act(1, 2*p.StrideA), c.act(1, 2*p.StrideB)
				if c.dt == tensor.F32 { // Gemm takes A and B in 16 bits or C in F32, not both
					a, bm = c.widenTo16(a), c.widenTo16(bm)
				}
				c.b.Gemm(p, a, bm, c.actInOut("c", 1, 2*p.StrideC))
			}})
		}
	}
	for _, d := range []int{24, 64} { // head dim 24 takes the simple kernels, 64 the flash ones
		cases = append(cases, bf16Case{fmt.Sprint("Attention/d=", d), func(c *bf16Run) {
			const bs, h, g, s = 1, 4, 2, 37
			p := kernels.AttnParams{Causal: true, Scale: 1 / float32(math.Sqrt(float64(d))), DropoutP: 0.2, DropoutSeed: 7}
			q, k, v := c.act(1, bs, h, s, d), c.act(1, bs, g, s, d), c.act(1, bs, g, s, d)
			c.b.Attention(c.actOut("out", bs, h, s, d), c.paramOut("lse", false, bs, h, s), q, k, v, p)
			// The backward's saved out and lse come from an F32 forward in both runs, out
			// rounded to bf16 (as a BF16 forward stores it).
			of, lse := c.b.Alloc(tensor.F32, bs, h, s, d), c.b.Alloc(tensor.F32, bs, h, s)
			c.b.Attention(of, lse, c.widenF32(q), c.widenF32(k), c.widenF32(v), p)
			ov := tensor.FromF32Values(tensor.BF16, get(c.b, of), bs*h*s*d).ToF32()
			c.b.AttentionBackward(c.actOut("dq", bs, h, s, d), c.actOut("dk", bs, g, s, d), c.actOut("dv", bs, g, s, d),
				c.act(1, bs, h, s, d), q, k, v, c.actOf(ov, bs, h, s, d), lse, p)
		}})
	}
	return cases
}

// widenTo16 returns the F32 run's GEMM operand as BF16 (the values are bf16 already), so
// the F32 run's GEMM is the same 16-bit product with an F32 C.
func (c *bf16Run) widenTo16(t *tensor.Tensor) *tensor.Tensor {
	return dev(c.b, tensor.BF16, get(c.b, t), t.Shape()...)
}

// widenF32 returns an F32 copy of an activation.
func (c *bf16Run) widenF32(t *tensor.Tensor) *tensor.Tensor {
	return devF32(c.b, get(c.b, t), t.Shape()...)
}
