package cuda

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/kernels"
	"github.com/gomegatron/gomegatron/kernels/cpu"
	"github.com/gomegatron/gomegatron/kernels/kernelstest"
	"github.com/gomegatron/gomegatron/tensor"
)

// TestConformance runs the backend-independent suite (float64 references, finite
// differences) on the GPU.
func TestConformance(t *testing.T) {
	kernelstest.RunAll(t, gpu(t))
}

// The checks below run on the GPU (Test*) and on the host emulator (TestEmulator), which
// executes the same kernel sources on the CPU.
func TestVsCPU(t *testing.T)               { vsCPU(t, gpu(t)) }
func TestAttentionVsCPU(t *testing.T)      { attentionVsCPU(t, gpu(t), false) }
func TestFlashAttentionVsCPU(t *testing.T) { attentionVsCPU(t, gpu(t), true) }

// TestFlashAttentionPipeVsCPU: the same with the _d64p kernels (cp.async, ldmatrix) where
// they apply (BF16, head dims up to 64), forward and backward.
func TestFlashAttentionPipeVsCPU(t *testing.T) {
	g := gpu(t)
	flashVariantVsCPU(t, g, &g.flashPipe)
}

// TestFlashAttentionWideVsCPU: the same with the _d64w kernels (128 query rows per block).
func TestFlashAttentionWideVsCPU(t *testing.T) {
	g := gpu(t)
	flashVariantVsCPU(t, g, &g.flashWide)
}

// flashVariantVsCPU runs the flash attention checks with a kernel-variant switch of g on.
func flashVariantVsCPU(t *testing.T, g *Backend, on *bool) {
	*on = true
	defer func() { *on = false }()
	attentionVsCPU(t, g, true)
}
func TestGemmVsCPU(t *testing.T)           { gemmVsCPU(t, gpu(t)) }
func TestGemmFP8(t *testing.T)             { gemmFP8(t, gpu(t)) }
func TestFP8SoftwareRounding(t *testing.T) { fp8SoftwareRounding(t, gpu(t)) }

// TestVsCPU runs every op on the GPU and on the CPU backend with the same fresh random
// inputs and compares (outputs poisoned with NaN on the GPU before each run), with F32
// activations and again with BF16 ones (kernels' "BF16 activations"; weights, statistics
// and parameter gradients stay F32).
func vsCPU(t *testing.T, g *Backend) {
	for _, act := range []tensor.DType{tensor.F32, tensor.BF16} {
		t.Run(act.String(), func(t *testing.T) { opsVsCPU(t, g, act) })
	}
}

