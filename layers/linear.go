package layers

import (
	"math"

	"github.com/gomegatron/gomegatron/kernels"
	"github.com/gomegatron/gomegatron/tensor"
)

// Linear is y = x·Wᵀ + b with W [out, in] (nn.Linear). Column-parallel (partition dim 0)
// holds out/TP rows of W and of b; row-parallel (dim 1) holds in/TP columns and the full b,
// which is added after the TP reduction. In and Out are the local sizes. B is nil without
// biases. The caller does the TP communication around the matmuls.
type Linear struct {
	W, B    *Param
	In, Out int
	// FP8 (SetFP8): delayed-scaling state, operand formats and the shared scratch.
	fp8            *fp8Meta
	fp8Fwd, fp8Bwd tensor.DType
	fp8WGrad       bool // the weight-gradient GEMM in FP8 too (Megatron's fp8_wgrad)
	sc             *fp8Scratch
	cast           *castScratch // the model's, for GEMMs on Param.Low
	// The step's quantised weight: FP8 codes of W and Wᵀ for native FP8 GEMMs, or W
	// dequantised for emulated ones. Weights and scales change only between steps, so it is
	// made once per step (wReady) for every microbatch. native: 0 undecided, 1 native
	// GEMMs, −1 emulated (the device or the shape declined).
	w8, wt8, wdq *tensor.Tensor
	wReady       bool
	native       int8
}

func newLinear(ps *paramSet, name string, in, out int, bias bool, partitionDim int) *Linear {
	l := &Linear{In: in, Out: out, cast: ps.cast}
	l.W = ps.add(name+".weight", partitionDim, out, in)
	l.Out, l.In = l.W.Shape[0], l.W.Shape[1]
	if bias {
		bdim := -1
		if partitionDim == 0 { // column-parallel bias is split with the rows
			bdim = 0
		}
		l.B = ps.add(name+".bias", bdim, out)
		l.B.NonGEMM = true
		if bdim < 0 {
			l.B.SequenceParallel = true
		}
	}
	return l
}

// Matmul computes y [N, out] = x [N, in]·Wᵀ, without the bias. Under FP8 both operands
// are quantised with their current scales and their amaxes recorded; with a 16-bit weight
// copy (Param.Low) the GEMM takes it and x cast to 16 bits.
func (l *Linear) Matmul(be kernels.Backend, y, x *tensor.Tensor) {
	f := l.fp8
	if f == nil {
		l.cast.forward(be, y, x, l.W)
		return
	}
	n := x.Numel() / l.In
	p := kernels.GemmParams{TransB: true, M: n, N: l.Out, K: l.In, Alpha: 1, Batch: 1}
	if g, ok := be.(kernels.FP8Gemmer); ok && l.native >= 0 {
		sx, sw := f.scale[fp8Input], f.scale[fp8Weight]
		xq := l.sc.codes("x", l.fp8Fwd, n, l.In)
		be.CastWithAmaxInto(xq, x.View(n, l.In), sx, f.slot(fp8Input))
		l.stepWeight(be, true)
		if g.GemmFP8TN(withAlpha(p, 1/(sx*sw)), xq, l.w8, y, true) {
			l.native = 1
			return
		}
		l.native, l.wReady = -1, false // emulate from now on
	}
	xq := l.sc.buf(&l.sc.x, x.Numel())
	l.sc.fakeQuant(xq, x, l.fp8Fwd, f.scale[fp8Input], f.slot(fp8Input))
	l.stepWeight(be, false)
	be.Gemm(p, xq, l.wdq, y)
}

func withAlpha(p kernels.GemmParams, alpha float32) kernels.GemmParams {
	p.Alpha = alpha
	return p
}

// castScratch runs the GEMMs of a linear map y = x·Wᵀ whatever the dtypes of the
// activations (F32 or BF16) and of the weight the GEMM reads (Param.Low when set, else the
// F32 Data): an activation in another dtype than that weight is cast into scratch, and an
// output the GEMM cannot write directly (BF16 from F32 operands) goes through F32 scratch.
// One per model, each slot grown to the largest operand.
type castScratch struct {
	be       kernels.Backend
	x, dy, y *tensor.Tensor
}

// slot returns the scratch slot *t as a dt tensor shaped like like, growing it as needed.
func (c *castScratch) slot(t **tensor.Tensor, dt tensor.DType, like *tensor.Tensor) *tensor.Tensor {
	n := like.Numel()
	if *t == nil || (*t).Numel() < n || (*t).DType() != dt {
		if f, ok := c.be.(interface{ Free(*tensor.Tensor) error }); ok && *t != nil {
			_ = f.Free(*t)
		}
		*t = c.be.Alloc(dt, n)
	}
	return (*t).Slice(0, n).View(like.Shape()...)
}

