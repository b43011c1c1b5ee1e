package cpu

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/kernels"
	"github.com/gomegatron/gomegatron/tensor"
)

// bf16Env builds one run of a BF16 test case: activations of dtype dt (F32 or BF16)
// holding BF16 values, everything else F32, all drawn from the same seed, so the F32 run
// sees exactly the widened inputs of the BF16 run.
type bf16Env struct {
	b  *Backend
	dt tensor.DType
	r  *rand.Rand
}

func (e *bf16Env) values(n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = tensor.F32FromBF16(tensor.BF16FromF32(float32(e.r.NormFloat64())))
	}
	return v
}

// act is a random activation (also used for outputs, so unwritten elements would show).
func (e *bf16Env) act(shape ...int) *tensor.Tensor {
	t := tensor.New(e.dt, shape...)
	tensor.ConvertFromF32(t, e.values(t.Numel()))
	return t
}

// f32 is a random F32 tensor (weights, accumulated grads, statistics).
func (e *bf16Env) f32(shape ...int) *tensor.Tensor {
	return tensor.FromF32(e.values(tensor.ShapeNumel(shape)), shape...)
}

// settle rounds the F32 run's activation outputs to BF16 values before a later call reads
// them, as the BF16 run's outputs are.
func (e *bf16Env) settle(ts ...*tensor.Tensor) {
	if e.dt == tensor.F32 {
		for _, t := range ts {
			e.b.Round(t, tensor.BF16)
		}
	}
}

func scalar(v float32) *tensor.Tensor { return tensor.FromF32([]float32{v}, 1) }

// checkBF16 runs f with F32 and with BF16 activations and requires every returned BF16
// tensor to equal the rounded F32 result bit for bit, and every other tensor to be equal.
func checkBF16(t *testing.T, f func(e *bf16Env) []*tensor.Tensor) {
	t.Helper()
	want := f(&bf16Env{New(), tensor.F32, rand.New(rand.NewPCG(7, 11))})
	got := f(&bf16Env{New(), tensor.BF16, rand.New(rand.NewPCG(7, 11))})
	require.Len(t, got, len(want))
	for i := range got {
		g, w := got[i], want[i]
		require.Equal(t, g.Shape(), w.Shape(), "result %d", i)
		if g.DType() != tensor.BF16 {
			require.Equal(t, w.Data, g.Data, "result %d (%v)", i, g)
			continue
		}
		require.Equal(t, tensor.F32, w.DType(), "result %d", i)
		gu, wf := g.U16(), w.F32()
		for j := range gu {
			if gu[j] != tensor.BF16FromF32(wf[j]) {
				t.Fatalf("result %d (%v) element %d: got %#04x, want round(%v) = %#04x", i, g, j, gu[j], wf[j], tensor.BF16FromF32(wf[j]))
			}
		}
	}
}

func TestBF16Norms(t *testing.T) {
	checkBF16(t, func(e *bf16Env) []*tensor.Tensor {
		x, w, bias := e.act(37, 48), e.f32(48), e.f32(48)
		out, rstd := e.act(37, 48), e.f32(37)
		e.b.RMSNorm(out, rstd, x, w, 1e-5)
		dout, dx, dw := e.act(37, 48), e.act(37, 48), e.f32(48)
		e.b.RMSNormBackward(dx, dw, dout, x, w, rstd)

		lout, mean, lrstd := e.act(37, 48), e.f32(37), e.f32(37)
		e.b.LayerNorm(lout, mean, lrstd, x, w, bias, 1e-5)
		ldx, ldw, ldb := e.act(37, 48), e.f32(48), e.f32(48)
		e.b.LayerNormBackward(ldx, ldw, ldb, dout, x, w, mean, lrstd)
		return []*tensor.Tensor{out, rstd, dx, dw, lout, mean, lrstd, ldx, ldw, ldb}
	})
}

func TestBF16Attention(t *testing.T) {
	p := kernels.AttnParams{Scale: 0.35, Causal: true, QOffset: 4, DropoutP: 0.1, DropoutSeed: 3}
	checkBF16(t, func(e *bf16Env) []*tensor.Tensor {
		q, k, v := e.act(2, 4, 19, 8), e.act(2, 2, 23, 8), e.act(2, 2, 23, 8) // GQA: 2 heads per group
		out, lse := e.act(2, 4, 19, 8), e.f32(2, 4, 19)
		e.b.Attention(out, lse, q, k, v, p)
		e.settle(out)
		dout := e.act(2, 4, 19, 8)
		dq, dk, dv := e.act(q.Shape()...), e.act(k.Shape()...), e.act(v.Shape()...)
		e.b.AttentionBackward(dq, dk, dv, dout, q, k, v, out, lse, p)
		return []*tensor.Tensor{out, lse, dq, dk, dv}
	})
}