func opsVsCPU(t *testing.T, g *Backend, act tensor.DType) {
	F := tensor.F32
	cases := []struct {
		name    string
		f32Only bool // no activations, or a dtype of its own
		run     func(e *env)
	}{
		{"Fill/Scale/Axpy/Add/Mul", false, func(e *env) {
			n := 100003
			x, y := e.actIn(1, n), e.actIn(1, n)
			o := e.actOut(n)
			e.c.Fill(o.h, 2.5)
			e.g.Fill(o.d, 2.5)
			e.check("Fill", o, 0)
			e.c.Scale(x.h, -0.3)
			e.g.Scale(x.d, -0.3)
			e.check("Scale", x, 0)
			e.c.Axpy(y.h, 1.7, x.h)
			e.g.Axpy(y.d, 1.7, x.d)
			e.check("Axpy", y, e.actTol(tolF32))
			// Axpy's y may differ in the last bit (the GPU fuses the multiply-add): Add and
			// Mul, which must be exact, start from the same y on both sides.
			e.g.Upload(y.d, y.h)
			e.c.Add(o.h, x.h, y.h)
			e.g.Add(o.d, x.d, y.d)
			e.check("Add", o, 0)
			o2 := e.actOut(n)
			e.c.Mul(o2.h, x.h, y.h)
			e.g.Mul(o2.d, x.d, y.d)
			e.check("Mul", o2, 0)
			require.InEpsilon(t, e.c.SumSquares(x.h), e.g.SumSquares(x.d), 1e-12)
		}},
		{"Copy/bf16", true, func(e *env) {
			x := e.randn(tensor.BF16, 1, 37, 3)
			o := e.out(tensor.BF16, 37, 3)
			e.c.Copy(o.h, x.h)
			e.g.Copy(o.d, x.d)
			e.checkBits("Copy", o)
		}},
		{"Permute", false, func(e *env) {
			for _, perm := range [][]int{{1, 0}, {2, 0, 1}, {0, 2, 1, 3}, {3, 1, 0, 2}} {
				shape := []int{3, 5, 7, 11}[:len(perm)]
				x := e.actIn(1, shape...)
				os := make([]int, len(perm))
				for i, p := range perm {
					os[i] = shape[p]
				}
				o := e.actOut(os...)
				e.c.Permute(o.h, x.h, perm)
				e.g.Permute(o.d, x.d, perm)
				e.check(fmt.Sprint("Permute", perm), o, 0)
			}
		}},
		{"StridedCopy", false, func(e *env) {
			// dst starts with the same random values on both sides: StridedCopy leaves the
			// elements outside the view alone.
			for _, p := range []kernels.StridedCopyParams{
				{Shape: []int{64, 3, 129}, DstOff: 7, DstStride: []int{3 * 131, 131, 1}, SrcOff: 5, SrcStride: []int{140, 0, 1}},
				{Shape: []int{3, 5, 7, 11}, DstStride: []int{5 * 7 * 11, 11, 5 * 11, 1}, SrcOff: 1, SrcStride: []int{400, 80, 1, 7}},
				{Shape: []int{1001}, DstOff: 2, DstStride: []int{3}, SrcStride: []int{2}},
			} {
				end := func(off int, st []int) int {
					for k, d := range p.Shape {
						off += (d - 1) * st[k]
					}
					return off + 3
				}
				dst, src := e.actIn(1, end(p.DstOff, p.DstStride)), e.actIn(1, end(p.SrcOff, p.SrcStride))
				e.c.StridedCopy(dst.h, src.h, p)
				e.g.StridedCopy(dst.d, src.d, p)
				e.checkBits(fmt.Sprint("StridedCopy", p), dst)
			}
		}},
		{"SplitQKV/MergeQKV", false, func(e *env) {
			s, b, g, r, d := 5, 2, 3, 2, 8
			qkv := e.actIn(1, s, b, g*(r+2)*d)
			q, k, v := e.actOut(b, g*r, s, d), e.actOut(b, g, s, d), e.actOut(b, g, s, d)
			e.c.SplitQKV(q.h, k.h, v.h, qkv.h, g, r)
			e.g.SplitQKV(q.d, k.d, v.d, qkv.d, g, r)
			e.check("q", q, 0)
			e.check("k", k, 0)
			e.check("v", v, 0)
			m := e.actOut(s, b, g*(r+2)*d)
			e.c.MergeQKV(m.h, q.h, k.h, v.h, g, r)
			e.g.MergeQKV(m.d, q.d, k.d, v.d, g, r)
			e.check("merged", m, 0)
		}},
		{"AddBias/BiasGrad", false, func(e *env) {
			x, bias := e.actIn(1, 300, 129), e.randn(F, 1, 129)
			e.c.AddBias(x.h, bias.h)
			e.g.AddBias(x.d, bias.d)
			e.check("AddBias", x, 0)
			db := e.randn(F, 1, 129) // accumulates
			e.c.BiasGrad(db.h, x.h)
			e.g.BiasGrad(db.d, x.d)
			e.check("BiasGrad", db, tolF32)
		}},
		{"ScaleRows/RowDot", false, func(e *env) {
			x, s := e.actIn(1, 300, 129), e.randn(F, 1, 300)
			e.c.ScaleRows(x.h, s.h)
			e.g.ScaleRows(x.d, s.d)
			e.check("ScaleRows", x, 0)
			a, b2, dot := e.actIn(1, 300, 129), e.actIn(1, 300, 129), e.randn(F, 1, 300)
			e.c.RowDot(dot.h, a.h, b2.h)
			e.g.RowDot(dot.d, a.d, b2.d)
			e.check("RowDot", dot, tolF32)
		}},
		{"Embedding", false, func(e *env) {
			for _, dt := range []tensor.DType{tensor.I64, tensor.I32} {
				table := e.randn(F, 1, 50, 33)
				ids := e.ids(dt, 77, 90, 160) // vocab shard [100, 150): some ids out of range
				o := e.actOut(77, 33)
				e.c.Embedding(o.h, table.h, ids.h, 100)
				e.g.Embedding(o.d, table.d, ids.d, 100)
				e.check("Embedding", o, 0)
				dt := e.randn(F, 1, 50, 33)
				e.c.EmbeddingBackward(dt.h, o.h, ids.h, 100)
				e.g.EmbeddingBackward(dt.d, o.d, ids.d, 100)
				e.check("EmbeddingBackward", dt, tolF32)
			}
		}},
		{"RMSNorm", false, func(e *env) {
			n, h := 67, 1000
			x, w, g := e.actIn(2, n, h), e.randn(F, 1, h), e.actIn(1, n, h)
			o, rs := e.actOut(n, h), e.out(F, n)
			e.c.RMSNorm(o.h, rs.h, x.h, w.h, 1e-5)
			e.g.RMSNorm(o.d, rs.d, x.d, w.d, 1e-5)
			e.check("out", o, e.actTol(tolF32))
			e.check("rstd", rs, tolF32)
			dx, dw := e.actOut(n, h), e.randn(F, 1, h)
			e.c.RMSNormBackward(dx.h, dw.h, g.h, x.h, w.h, rs.h)
			e.g.RMSNormBackward(dx.d, dw.d, g.d, x.d, w.d, rs.d)
			e.check("dx", dx, e.actTol(tolF32))
			e.check("dw", dw, tolF32)
		}},
		{"LayerNorm", false, func(e *env) {
			n, h := 130, 777 // enough rows for several row chunks in the weight gradients
			x, w, bi, g := e.actIn(2, n, h), e.randn(F, 1, h), e.randn(F, 1, h), e.actIn(1, n, h)
			o, mu, rs := e.actOut(n, h), e.out(F, n), e.out(F, n)
			e.c.LayerNorm(o.h, mu.h, rs.h, x.h, w.h, bi.h, 1e-5)
			e.g.LayerNorm(o.d, mu.d, rs.d, x.d, w.d, bi.d, 1e-5)
			e.check("out", o, e.actTol(tolF32))
			e.check("mean", mu, tolF32)
			e.check("rstd", rs, tolF32)
			dx, dw, db := e.actOut(n, h), e.randn(F, 1, h), e.randn(F, 1, h)
			e.c.LayerNormBackward(dx.h, dw.h, db.h, g.h, x.h, w.h, mu.h, rs.h)
			e.g.LayerNormBackward(dx.d, dw.d, db.d, g.d, x.d, w.d, mu.d, rs.d)
			e.check("dx", dx, e.actTol(tolF32))
			e.check("dw", dw, tolF32)
			e.check("db", db, tolF32)
		}},
		{"RoPE", false, func(e *env) {
			// Per-token positions restarting with each document (--reset-position-ids).
			pos := e.i32(docPositions(2, 19, 5, 1, 8, 2), 2, 19)
			for _, p := range []kernels.RoPEParams{{Base: 10000}, {Base: 500000, RotaryDim: 32, PosOffset: 4090}, {Base: 10000, Inverse: true, PosOffset: 3},
				{Base: 10000, RotaryDim: 48, Positions: pos.d}, {Base: 500000, Inverse: true, Positions: pos.d},
				{Base: 10000, RotaryDim: 32, Interleaved: true, Positions: pos.d}, {Base: 10000, Interleaved: true, Inverse: true, PosOffset: 7}} {
				pc := p
				if p.Positions != nil {
					pc.Positions = pos.h
				}
				x := e.actIn(1, 2, 3, 19, 64)
				o := e.actOut(2, 3, 19, 64)
				e.c.RoPE(o.h, x.h, pc)
				e.g.RoPE(o.d, x.d, p)
				e.check(fmt.Sprintf("RoPE %+v", pc), o, e.actTol(tolF32))
				e.c.RoPE(x.h, x.h, pc) // in place
				e.g.RoPE(x.d, x.d, p)
				e.check("RoPE in place", x, e.actTol(tolF32))
			}
			// Beyond the contract ([0, S)) and the tables: NaN, not a read past them.
			bad, x, o := e.i32([]int32{1, 1 << 20}, 1, 2), e.actIn(1, 1, 1, 2, 8), e.actOut(1, 1, 2, 8)
			e.g.RoPE(o.d, x.d, kernels.RoPEParams{Base: 10000, Positions: bad.d})
			got := e.get(o.d).ToF32()
			for i, v := range got {
				require.Equalf(e.t, i >= 8, math.IsNaN(float64(v)), "out[%d] = %v", i, v)
			}
		}},
		{"SwiGLU/GeLU/SquaredReLU", false, func(e *env) {
			x, g := e.actIn(2, 33, 2*70), e.actIn(1, 33, 70)
			o, dx := e.actOut(33, 70), e.actOut(33, 140)
			e.c.SwiGLU(o.h, x.h)
			e.g.SwiGLU(o.d, x.d)
			e.check("SwiGLU", o, e.actTol(tolF32))
			e.c.SwiGLUBackward(dx.h, g.h, x.h)
			e.g.SwiGLUBackward(dx.d, g.d, x.d)
			e.check("SwiGLUBackward", dx, e.actTol(tolF32))
			for _, tanh := range []bool{false, true} {
				y, gy := e.actIn(2.5, 5000), e.actIn(1, 5000)
				o, d := e.actOut(5000), e.actOut(5000)
				e.c.GeLU(o.h, y.h, tanh)
				e.g.GeLU(o.d, y.d, tanh)
				e.check(fmt.Sprint("GeLU tanh=", tanh), o, e.actTol(tolF32))
				e.c.GeLUBackward(d.h, gy.h, y.h, tanh)
				e.g.GeLUBackward(d.d, gy.d, y.d, tanh)
				e.check(fmt.Sprint("GeLUBackward tanh=", tanh), d, e.actTol(tolF32))
			}
			y, gy := e.actIn(2, 5000), e.actIn(1, 5000)
			o2, d2 := e.actOut(5000), e.actOut(5000)
			e.c.SquaredReLU(o2.h, y.h)
			e.g.SquaredReLU(o2.d, y.d)
			e.check("SquaredReLU", o2, e.actTol(tolF32))
			e.c.SquaredReLUBackward(d2.h, gy.h, y.h)
			e.g.SquaredReLUBackward(d2.d, gy.d, y.d)
			e.check("SquaredReLUBackward", d2, e.actTol(tolF32))
		}},
		{"Dropout", false, func(e *env) {
			for _, p := range []float32{0, 0.1, 0.5, 1} {
				n := 70001
				x, g := e.actIn(1, n), e.actIn(1, n)
				o, m, dx := e.actOut(n), e.out(tensor.U8, n), e.actOut(n)
				e.c.Dropout(o.h, m.h, x.h, p, 1234, 99)
				e.g.Dropout(o.d, m.d, x.d, p, 1234, 99)
				e.checkBits(fmt.Sprint("mask p=", p), m) // the same counter-based RNG, bit for bit
				e.check("out", o, 0)
				e.c.DropoutBackward(dx.h, g.h, m.h, p)
				e.g.DropoutBackward(dx.d, g.d, m.d, p)
				if p < 1 {
					e.check("dx", dx, 0)
				}
			}
		}},
		{"CrossEntropy", false, func(e *env) {
			for _, dt := range []tensor.DType{tensor.I64, tensor.I32} {
				n, v, start := 37, 1001, 500
				logits := e.actIn(3, n, v)
				tg := e.ids(dt, n, 0, 2000)
				mx, se, tl := e.out(F, n), e.out(F, n), e.out(F, n)
				e.c.RowMax(mx.h, logits.h)
				e.g.RowMax(mx.d, logits.d)
				e.check("RowMax", mx, 0)
				e.c.SumExp(se.h, logits.h, mx.h)
				e.g.SumExp(se.d, logits.d, mx.d)
				e.check("SumExp", se, tolF32)
				e.c.TargetLogit(tl.h, logits.h, tg.h, start)
				e.g.TargetLogit(tl.d, logits.d, tg.d, start)
				e.check("TargetLogit", tl, 0)
				dl, dloss := e.actOut(n, v), e.randn(F, 1, n)
				e.c.CrossEntropyBackward(dl.h, logits.h, mx.h, se.h, tg.h, dloss.h, start)
				e.g.CrossEntropyBackward(dl.d, logits.d, mx.d, se.d, tg.d, dloss.d, start)
				e.check("CrossEntropyBackward", dl, e.actTol(tolF32))
			}
		}},
		{"AdamW", true, func(e *env) {
			n := 10007
			p, m := e.randn(F, 1, n), e.randn(F, 0.01, n)
			v := e.randn(F, 0.01, n)
			e.c.Mul(v.h, v.h, v.h) // second moments are non-negative
			e.g.Mul(v.d, v.d, v.d)
			for step := 1; step <= 3; step++ {
				g := e.randn(F, 1, n)
				h := kernels.AdamParams{LR: 1e-3, Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, WeightDecay: 0.1, Step: step}
				e.c.AdamW(p.h, g.h, m.h, v.h, h)
				e.g.AdamW(p.d, g.d, m.d, v.d, h)
			}
			e.check("p", p, tolF32)
			e.check("m", m, tolF32)
			e.check("v", v, tolF32)
		}},
		{"CastWithAmax", false, func(e *env) {
			for _, dt := range []tensor.DType{tensor.BF16, tensor.F16, tensor.F8E4M3, tensor.F8E5M2, tensor.F32} {
				x := e.actIn(100, 4099)
				o := e.out(dt, 4099)
				ac := e.c.CastWithAmax(o.h, x.h, 3.5)
				ag := e.g.CastWithAmax(o.d, x.d, 3.5)
				require.Equal(t, ac, ag, "amax %v", dt)
				e.checkBits(fmt.Sprint("cast ", dt), o) // round-to-nearest-even and saturation agree bit for bit
			}
			// Specials: NaN (both signs), ±Inf, overflow of every format; NaN amax.
			x := e.actIn(1e3, 1000)
			hx := x.h.ToF32()
			copy(hx, []float32{float32(math.NaN()), -float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1)), 7e4, -7e4, 3e38, 1e-40})
			tensor.ConvertFromF32(x.h, hx)
			e.g.Upload(x.d, x.h)
			for _, dt := range []tensor.DType{tensor.BF16, tensor.F16, tensor.F8E4M3, tensor.F8E5M2} {
				o := e.out(dt, 1000)
				ac := e.c.CastWithAmax(o.h, x.h, 1)
				ag := e.g.CastWithAmax(o.d, x.d, 1)
				require.True(t, math.IsNaN(float64(ac)) && math.IsNaN(float64(ag)), "a NaN input makes amax NaN (%v)", dt)
				e.checkBits(fmt.Sprint("specials ", dt), o)
			}
		}},
	}
	for _, c := range cases {
		if c.f32Only && act != F {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, g)
			e.act = act
			c.run(e)
		})
	}
}