// as returns src in dtype dt: src itself, or src cast into the scratch slot *t.
func (c *castScratch) as(t **tensor.Tensor, src *tensor.Tensor, dt tensor.DType) *tensor.Tensor {
	if src.DType() == dt {
		return src
	}
	v := c.slot(t, dt, src)
	c.be.Cast(v, src)
	return v
}

// weight is the tensor the GEMMs read for w.
func weight(w *Param) *tensor.Tensor {
	if w.Low != nil {
		return w.Low
	}
	return w.Data
}

// gemm writes y = op(a)·op(b) (p.Beta 0) in y's dtype: a BF16 y from F32 operands is
// computed in F32 scratch and rounded once.
func (c *castScratch) gemm(be kernels.Backend, p kernels.GemmParams, a, b, y *tensor.Tensor) {
	if y.DType() == tensor.F32 || y.DType() == a.DType() {
		be.Gemm(p, a, b, y)
		return
	}
	tmp := c.slot(&c.y, tensor.F32, y)
	be.Gemm(p, a, b, tmp)
	be.Cast(y, tmp)
}

// forward: y [n, out] = x [n, in]·Wᵀ (x·W for an [in, out] weight).
func (c *castScratch) forward(be kernels.Backend, y, x *tensor.Tensor, w *Param) {
	out, in := w.Shape[0], w.Shape[1]
	if w.InOut {
		out, in = in, out
	}
	wt := weight(w)
	x = c.as(&c.x, x, wt.DType())
	c.gemm(be, kernels.GemmParams{TransB: !w.InOut, M: x.Numel() / in, N: out, K: in, Alpha: 1, Batch: 1}, x, wt, y)
}

// backward: dW += dyᵀ·x (xᵀ·dy for an [in, out] weight), and dx = dy·W (dy·Wᵀ) when dx
// is non-nil.
func (c *castScratch) backward(be kernels.Backend, dx, dy, x *tensor.Tensor, w *Param) {
	out, in := w.Shape[0], w.Shape[1]
	if w.InOut {
		out, in = in, out
	}
	n := x.Numel() / in
	wt := weight(w)
	dy, x = c.as(&c.dy, dy, wt.DType()), c.as(&c.x, x, wt.DType())
	if w.InOut {
		be.Gemm(kernels.GemmParams{TransA: true, M: in, N: out, K: n, Alpha: 1, Beta: 1, Batch: 1}, x, dy, w.Grad)
	} else {
		be.Gemm(kernels.GemmParams{TransA: true, M: out, N: in, K: n, Alpha: 1, Beta: 1, Batch: 1}, dy, x, w.Grad)
	}
	if dx != nil {
		c.gemm(be, kernels.GemmParams{TransB: w.InOut, M: n, N: in, K: out, Alpha: 1, Batch: 1}, dy, wt, dx)
	}
}

// stepWeight quantises W once per step (see Linear.wReady), recording its amax: as FP8
// codes of W and Wᵀ for native GEMMs, else dequantised into wdq.
func (l *Linear) stepWeight(be kernels.Backend, native bool) {
	if l.wReady {
		return
	}
	f := l.fp8
	sw := f.scale[fp8Weight]
	if native {
		if l.w8 == nil {
			l.w8, l.wt8 = be.Alloc(l.fp8Fwd, l.Out, l.In), be.Alloc(l.fp8Fwd, l.In, l.Out)
		}
		be.CastWithAmaxInto(l.w8, l.W.Data, sw, f.slot(fp8Weight))
		wt := l.sc.bufOf(&l.sc.w, l.W.Data.DType(), l.W.Data.Numel()).View(l.In, l.Out)
		be.Permute(wt, l.W.Data, []int{1, 0})
		be.CastWithAmaxInto(l.wt8, wt, sw, l.sc.sink)
	} else {
		if l.wdq == nil {
			l.wdq = be.Alloc(tensor.F32, l.Out, l.In)
		}
		l.sc.fakeQuant(l.wdq, l.W.Data, l.fp8Fwd, sw, f.slot(fp8Weight))
	}
	l.wReady = true
}

// AddBias adds b to every row of y.
func (l *Linear) AddBias(be kernels.Backend, y *tensor.Tensor) {
	if l != nil && l.B != nil {
		be.AddBias(y.View(y.Numel()/l.B.Data.Numel(), l.B.Data.Numel()), l.B.Value())
	}
}

// Forward is Matmul then AddBias (column-parallel layers, and any layer at TP=1).
func (l *Linear) Forward(be kernels.Backend, y, x *tensor.Tensor) {
	l.Matmul(be, y, x)
	l.AddBias(be, y)
}

// BiasGrad accumulates db += Σ_rows dy.
func (l *Linear) BiasGrad(be kernels.Backend, dy *tensor.Tensor) {
	if l != nil && l.B != nil {
		be.BiasGrad(l.B.Grad, dy.View(dy.Numel()/l.B.Data.Numel(), l.B.Data.Numel()))
	}
}

