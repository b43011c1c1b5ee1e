// Package kernels defines Backend, the set of numerical operations every layer is built
// from. Each op has a forward and a backward; the doc comments give the math, which is the
// contract the CPU reference (kernels/cpu) and the CUDA backend (kernels/cuda) both meet.
//
// Conventions:
//   - Tensors are dense and row-major. Unless a comment says otherwise, elementwise and
//     normalisation ops take F32 tensors and compute in F32.
//   - BF16 activations: every op's activation operands (listed below) may instead be BF16,
//     all of one call's activations the same dtype. The op then widens them exactly, runs
//     the F32 math unchanged, and rounds each BF16 result once, to nearest even, when it
//     stores it; so a BF16 call equals the F32 call on the widened inputs with its
//     activation outputs rounded. Everything else stays F32: weights and biases (w, b,
//     bias, table), the gradients they accumulate (dw, db, dtable), saved statistics
//     (rstd, mean, lse), the cross-entropy row vectors (mx, se, tl, dloss), AdamW's
//     operands. Activations are: Fill's, Scale's, Axpy's, Add's, Mul's, Permute's and
//     SumSquares' tensors; q, k, v and qkv of SplitQKV/MergeQKV; AddBias' x, BiasGrad's
//     dout; Embedding's out, EmbeddingBackward's dout; out, x, dout and dx of the norms,
//     RoPE, SwiGLU, GeLU and Dropout; q, k, v, out, dout, dq, dk, dv of attention; logits
//     and dlogits of the cross-entropy pieces; CastWithAmax's src.
//   - Backward ops overwrite input gradients (dx) and ACCUMULATE parameter gradients (dw,
//     db, dtable: +=), so the grad buffers of several microbatches sum without extra copies.
//   - "rows" means the tensor viewed as [N, last dim]; N is the product of the leading dims.
//   - Ops never allocate on the hot path; scratch comes from the tensors passed in.
package kernels

import (
	"fmt"

	"github.com/gomegatron/gomegatron/tensor"
)

// GemmParams describes C[i] = Alpha·op(A[i])·op(B[i]) + Beta·C[i] for i < Batch, with
// op(X) = Xᵀ when the Trans flag is set. op(A) is M×K, op(B) is K×N and C is M×N, all
// row-major. LDA/LDB/LDC are row strides in elements (0 means packed: the row length of the
// stored matrix). StrideA/B/C are element strides between batch entries (0 with Batch 1).
type GemmParams struct {
	TransA, TransB            bool
	M, N, K                   int
	Alpha, Beta               float32
	LDA, LDB, LDC             int
	Batch                     int
	StrideA, StrideB, StrideC int
}

// StridedCopyParams describes the strided views of StridedCopy: Shape (rank 1 to 4) and,
// for dst and src, an element offset into the tensor's flat storage and one stride per
// dimension, in elements. Offsets, strides and dims are ≥ 0, and every element a view
// touches lies inside its tensor: Off + Σₖ (Shape[k]−1)·Stride[k] < Numel (an empty shape
// touches none).
type StridedCopyParams struct {
	Shape                []int
	DstOff, SrcOff       int
	DstStride, SrcStride []int
}

// Validate returns an error, naming the numbers, unless p is valid for a dst of dstNumel
// and a src of srcNumel elements.
func (p StridedCopyParams) Validate(dstNumel, srcNumel int) error {
	r := len(p.Shape)
	if r < 1 || r > 4 || len(p.DstStride) != r || len(p.SrcStride) != r {
		return fmt.Errorf("shape %v, dst strides %v, src strides %v: need rank 1..4 and one stride per dim", p.Shape, p.DstStride, p.SrcStride)
	}
	if p.DstOff < 0 || p.SrcOff < 0 {
		return fmt.Errorf("negative offset (dst %d, src %d)", p.DstOff, p.SrcOff)
	}
	empty := false
	for k, d := range p.Shape {
		if d < 0 || p.DstStride[k] < 0 || p.SrcStride[k] < 0 {
			return fmt.Errorf("shape %v, dst strides %v, src strides %v: negative dim or stride", p.Shape, p.DstStride, p.SrcStride)
		}
		empty = empty || d == 0
	}
	if empty {
		return nil
	}
	if err := viewInside("dst", p.DstOff, p.Shape, p.DstStride, dstNumel); err != nil {
		return err
	}
	return viewInside("src", p.SrcOff, p.Shape, p.SrcStride, srcNumel)
}