// TestAttentionVsCPU covers GQA, causal with a query offset, sliding windows and ALiBi
// before and after scaling, and documents packed in a sequence (KeyStart: several per row
// of different lengths, with GQA, a query offset, a sliding window, dropout, and rows that
// see no key), forward and backward.
//
// With flash, the tensor-core kernels run (head dims that are multiples of 16 up to 128;
// the others fall back) and are held to the bf16 tolerance. The cases marked bf16 run
// again with BF16 q, k, v, out and gradients (lse F32), held to the bf16 tolerance.
func attentionVsCPU(t *testing.T, g *Backend, flash bool) {
	tol := tolF32
	if flash {
		g.FlashAttention, tol = true, tolBF16
		defer func() { g.FlashAttention = false }()
	}
	cases := []struct {
		name              string
		b, h, g, s, tt, d int
		p                 kernels.AttnParams
		bf16              bool
		keyStart          []int32 // [B, S]: p.KeyStart (nil: none)
	}{
		{"causal-gqa", 2, 4, 2, 33, 33, 64, kernels.AttnParams{Causal: true}, true, nil},
		{"causal-qoffset", 1, 6, 3, 17, 40, 128, kernels.AttnParams{Causal: true, QOffset: 23}, true, nil},
		{"sliding-window", 1, 4, 4, 50, 50, 32, kernels.AttnParams{Causal: true, SlidingWindow: 7}, false, nil},
		{"alibi-mqa", 2, 4, 1, 20, 20, 80, kernels.AttnParams{Causal: true, ALiBiSlopes: cpu.ALiBiSlopes(4)}, true, nil},
		{"alibi-before-scale", 1, 4, 2, 20, 29, 96, kernels.AttnParams{ALiBiSlopes: cpu.ALiBiSlopes(4), ALiBiBeforeScale: true}, false, nil},
		{"full-d256", 1, 2, 2, 9, 9, 256, kernels.AttnParams{}, true, nil},
		{"causal-blocks", 1, 2, 1, 150, 150, 16, kernels.AttnParams{Causal: true}, false, nil},
		{"full-blocks", 1, 1, 1, 70, 130, 32, kernels.AttnParams{}, false, nil},
		{"dropout-causal-gqa", 2, 4, 2, 70, 70, 64, kernels.AttnParams{Causal: true, DropoutP: 0.1, DropoutSeed: 5, DropoutOffset: 123}, false, nil},
		{"dropout-tp-heads", 1, 2, 1, 40, 70, 32, kernels.AttnParams{DropoutP: 0.3, DropoutSeed: 9, DropoutHeads: 8, DropoutHead0: 6}, true, nil},
		{"documents-gqa", 2, 4, 2, 70, 70, 32, kernels.AttnParams{Causal: true}, true, docStarts(2, 70, 20, 1, 33, 10)},
		{"documents-qoffset", 1, 2, 1, 17, 40, 64, kernels.AttnParams{Causal: true, QOffset: 23}, false, docStarts(1, 40, 10, 15, 6, 9)[23:]},
		{"documents-window", 2, 2, 1, 50, 50, 16, kernels.AttnParams{Causal: true, SlidingWindow: 7}, false, docStarts(2, 50, 12, 5, 30)},
		{"documents-dropout", 2, 2, 2, 40, 40, 64, kernels.AttnParams{Causal: true, DropoutP: 0.2, DropoutSeed: 3, DropoutOffset: 77}, true, docStarts(2, 40, 17, 23, 3)},
		// Beyond KeyStart's contract (≤ QOffset+i): rows starting at T see no key.
		{"documents-empty-rows", 1, 2, 2, 20, 20, 32, kernels.AttnParams{}, false, emptyRows(docStarts(1, 20, 6, 9), 20, 3, 4, 15)},
	}
	for _, act := range []tensor.DType{tensor.F32, tensor.BF16} {
		for _, c := range cases {
			if act == tensor.BF16 && !c.bf16 {
				continue
			}
			name := c.name
			if act == tensor.BF16 {
				name += "/bf16"
			}
			t.Run(name, func(t *testing.T) {
				e := newEnv(t, g)
				e.act = act
				c.p.Scale = float32(1 / math.Sqrt(float64(c.d)))
				pc, pg := c.p, c.p
				if c.keyStart != nil {
					ks := e.i32(c.keyStart, c.b, c.s)
					pc.KeyStart, pg.KeyStart = ks.h, ks.d
				}
				q, k, v := e.actIn(1, c.b, c.h, c.s, c.d), e.actIn(1, c.b, c.g, c.tt, c.d), e.actIn(1, c.b, c.g, c.tt, c.d)
				o, lse := e.actOut(c.b, c.h, c.s, c.d), e.out(tensor.F32, c.b, c.h, c.s)
				e.c.Attention(o.h, lse.h, q.h, k.h, v.h, pc)
				e.g.Attention(o.d, lse.d, q.d, k.d, v.d, pg)
				e.check("out", o, e.actTol(tol))
				e.check("lse", lse, tol)
				g := e.actIn(1, c.b, c.h, c.s, c.d)
				dq, dk, dv := e.actOut(c.b, c.h, c.s, c.d), e.actOut(c.b, c.g, c.tt, c.d), e.actOut(c.b, c.g, c.tt, c.d)
				e.c.AttentionBackward(dq.h, dk.h, dv.h, g.h, q.h, k.h, v.h, o.h, lse.h, pc)
				e.g.AttentionBackward(dq.d, dk.d, dv.d, g.d, q.d, k.d, v.d, o.d, lse.d, pg)
				e.check("dq", dq, e.actTol(tol))
				e.check("dk", dk, e.actTol(tol))
				e.check("dv", dv, e.actTol(tol))
			})
		}
	}
}