func TestBF16RoPEAndQKV(t *testing.T) {
	checkBF16(t, func(e *bf16Env) []*tensor.Tensor {
		x := e.act(2, 3, 5, 8)
		e.b.RoPE(x, x, kernels.RoPEParams{Base: 10000, RotaryDim: 6, PosOffset: 3}) // in place
		e.settle(x)
		y := e.act(2, 3, 5, 8)
		e.b.RoPE(y, x, kernels.RoPEParams{Base: 500, Inverse: true})

		qkv := e.act(5, 2, 2*(2+2)*4)
		q, k, v := e.act(2, 4, 5, 4), e.act(2, 2, 5, 4), e.act(2, 2, 5, 4)
		e.b.SplitQKV(q, k, v, qkv, 2, 2)
		e.b.Scale(q, 0.3)
		e.settle(q)
		merged := e.act(qkv.Shape()...)
		e.b.MergeQKV(merged, q, k, v, 2, 2)
		return []*tensor.Tensor{x, y, q, k, v, merged}
	})
}

func TestBF16Elementwise(t *testing.T) {
	checkBF16(t, func(e *bf16Env) []*tensor.Tensor {
		x, y := e.act(9, 20), e.act(9, 20)
		e.b.Scale(x, 1.7) // in place: x is read and written
		e.settle(x)
		e.b.Axpy(y, -0.3, x)
		e.settle(y)
		sum, prod := e.act(9, 20), e.act(9, 20)
		e.b.Add(sum, x, y)
		e.settle(sum)
		e.b.Mul(prod, sum, y)
		e.settle(prod)
		e.b.Add(x, x, y) // out aliases a
		ss := tensor.FromF64([]float64{e.b.SumSquares(prod)}, 1)
		perm := e.act(20, 9)
		e.b.Permute(perm, prod, []int{1, 0})
		bias, db := e.f32(20), e.f32(20)
		e.b.AddBias(y, bias)
		e.b.BiasGrad(db, prod)
		filled := e.act(3, 5)
		e.b.Fill(filled, 1.0/3)
		return []*tensor.Tensor{x, y, sum, prod, ss, perm, db, filled}
	})
}

func TestBF16EmbeddingActivationsDropout(t *testing.T) {
	checkBF16(t, func(e *bf16Env) []*tensor.Tensor {
		ids := tensor.FromI64([]int64{3, 0, 9, 3, 12, 5}, 6)
		table, dtable := e.f32(10, 16), e.f32(10, 16)
		emb, demb := e.act(6, 16), e.act(6, 16)
		e.b.Embedding(emb, table, ids, 2)
		e.b.EmbeddingBackward(dtable, demb, ids, 2)

		x, sw, dsw := e.act(7, 24), e.act(7, 12), e.act(7, 24)
		e.b.SwiGLU(sw, x)
		e.settle(sw)
		e.b.SwiGLUBackward(dsw, sw, x)
		g, dg := e.act(7, 24), e.act(7, 24)
		e.b.GeLU(g, x, false)
		e.settle(g)
		e.b.GeLUBackward(dg, g, x, true)

		d, dd, mask := e.act(7, 24), e.act(7, 24), tensor.New(tensor.U8, 7, 24)
		e.b.Dropout(d, mask, x, 0.25, 42, 100)
		e.b.DropoutBackward(dd, g, mask, 0.25)
		return []*tensor.Tensor{emb, dtable, sw, dsw, g, dg, d, dd, mask}
	})
}

func TestBF16CrossEntropy(t *testing.T) {
	checkBF16(t, func(e *bf16Env) []*tensor.Tensor {
		targets := tensor.FromI64([]int64{5, 40, 17, 9, 1}, 5) // 40 and 1 outside [4, 35)
		logits := e.act(5, 31)
		mx, se, tl, dloss := e.f32(5), e.f32(5), e.f32(5), e.f32(5)
		e.b.RowMax(mx, logits)
		e.b.SumExp(se, logits, mx)
		e.b.TargetLogit(tl, logits, targets, 4)
		dlogits := e.act(5, 31)
		e.b.CrossEntropyBackward(dlogits, logits, mx, se, targets, dloss, 4)
		e.b.CrossEntropyBackward(logits, logits, mx, se, targets, dloss, 4) // in place
		return []*tensor.Tensor{mx, se, tl, dlogits, logits}
	})
}