// viewInside checks that the last element of a non-empty view, off + Σₖ (shape[k]−1)·stride[k],
// is below numel, without overflowing.
func viewInside(name string, off int, shape, stride []int, numel int) error {
	last := off
	inside := off < numel
	for k, d := range shape {
		if !inside {
			break
		}
		if s := stride[k]; s > 0 && d > 1 {
			if d-1 > (numel-1-last)/s {
				inside = false
			} else {
				last += (d - 1) * s
			}
		}
	}
	if !inside {
		return fmt.Errorf("%s view (offset %d, shape %v, strides %v) reaches past its %d elements", name, off, shape, stride, numel)
	}
	return nil
}

// RoPEParams configures rotary position embedding in the rotate-half (GPT-NeoX, Hugging
// Face) layout. For d = RotaryDim, i < d/2, position p = PosOffset + s and
// θᵢ = Base^(−2i/d), a = p·θᵢ:
//
//	out[i]     = x[i]·cos a − x[i+d/2]·sin a
//	out[i+d/2] = x[i+d/2]·cos a + x[i]·sin a
//
// Channels ≥ RotaryDim (--rotary-percent < 1) pass through. Inverse rotates by −a, which is
// the backward of the forward rotation. Positions, when set, is an I32 tensor [B, S] on the
// backend holding each token's position p (Megatron's --reset-position-ids: positions
// restart after each end of document; context parallelism: a rank's tokens at their
// global positions), every one in [0, max(S, PosLimit)); PosOffset must then be 0.
// Interpolation f > 1 (Megatron's --rotary-seq-len-interpolation-factor, Hugging Face's
// linear rope_scaling) rotates position p by the angle of p·(1/f); 0 or 1 is none.
// Scaling (Llama 3.1's) rescales each θᵢ by its wavelength; see RoPEScaling.
type RoPEParams struct {
	Scaling       RoPEScaling
	Base          float64
	RotaryDim     int
	PosOffset     int
	Inverse       bool
	Positions     *tensor.Tensor
	PosLimit      int
	Interpolation float64
	// Interleaved rotates the pairs (2i, 2i+1) by θᵢ (RoFormer's layout, Megatron-Core's
	// --rotary-interleaved, ChatGLM's and GLM-4's) instead of (i, i+d/2).
	Interleaved bool
}

// RoPEScaling is Llama 3.1's frequency-dependent RoPE scaling (Hugging Face's rope_type
// "llama3", Megatron-Core's --use-rope-scaling): with wavelength λᵢ = 2π/θᵢ, L = OrigMaxPos,
// λ_low = L/LowFreqFactor and λ_high = L/HighFreqFactor,
//
//	θᵢ' = θᵢ                              λᵢ < λ_high
//	θᵢ' = θᵢ/Factor                       λᵢ > λ_low
//	θᵢ' = (1−s)·θᵢ/Factor + s·θᵢ,  s = (L/λᵢ − LowFreqFactor)/(HighFreqFactor − LowFreqFactor)
//
// Factor 0 is none.
//
// With YaRN (Hugging Face's rope_type "yarn", Megatron-Core's --position-embedding-type
// yarn) instead, for d rotary channels, ramp rᵢ = clamp((i − lo)/(hi − lo), 0, 1) over the
// correction range [lo, hi] of BetaFast and BetaSlow rotations in OrigMaxPos positions
// (dims d·ln(L/(2π·β))/(2·ln base), floored and ceiled with RoundCorrection),
//
//	θᵢ' = (θᵢ/Factor)·rᵢ + θᵢ·(1 − rᵢ)
//
// and cos and sin are multiplied by Concentration (YaRN's mscale; 0 is 1).
type RoPEScaling struct {
	Factor, LowFreqFactor, HighFreqFactor float64
	OrigMaxPos                            int
	YaRN                                  bool
	BetaFast, BetaSlow, Concentration     float64
	RoundCorrection                       bool
}

// Conc is the factor on cos and sin: YaRN's Concentration, else 1.
func (s RoPEScaling) Conc() float32 {
	if s.YaRN && s.Concentration != 0 {
		return float32(s.Concentration)
	}
	return 1
}