// TestGemmVsCPU: F32 (exact fp32 and TF32), BF16 and F16 against the CPU backend on the same
// rounded operands; BF16 also into a BF16 C (rounded once), and with K = 0 (C = Beta·C).
func gemmVsCPU(t *testing.T, g *Backend) {
	e := newEnv(t, g)
	for _, tc := range []struct {
		dt, ct tensor.DType
		tf32   bool
		tol    float64
	}{{tensor.F32, tensor.F32, false, tolF32}, {tensor.F32, tensor.F32, true, tolTF32}, {tensor.BF16, tensor.F32, false, tolF32},
		{tensor.F16, tensor.F32, false, tolF32}, {tensor.BF16, tensor.BF16, false, tolBF16}} {
		for _, tr := range [][2]bool{{false, false}, {false, true}, {true, false}, {true, true}} {
			m, n, k := 129, 257, 300
			p := kernels.GemmParams{TransA: tr[0], TransB: tr[1], M: m, N: n, K: k, Alpha: 1.25, Beta: 0.5, Batch: 2,
				StrideA: m * k, StrideB: k * n, StrideC: m * n}
			a, bm := e.randn(tc.dt, 1, 2, m*k), e.randn(tc.dt, 1, 2, k*n)
			c := e.randn(tc.ct, 1, 2, m*n)
			e.c.Gemm(p, a.h, bm.h, c.h)
			e.g.TF32 = tc.tf32
			e.g.Gemm(p, a.d, bm.d, c.d)
			e.g.TF32 = false
			e.check(fmt.Sprintf("%v C %v tf32=%v trans=%v", tc.dt, tc.ct, tc.tf32, tr), c, tc.tol)
		}
	}
	// K = 0 (which kernels/cpu's GEMM does not take): C = Beta·C in C's rows only.
	p := kernels.GemmParams{M: 5, N: 7, LDC: 9, Alpha: 1, Beta: 0.5, Batch: 2, StrideC: 50}
	a, bm, c := e.randn(tensor.BF16, 1, 1), e.randn(tensor.BF16, 1, 1), e.randn(tensor.BF16, 1, 100)
	e.g.Gemm(p, a.d, bm.d, c.d)
	want := c.h.ToF32()
	for i := range p.Batch {
		for r := range p.M {
			for j := range p.N {
				want[i*p.StrideC+r*p.LDC+j] *= p.Beta
			}
		}
	}
	tensor.ConvertFromF32(c.h, want)
	e.checkBits("K = 0 into BF16 C", c)
}