func TestBF16Gemm(t *testing.T) {
	checkBF16(t, func(e *bf16Env) []*tensor.Tensor {
		// Batched, transposed, C with row and batch gaps (LDC 13 > N 11, StrideC 7·13+5).
		p := kernels.GemmParams{TransB: true, M: 7, N: 11, K: 9, Alpha: 0.7, Beta: -1.5,
			LDC: 13, Batch: 3, StrideA: 7 * 9, StrideB: 11 * 9, StrideC: 7*13 + 5}
		a, bm, c := e.act(3, 7, 9), e.act(3, 11, 9), e.act(3*(7*13+5))
		e.b.Gemm(p, a, bm, c)
		p0 := kernels.GemmParams{M: 1, N: 300, K: 64, Alpha: 1} // Beta 0: C is not read
		a0, b0, c0 := e.act(1, 64), e.act(64, 300), e.act(1, 300)
		e.b.Gemm(p0, a0, b0, c0)
		return []*tensor.Tensor{c, c0}
	})
}

// TestBF16GemmGaps checks that a BF16 C's elements outside its M×N blocks keep their
// bits, even NaN payloads that rounding would canonicalise.
func TestBF16GemmGaps(t *testing.T) {
	b := New()
	a, bm := tensor.New(tensor.BF16, 2, 3), tensor.New(tensor.BF16, 3, 2)
	c := tensor.New(tensor.BF16, 2, 4)
	for i := range c.U16() {
		c.U16()[i] = 0xFFC1
	}
	b.Gemm(kernels.GemmParams{M: 2, N: 2, K: 3, Alpha: 1, Beta: 0, LDC: 4}, a, bm, c)
	require.Equal(t, []uint16{0, 0, 0xFFC1, 0xFFC1, 0, 0, 0xFFC1, 0xFFC1}, c.U16())
}

func TestBF16CastWithAmax(t *testing.T) {
	checkBF16(t, func(e *bf16Env) []*tensor.Tensor {
		src := e.act(3, 1000)
		dst := tensor.New(tensor.F8E4M3, 3, 1000)
		amax := scalar(e.b.CastWithAmax(dst, src, 37))
		acc := scalar(0.5)
		dst2 := tensor.New(tensor.BF16, 3, 1000) // a cast target, compared as rounded F32 values
		e.b.CastWithAmaxInto(dst2, src, 0.25, acc)
		wide := tensor.New(tensor.F32, 3, 1000)
		e.b.Cast(wide, dst2)
		return []*tensor.Tensor{dst, amax, acc, wide}
	})
}

func requirePanics(t *testing.T, f func(), substrs ...string) {
	t.Helper()
	defer func() {
		t.Helper()
		r := recover()
		require.NotNil(t, r, "no panic")
		msg := fmt.Sprint(r)
		for _, s := range substrs {
			require.True(t, strings.Contains(msg, s), "panic %q lacks %q", msg, s)
		}
	}()
	f()
}

func TestBF16MixedPanics(t *testing.T) {
	b := New()
	x16, x32 := tensor.New(tensor.BF16, 4, 8), tensor.New(tensor.F32, 4, 8)
	w, rstd := tensor.New(tensor.F32, 8), tensor.New(tensor.F32, 4)
	requirePanics(t, func() { b.RMSNorm(x16, rstd, x32, w, 1e-5) }, "cpu.RMSNorm", "out bfloat16", "x float32")
	requirePanics(t, func() { b.Add(x32, x16, x16) }, "cpu.Add", "out float32", "a bfloat16")
	requirePanics(t, func() {
		b.Gemm(kernels.GemmParams{M: 4, N: 8, K: 8, Alpha: 1}, x32, tensor.New(tensor.BF16, 8, 8), x16)
	}, "cpu.Gemm", "must be BF16")
	// A BF16 weight is not an activation: the F32 check names it.
	requirePanics(t, func() { b.RMSNorm(x16, rstd, x16.Clone(), tensor.New(tensor.BF16, 8), 1e-5) }, "cpu.RMSNorm", "F32")
	// One scratch per storage cannot mirror a partial overlap.
	big := tensor.New(tensor.BF16, 5, 8)
	requirePanics(t, func() { b.Add(big.Slice(0, 4), big.Slice(1, 5), x16) }, "cpu.Add", "overlap")
}

// TestBF16NoLargeAllocs checks that after warm-up a BF16 call allocates only small
// per-call objects (its scratch is pooled).
func TestBF16NoLargeAllocs(t *testing.T) {
	if gemmRaceEnabled {
		t.Skip("the race detector makes sync.Pool drop items")
	}
	b := New()
	x := tensor.New(tensor.BF16, 256, 1024)
	w, rstd := tensor.FromF32(make([]float32, 1024), 1024), tensor.New(tensor.F32, 256)
	run := func() { b.RMSNorm(x, rstd, x, w, 1e-5) } // in place: out aliases x
	defer debug.SetGCPercent(debug.SetGCPercent(-1)) // a GC may empty the pools
	run()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 10 {
		run()
	}
	runtime.ReadMemStats(&after)
	require.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(64<<10), "BF16 RMSNorm allocates buffers per call")
}