// WeightBackward accumulates dW += dyᵀ·x and writes dx = dy·W when dx is non-nil. Under
// FP8, dx uses the FP8 output gradient (E5M2 with the hybrid format) and weight, and so
// does dW with the FP8 input unless the recipe keeps weight gradients high precision.
func (l *Linear) WeightBackward(be kernels.Backend, dx, dy, x *tensor.Tensor) {
	f := l.fp8
	if f == nil {
		l.cast.backward(be, dx, dy, x, l.W)
		return
	}
	var dq *tensor.Tensor // dy quantised for emulated GEMMs, once for both
	if l.fp8WGrad {
		dq = l.wgradFP8(be, dy, x)
	} else {
		l.cast.backward(be, nil, dy, x, l.W)
	}
	if dx == nil {
		return
	}
	n := x.Numel() / l.In
	if g, ok := be.(kernels.FP8Gemmer); ok && l.native > 0 {
		// dx = dy·W as the TN product dy·(Wᵀ)ᵀ with the step's quantised Wᵀ.
		sg, sw := f.scale[fp8GradOut], f.scale[fp8Weight]
		codes := l.sc.codes("dy", l.fp8Bwd, n, l.Out)
		be.CastWithAmaxInto(codes, dy.View(n, l.Out), sg, f.slot(fp8GradOut))
		l.stepWeight(be, true)
		if g.GemmFP8TN(kernels.GemmParams{TransB: true, M: n, N: l.In, K: l.Out, Alpha: 1 / (sg * sw), Batch: 1}, codes, l.wt8, dx, false) {
			return
		}
		l.native, l.wReady = -1, false
	}
	if dq == nil {
		dq = l.sc.buf(&l.sc.dy, dy.Numel())
		l.sc.fakeQuant(dq, dy, l.fp8Bwd, f.scale[fp8GradOut], f.slot(fp8GradOut))
	}
	l.stepWeight(be, false)
	be.Gemm(kernels.GemmParams{M: n, N: l.In, K: l.Out, Alpha: 1, Batch: 1}, dq, l.wdq, dx)
}

// wgradFP8 accumulates dW += q(dy)ᵀ·q(x) as Transformer Engine's FP8 weight-gradient GEMM:
// the output gradient in the backward format with its scale, the input in the forward
// format with the input scale (the codes the forward used), products summed in fp32.
// Natively the GEMM is the TN product of the transposed codes, dyᵀ [out, n] and xᵀ [in, n].
// Emulated, it returns the dequantised dy for the input-gradient GEMM to reuse (else nil).
func (l *Linear) wgradFP8(be kernels.Backend, dy, x *tensor.Tensor) *tensor.Tensor {
	f, sc := l.fp8, l.sc
	n := x.Numel() / l.In
	sx, sg := f.scale[fp8Input], f.scale[fp8GradOut]
	if g, ok := be.(kernels.FP8Gemmer); ok && l.native > 0 {
		dyt := sc.bufOf(&sc.dyt, dy.DType(), dy.Numel()).View(l.Out, n)
		be.Permute(dyt, dy.View(n, l.Out), []int{1, 0})
		dq := sc.codes("dyT", l.fp8Bwd, l.Out, n)
		be.CastWithAmaxInto(dq, dyt, sg, f.slot(fp8GradOut))
		xt := sc.bufOf(&sc.xt, x.DType(), x.Numel()).View(l.In, n)
		be.Permute(xt, x.View(n, l.In), []int{1, 0})
		xq := sc.codes("xT", l.fp8Fwd, l.In, n)
		be.CastWithAmaxInto(xq, xt, sx, sc.sink)
		wg := sc.bufOf(&sc.wg, tensor.F32, l.Out*l.In).View(l.Out, l.In)
		if g.GemmFP8TN(kernels.GemmParams{TransB: true, M: l.Out, N: l.In, K: n, Alpha: 1 / (sg * sx), Batch: 1}, dq, xq, wg, false) {
			be.Axpy(l.W.Grad, 1, wg)
			return nil
		}
	}
	dq := sc.buf(&sc.dy, dy.Numel())
	sc.fakeQuant(dq, dy, l.fp8Bwd, sg, f.slot(fp8GradOut))
	xq := sc.buf(&sc.x, x.Numel())
	sc.fakeQuant(xq, x, l.fp8Fwd, sx, sc.sink)
	be.Gemm(kernels.GemmParams{TransA: true, M: l.Out, N: l.In, K: n, Alpha: 1, Beta: 1, Batch: 1}, dq, xq, l.W.Grad)
	return dq
}