// TestGemmFP8: cuBLASLt's TN FP8 path against the CPU backend's exact FP8 GEMM with the
// scales folded into Alpha, for every input pair, D in BF16 and F32, the scales as device
// pointers or in Alpha, with and without fast accumulation. Every combination is tried
// and reported (a failing one does not hide the others' results).
func gemmFP8(t *testing.T, g *Backend) {
	e := newEnv(t, g)
	if e.g.dev.CC < 89 {
		t.Skipf("FP8 GEMM needs sm_89 or newer, have sm_%d", e.g.dev.CC)
	}
	m, n, k := 128, 256, 512
	as, bs := float32(0.5), float32(0.125)
	// Each scale in its own allocation: cuBLASLt refused (NOT_SUPPORTED) a B scale 4 bytes
	// after the A scale on an H200 (2026-11-27).
	aScale, bScale := e.device(tensor.FromF32([]float32{as}, 1)), e.device(tensor.FromF32([]float32{bs}, 1))
	for _, dts := range [][2]tensor.DType{{tensor.F8E4M3, tensor.F8E4M3}, {tensor.F8E4M3, tensor.F8E5M2}, {tensor.F8E5M2, tensor.F8E4M3}} {
		a, bm := e.randn(dts[0], 4, m, k), e.randn(dts[1], 4, n, k)
		want := tensor.New(tensor.F32, m, n)
		e.c.Gemm(kernels.GemmParams{TransB: true, M: m, N: n, K: k, Alpha: as * bs}, a.h, bm.h, want)
		for _, dOut := range []tensor.DType{tensor.BF16, tensor.F32} {
			for _, ptrs := range []bool{true, false} {
				for _, fast := range []bool{false, true} {
					name := fmt.Sprintf("%v×%v→%v scale-pointers=%v fast=%v", dts[0], dts[1], dOut, ptrs, fast)
					p := kernels.GemmParams{TransB: true, M: m, N: n, K: k, Alpha: 1}
					sc := FP8Scales{AScale: aScale.Ptr, BScale: bScale.Ptr, FastAccum: fast}
					if !ptrs {
						p.Alpha, sc.AScale, sc.BScale = as*bs, 0, 0
					}
					d := e.out(dOut, m, n)
					if err := e.g.GemmFP8(p, a.d, bm.d, d.d, sc); err != nil {
						t.Errorf("%s: %v", name, err)
						continue
					}
					// Hopper's FP8 tensor cores add products in fewer bits than F32 even
					// without fast accumulation (1.0–1.3e-4 here on an H200, 2026-11-27);
					// the emulator's GEMM is exact.
					tol := 1e-3
					if exactGemms(e.g) {
						tol = 1e-5
					}
					if dOut == tensor.BF16 || fast {
						tol = 1e-2 // D rounded to BF16; fast accumulation keeps fewer bits still
					}
					tensor.ConvertFromF32(d.h, want.F32())
					t.Run(name, func(t *testing.T) { e.t = t; e.check(name, d, tol) })
				}
			}
		}
	}
	e.t = t
	// Two scales in one allocation, as run 1 had them: refused, with the reason.
	pair := e.device(tensor.FromF32([]float32{as, bs}, 2))
	a, bm := e.randn(tensor.F8E4M3, 4, m, k), e.randn(tensor.F8E4M3, 4, n, k)
	err := e.g.GemmFP8(kernels.GemmParams{TransB: true, M: m, N: n, K: k, Alpha: 1}, a.d, bm.d, e.out(tensor.BF16, m, n).d,
		FP8Scales{AScale: pair.Ptr, BScale: pair.Ptr + 4})
	require.ErrorContains(t, err, "not 16-byte aligned")
	err = e.g.GemmFP8(kernels.GemmParams{M: 16, N: 16, K: 16}, e.randn(tensor.F8E4M3, 1, 16, 16).d, e.randn(tensor.F8E4M3, 1, 16, 16).d, e.out(tensor.F32, 16, 16).d, FP8Scales{})
	require.ErrorContains(t, err, "TN")
}