// AttnParams configures scaled dot-product attention.
//
// For query i (position QOffset+i) and key j, with GQA group g = h / (H/G):
//
//	s_ij = Scale·(q_i·k_j) + bias_hj          (bias added after scaling; BLOOM)
//	s_ij = Scale·(q_i·k_j + bias_hj)          (ALiBiBeforeScale; Falcon)
//	bias_hj = ALiBiSlopes[h]·j                (0 without ALiBi)
//	masked when Causal and j > QOffset+i, or SlidingWindow > 0 and j ≤ QOffset+i−SlidingWindow,
//	or KeyStart is set and j < KeyStart[b, i]
//	P = softmax_j(s), out_i = Σ_j P_ij v_j,  lse_i = log Σ_j exp(s_ij)
//
// KeyStart, when set, is an I32 tensor [B, S] on the backend (Megatron's
// --reset-attention-mask: documents packed in one sequence attend only within themselves;
// KeyStart[b, i] is the first position of query i's document, ≤ QOffset+i).
//
// Dropout (DropoutP > 0) keeps P_ij with probability 1 − DropoutP and scales the kept ones
// by 1/(1 − DropoutP) in out = Σ_j P̃_ij v_j (lse is the softmax's, before dropout). The
// element of batch b, head h (global index DropoutHead0 + h of DropoutHeads; 0 means H),
// query i and key j is kept iff Dropout's rule keeps counter
// DropoutOffset + ((b·heads + head)·S + i)·T + j under DropoutSeed, so heads split over
// tensor-parallel ranks draw a single process's masks, and backward redraws forward's.
type AttnParams struct {
	Causal           bool
	Scale            float32
	ALiBiSlopes      []float32
	ALiBiBeforeScale bool
	SlidingWindow    int
	QOffset          int

	KeyStart *tensor.Tensor

	DropoutP                   float32
	DropoutSeed, DropoutOffset uint64
	DropoutHeads, DropoutHead0 int
	// DropoutRows, when set, numbers the queries as rows QOffset+i of DropoutRows in the
	// dropout counter (context parallelism: a chunk's queries draw the whole sequence's
	// masks).
	DropoutRows int
}

// DropoutCounter is the dropout counter of attention element (b, h, i, j) for s queries
// and t keys (see AttnParams); with DropoutRows the queries count as rows QOffset+i of
// DropoutRows.
func (p AttnParams) DropoutCounter(heads, b, h, i, j, s, t int) uint64 {
	if p.DropoutHeads > 0 {
		heads = p.DropoutHeads
	}
	if p.DropoutRows > 0 {
		s, i = p.DropoutRows, p.QOffset+i
	}
	return p.DropoutOffset + ((uint64(b)*uint64(heads)+uint64(p.DropoutHead0+h))*uint64(s)+uint64(i))*uint64(t) + uint64(j)
}

// AdamParams are the hyper-parameters of one AdamW step (decoupled weight decay, bias
// correction), as torch.optim.AdamW and Megatron's FusedAdam:
//
//	p ← p·(1 − LR·WeightDecay)
//	m ← β1·m + (1−β1)·g,  v ← β2·v + (1−β2)·g²
//	p ← p − LR·(m/(1−β1^Step)) / (sqrt(v/(1−β2^Step)) + Eps)
type AdamParams struct {
	LR, Beta1, Beta2, Eps, WeightDecay float32
	Step                               int
}