// Backward is WeightBackward plus the bias gradient from the same dy.
func (l *Linear) Backward(be kernels.Backend, dx, dy, x *tensor.Tensor) {
	l.WeightBackward(be, dx, dy, x)
	l.BiasGrad(be, dy)
}

// Norm is LayerNorm or RMSNorm over the hidden dimension.
type Norm struct {
	W, B *Param // B is nil for RMSNorm
	Eps  float32
	// onePlus (--apply-layernorm-1p): W holds γ − 1, so the norm scales by 1 + W (in
	// w1, made each call from ones: W changes every step).
	onePlus  bool
	w1, ones *tensor.Tensor
}

func newNorm(ps *paramSet, name string, cfg *Config, h int) *Norm {
	n := &Norm{Eps: float32(cfg.NormEpsilon), onePlus: cfg.ApplyLayernorm1p}
	n.W = ps.add(name+".weight", -1, h)
	n.W.SequenceParallel, n.W.NonGEMM = true, true
	if cfg.Normalization == "LayerNorm" {
		n.B = ps.add(name+".bias", -1, h)
		n.B.SequenceParallel, n.B.NonGEMM = true, true
	}
	return n
}

// newPartialNorm is a norm of width h whose weight every TP rank holds whole but whose
// output only feeds the rank's own heads, so the grads are summed over TP (HeadPartial):
// --qk-layernorm's q_layernorm and k_layernorm over each head's KVChannels, and
// multi-latent attention's over its latents.
func newPartialNorm(ps *paramSet, name string, cfg *Config, h int) *Norm {
	n := newNorm(ps, name, cfg, h)
	for _, p := range []*Param{n.W, n.B} {
		if p != nil {
			p.SequenceParallel, p.HeadPartial, p.Unfused = false, true, true
		}
	}
	return n
}

// rowsOf views a [b, heads, s, hn] tensor as its b·heads·s rows of hn.
func rowsOf(x *tensor.Tensor) *tensor.Tensor {
	return x.View(x.Numel()/x.Dim(x.Rank()-1), x.Dim(x.Rank()-1))
}

// normStash keeps what a norm's backward needs.
type normStash struct{ mean, rstd *tensor.Tensor }

func newNormStash(be kernels.Backend, rows int) normStash {
	return normStash{mean: be.Alloc(tensor.F32, rows), rstd: be.Alloc(tensor.F32, rows)}
}

// weight is the scale the norm applies: W, or 1 + W with --apply-layernorm-1p (whose
// gradient is W's).
func (n *Norm) weight(be kernels.Backend) *tensor.Tensor {
	w := n.W.Value()
	if !n.onePlus {
		return w
	}
	if n.w1 == nil {
		n.w1, n.ones = be.Alloc(tensor.F32, w.Shape()...), be.Alloc(tensor.F32, w.Shape()...)
		be.Fill(n.ones, 1)
	}
	if w.DType() == tensor.F32 {
		be.Copy(n.w1, w)
	} else {
		be.Cast(n.w1, w)
	}
	be.Axpy(n.w1, 1, n.ones)
	return n.w1
}

// Forward normalises x [N, h] into out.
func (n *Norm) Forward(be kernels.Backend, out, x *tensor.Tensor, st normStash) {
	if n.B == nil {
		be.RMSNorm(out, st.rstd, x, n.weight(be), n.Eps)
		return
	}
	be.LayerNorm(out, st.mean, st.rstd, x, n.weight(be), n.B.Value(), n.Eps)
}

// Backward writes dx and accumulates the weight (and bias) grads.
func (n *Norm) Backward(be kernels.Backend, dx, dout, x *tensor.Tensor, st normStash) {
	if n.B == nil {
		be.RMSNormBackward(dx, n.W.Grad, dout, x, n.weight(be), st.rstd)
		return
	}
	be.LayerNormBackward(dx, n.W.Grad, n.B.Grad, dout, x, n.weight(be), st.mean, st.rstd)
}

// initShard fills a parameter with this rank's shard of full tensors drawn from a
// generator keyed by (seed, InitKey) (per expert in a GroupedMLP weight), so every layout
// gets the same values: N(0, std²), or Xavier-uniform when xavier is set.
func initShard(be kernels.Backend, p *Param, std float64, xavier bool, seed uint64, rank, size int) {
	local, _ := p.LocalFrom(func(q *Param) ([]float32, error) {
		full := make([]float32, tensor.ShapeNumel(q.FullShape))
		if xavier {
			fillUniform(full, seed^fnv64(q.InitKey), math.Sqrt(6/float64(q.FullShape[0]+q.FullShape[1])))
		} else {
			fillNormal(full, seed^fnv64(q.InitKey), std)
		}
		return full, nil
	}, rank, size)
	be.Upload(p.Data, tensor.FromF32(local, p.Data.Shape()...))
}

// fnv64 is FNV-1a, to key the initialisation generator by parameter name.
func fnv64(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}