// TestFP8SoftwareRounding: the software FP8 rounding (sm_80 path) and the hardware cvt both
// match tensor.E4M3FromF32/E5M2FromF32 bit for bit, specials included.
func fp8SoftwareRounding(t *testing.T, g *Backend) {
	e := newEnv(t, g)
	special := []float32{0, float32(math.Copysign(0, -1)), 448, 449, 464, 480, 1e6, -1e6, float32(math.Inf(1)), float32(math.Inf(-1)),
		float32(math.NaN()), 57344, 61440, 1e-9, -1e-9, 0.001953125, 0.0009765625, 0.0029296875, 1.5258789e-05, 2.2888184e-05}
	x := e.randn(tensor.F32, 30, 20000)
	hx := x.h.F32()
	copy(hx, special)
	for i := len(special); i < 2000; i++ {
		hx[i] *= 1e-4 // the subnormal ranges
	}
	e.g.Upload(x.d, x.h)
	for _, dt := range []tensor.DType{tensor.F8E4M3, tensor.F8E5M2} {
		o := e.out(tensor.U8, len(hx))
		for i, v := range hx {
			if dt == tensor.F8E4M3 {
				o.h.Data[i] = tensor.E4M3FromF32(v, true)
			} else {
				o.h.Data[i] = tensor.E5M2FromF32(v, true)
			}
		}
		e.g.run(func() error {
			return e.g.dev.launch("gm_fp8_sw_f32", e.g.grid1D(len(hx)), blockSize, 0, o.d.Ptr, x.d.Ptr, bool32(dt == tensor.F8E5M2), int64(len(hx)))
		})
		e.checkBits(fmt.Sprint("software ", dt), o)
		hw := e.out(dt, len(hx))
		e.g.CastWithAmax(hw.d, x.d, 1)
		got := e.get(hw.d)
		require.Equal(t, o.h.Data, got.Data, "hardware %v", dt)
	}
}