// Backend is one device's implementation of every op.
type Backend interface {
	Name() string
	Device() tensor.Device

	// Alloc returns a zeroed tensor on the backend's device.
	Alloc(dt tensor.DType, shape ...int) *tensor.Tensor
	// Upload copies a host tensor into dst (same dtype and element count); Download the reverse.
	Upload(dst, src *tensor.Tensor)
	Download(dst, src *tensor.Tensor)
	// Sync waits for all queued work.
	Sync()

	// Gemm: see GemmParams. A and B are both F32, BF16 or F16; C is F32 (fp32 accumulate),
	// or BF16 when A and B are BF16: then Alpha·AB + Beta·C is formed in F32 from the
	// widened C and rounded once into C.
	Gemm(p GemmParams, a, b, c *tensor.Tensor)

	// Fill sets every element of x to v. Copy copies src into dst (same shape).
	Fill(x *tensor.Tensor, v float32)
	Copy(dst, src *tensor.Tensor)
	// Permute writes out = x with dimensions reordered: out.shape[i] = x.shape[perm[i]] (rank ≤ 4).
	Permute(out, x *tensor.Tensor, perm []int)
	// StridedCopy copies a strided view of src into a strided view of dst (see
	// StridedCopyParams); dst and src have the same dtype, F32 or BF16, and the elements'
	// bits are copied unchanged. For every index (i₀, …, iᵣ₋₁) of p.Shape,
	//
	//	dst.flat[DstOff + Σₖ iₖ·DstStride[k]] = src.flat[SrcOff + Σₖ iₖ·SrcStride[k]].
	//
	// Src strides may be 0 (broadcast); elements of dst outside the view are left
	// untouched. Dst strides that map two indices to one element, and a dst view that
	// overlaps the src view, are the caller's error (the result is then unspecified).
	StridedCopy(dst, src *tensor.Tensor, p StridedCopyParams)
	// SplitQKV unpacks Megatron's fused QKV output qkv [S, B, G·(R+2)·D], laid out per query
	// group as [R query heads | key | value], into q [B, G·R, S, D] and k, v [B, G, S, D].
	// MergeQKV is the inverse (used for the gradient).
	SplitQKV(q, k, v, qkv *tensor.Tensor, groups, qPerGroup int)
	MergeQKV(qkv, q, k, v *tensor.Tensor, groups, qPerGroup int)
	// Scale: x ← α·x.  Axpy: y ← y + α·x.  Add: out = a + b.  Mul: out = a ⊙ b.
	Scale(x *tensor.Tensor, alpha float32)
	Axpy(y *tensor.Tensor, alpha float32, x *tensor.Tensor)
	Add(out, a, b *tensor.Tensor)
	Mul(out, a, b *tensor.Tensor)
	// SumSquares returns Σ x² accumulated in float64 (gradient norms).
	SumSquares(x *tensor.Tensor) float64
	// AddBias adds bias[F] to every row of x[N, F]. BiasGrad: db[f] += Σ_n dout[n, f].
	AddBias(x, bias *tensor.Tensor)
	BiasGrad(db, dout *tensor.Tensor)
	// ScaleRows: x[r, f] ← s[r]·x[r, f] for x [R, F] and s [R] F32 (MoE routing scores).
	// RowDot: out[r] = Σ_f a[r, f]·b[r, f], summed in float64, into F32 out [R].
	ScaleRows(x, s *tensor.Tensor)
	RowDot(out, a, b *tensor.Tensor)

	// Embedding: out[n] = table[ids[n] − start] if start ≤ ids[n] < start+V, else 0
	// (the vocab-parallel lookup; start = 0 without TP). ids are I64 or I32. The table may
	// be F32 or BF16 (16-bit model weights), whatever out's dtype.
	Embedding(out, table, ids *tensor.Tensor, start int)
	// EmbeddingBackward: dtable[ids[n] − start] += dout[n] for the in-range ids.
	EmbeddingBackward(dtable, dout, ids *tensor.Tensor, start int)

	// RMSNorm over the last dim H: rstd = 1/sqrt(mean(x²) + eps), out = w ⊙ x·rstd.
	// rstd [N] is saved for backward.
	RMSNorm(out, rstd, x, w *tensor.Tensor, eps float32)
	// RMSNormBackward: with x̂ = x·rstd, dx = rstd·(w⊙dout − x̂·mean(w⊙dout⊙x̂)); dw += Σ_n dout⊙x̂.
	RMSNormBackward(dx, dw, dout, x, w, rstd *tensor.Tensor)
	// LayerNorm over the last dim (biased variance, eps inside the sqrt):
	// x̂ = (x − mean)·rstd, out = w⊙x̂ + b; mean and rstd [N] are saved for backward.
	LayerNorm(out, mean, rstd, x, w, b *tensor.Tensor, eps float32)
	// LayerNormBackward: with ĝ = w⊙dout, dx = rstd·(ĝ − mean(ĝ) − x̂·mean(ĝ⊙x̂));
	// dw += Σ_n dout⊙x̂, db += Σ_n dout.
	LayerNormBackward(dx, dw, db, dout, x, w, mean, rstd *tensor.Tensor)

	// RoPE rotates x [B, H, S, D] into out (may alias x); see RoPEParams.
	RoPE(out, x *tensor.Tensor, p RoPEParams)

	// Attention: q [B, H, S, D], k and v [B, G, T, D] with H % G == 0, out [B, H, S, D],
	// lse [B, H, S] (F32). See AttnParams. Computed with an online softmax, never the full
	// S×T score matrix at once.
	Attention(out, lse, q, k, v *tensor.Tensor, p AttnParams)
	// AttentionBackward: with P recomputed from lse, dP = dout·vᵀ, D_i = Σ_d dout_i·out_i,
	// dS = P⊙(dP − D), dq = Scale·dS·k, dk = Scale·dSᵀ·q (summed over the heads of a group),
	// dv = Pᵀ·dout. dq, dk, dv are overwritten.
	AttentionBackward(dq, dk, dv, dout, q, k, v, out, lse *tensor.Tensor, p AttnParams)

	// SwiGLU: x [N, 2F] holds [gate | up]; out [N, F] = silu(gate)⊙up, silu(z) = z·σ(z).
	SwiGLU(out, x *tensor.Tensor)
	// SwiGLUBackward: dgate = dout⊙up⊙σ(g)(1 + g(1−σ(g))), dup = dout⊙silu(g); dx [N, 2F].
	SwiGLUBackward(dx, dout, x *tensor.Tensor)
	// GeLU: exact 0.5x(1+erf(x/√2)), or with tanh the approximation
	// 0.5x(1+tanh(√(2/π)(x+0.044715x³))) (gelu_new / gelu_pytorch_tanh).
	GeLU(out, x *tensor.Tensor, tanh bool)
	GeLUBackward(dx, dout, x *tensor.Tensor, tanh bool)
	// SquaredReLU: out = max(x, 0)² (Megatron's --squared-relu); the backward
	// dx = dout·2·max(x, 0).
	SquaredReLU(out, x *tensor.Tensor)
	SquaredReLUBackward(dx, dout, x *tensor.Tensor)

	// Dropout: keep each element with probability 1−p (mask[i] = 1) and scale kept ones by
	// 1/(1−p); the mask (U8) is a pure function of (seed, offset + i), so recompute and
	// every backend draw the same mask. p = 0 copies x and sets the mask to 1.
	Dropout(out, mask, x *tensor.Tensor, p float32, seed, offset uint64)
	DropoutBackward(dx, dout, mask *tensor.Tensor, p float32)

	// Cross-entropy pieces over a logits shard [N, V] holding vocab ids [start, start+V),
	// so tensor parallelism can combine them (max over ranks, then sums over ranks):
	// RowMax: mx[n] = max_v logits[n, v].
	RowMax(mx, logits *tensor.Tensor)
	// SumExp: se[n] = Σ_v exp(logits[n, v] − mx[n]) for a given (global) mx.
	SumExp(se, logits, mx *tensor.Tensor)
	// TargetLogit: tl[n] = logits[n, t−start] if start ≤ t=targets[n] < start+V, else 0.
	TargetLogit(tl, logits, targets *tensor.Tensor, start int)
	// CrossEntropyBackward: loss_n = log se[n] + mx[n] − logit[n, t]; with the global mx and
	// se, dlogits[n, v] = (exp(logits[n, v] − mx[n])/se[n] − [v = t−start])·dloss[n].
	CrossEntropyBackward(dlogits, logits, mx, se, targets, dloss *tensor.Tensor, start int)

	// AdamW updates p (F32) in place from g, with moments m and v (F32); see AdamParams.
	AdamW(p, g, m, v *tensor.Tensor, h AdamParams)
	// CastWithAmax rounds src (F32 or BF16) times scale into dst (BF16, F16, F8E4M3, F8E5M2 with
	// saturation) and returns max|src| (the FP8 amax), computed before scaling.
	CastWithAmax(dst, src *tensor.Tensor, scale float32) float32
	// CastWithAmaxInto is CastWithAmax without the wait: amax (one F32 element on the
	// backend) becomes max(amax, max|src|), so delayed scaling reads all of a step's amaxes
	// once at its end.
	CastWithAmaxInto(dst, src *tensor.Tensor, scale float32, amax *tensor.Tensor)
	// Cast converts src into dst (same element count) among F32, BF16 and F16: into a
	// 16-bit type by rounding to nearest even (NaN stays NaN, F16 overflows to ±Inf), into
	// F32 exactly; F8E4M3 and F8E5M2 sources also widen into F32 exactly (dequantising the
	// output of CastWithAmax). It does not wait (unlike CastWithAmax).
	Cast(dst, src *tensor.Tensor)
	// Round rounds the F32 tensor x in place to the nearest dt value (BF16 or F16, ties to
	// even): x ← float32(dt(x)). Mixed-precision weights and fp16 gradients are F32
	// tensors holding exactly representable values.
	Round(x *tensor.Tensor, dt tensor.DType)
}

// MemoryStats are a device's memory figures as torch.cuda reports them: bytes allocated
// now and at most, bytes reserved now and at most, and live allocations.
type MemoryStats struct {
	Allocated, MaxAllocated, Reserved, MaxReserved uint64
	Allocations                                    int
}

// MemoryReporter is implemented by backends with device memory (kernels/cuda).
type MemoryReporter interface {
	MemoryStats() MemoryStats
}

// FP8Gemmer is implemented by backends with native FP8 GEMMs (kernels/cuda on Hopper and
// Ada): C = Alpha·A·Bᵀ with A [M, K] and B [N, K] in F8E4M3 or F8E5M2 (not both E5M2) and
// C F32 — GemmParams with TransB set and Beta 0. Fast selects the faster, less precise
// accumulation Transformer Engine uses in forward passes. It returns false, having done
// nothing, where the device or the shape cannot (then the caller dequantises and runs Gemm).
type FP8Gemmer interface {
	GemmFP8TN(p GemmParams, a, b, c *tensor.Tensor, fast bool) bool
}