// TestCubinCache: a second device start reads every CUBIN from the cache folder.
func TestCubinCache(t *testing.T) {
	g := gpu(t)
	dir, err := CacheDir()
	require.NoError(t, err)
	files, _, err := Sources()
	require.NoError(t, err)
	for f := range files {
		m, _ := filepath.Glob(filepath.Join(dir, f[:len(f)-3]+"-"+Arch(g.dev.CC)+"-nvrtc*.cubin"))
		require.NotEmptyf(t, m, "no cached CUBIN for %s in %s", f, dir)
		st, err := os.Stat(m[0])
		require.NoError(t, err)
		require.Positive(t, st.Size())
	}
}

// TestArenaDevice: allocations are 256-byte aligned device memory; freeing returns them.
func TestArenaDevice(t *testing.T) {
	g := gpu(t)
	before := g.dev.arena.InUse()
	x := g.Alloc(tensor.F32, 1000)
	require.Zero(t, x.Ptr%ArenaAlign)
	h := tensor.New(tensor.F32, 1000)
	g.Download(h, x)
	for _, v := range h.F32() {
		require.Zero(t, v, "Alloc zeroes")
	}
	require.NoError(t, g.Free(x))
	require.Equal(t, before, g.dev.arena.InUse())
	require.Error(t, g.Free(x), "double free is an error")
}

// TestEnvironment logs what the GPU check found (scripts/gpu/check.sh puts the line in its
// report): the libraries and device, or why CUDA is unavailable. It fails only when CUDA is
// available but the backend cannot start.
func TestEnvironment(t *testing.T) {
	ok, reason := Available()
	fmt.Printf("CUDA available=%v: %s\n", ok, reason)
	if !ok {
		t.Skip(reason)
	}
	g := gpu(t)
	fmt.Printf("CUDA device %d: %s, %s, %d SMs, arena %d MiB\n", g.dev.Index, g.dev.Name, Arch(g.dev.CC), g.dev.SMs, g.dev.arena.Size()>>20)
}

// TestBind: ops from a bound view (launched on this locked thread) and from the device
// thread interleave on one stream and match the CPU.
func TestBind(t *testing.T) { bindCheck(t, gpu(t)) }

func bindCheck(t *testing.T, g *Backend) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	v, err := g.Bind()
	require.NoError(t, err)
	e := newEnv(t, g)
	x, y := e.randn(tensor.F32, 1, 2500, 2), e.randn(tensor.F32, 1, 2500, 2)
	e.c.Axpy(y.h, 0.5, x.h)
	v.Axpy(y.d, 0.5, x.d)
	e.c.Scale(y.h, 3)
	g.Scale(y.d, 3)
	o := e.out(tensor.F32, 2500, 1)
	e.c.SwiGLU(o.h, y.h)
	v.SwiGLU(o.d, y.d)
	e.check("bound ops", o, tolF32)
}
