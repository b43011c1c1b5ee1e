package layers

import (
	"fmt"

	"github.com/gomegatron/gomegatron/kernels"
	"github.com/gomegatron/gomegatron/tensor"
)

// TransformerLayer is Megatron's pre-norm GPT layer (local spec):
//
//	x' = x + dropout(linear_proj(attn(input_layernorm(x))))
//	y  = x' + dropout(linear_fc2(act(linear_fc1(pre_mlp_layernorm(x')))))
//
// With ParallelAttention (Falcon-7B) both branches read input_layernorm(x) and
// y = x + attn + mlp. With ApplyResidualConnectionPostLayernorm the residuals are the
// layernorm outputs instead of the layer inputs.
//
// Tensor parallelism: linear_qkv and linear_fc1 are column-parallel (this rank's heads, query
// groups and FFN columns), linear_proj and linear_fc2 row-parallel; their partial outputs are
// all-reduced, or with sequence parallelism reduce-scattered to [s/TP, b, h] after the norms'
// inputs were all-gathered.
type TransformerLayer struct {
	cfg      *Config
	par      Parallel
	Index    int // global layer number
	InNorm   *Norm
	QKV      *Linear
	QNorm    *Norm // --qk-layernorm: q_layernorm and k_layernorm, over each head's KVChannels
	KNorm    *Norm
	MLA      *mlaAttn // --multi-latent-attention: its projections instead of QKV
	Proj     *Linear
	PreMLP   *Norm   // nil with ParallelAttention, unless ParallelMLPNorm
	FC1, FC2 *Linear // nil in MoE layers
	MoE      *MoE    // --num-experts: the MLP is a mixture of experts
	cast     *castScratch
	cpx      *cpScratch // the model's context-parallel staging
	params   []*Param   // the layer's parameters
	slopes   []float32  // this rank's heads' ALiBi slopes
	heads    int        // local query heads
	groups   int        // local query groups
}

func newTransformerLayer(ps *paramSet, cfg *Config, par Parallel, global, local int) *TransformerLayer {
	pre := fmt.Sprintf("decoder.layers.%d.", local)
	h := cfg.HiddenSize
	tp := par.tpSize()
	l := &TransformerLayer{cfg: cfg, par: par, Index: global, cast: ps.cast, cpx: ps.cpx,
		heads: cfg.NumAttentionHeads / tp, groups: cfg.NumQueryGroups / tp}
	start := len(ps.all)
	l.InNorm = newNorm(ps, pre+"input_layernorm", cfg, h)
	vWidth := cfg.KVChannels
	if cfg.MultiLatentAttention {
		vWidth = cfg.VHeadDim
	}
	// Megatron-Core's Attention registers linear_proj before its subclasses' projections, so
	// named_parameters, the grad buffers and distrib_optim.pt have it first.
	l.Proj = newLinear(ps, pre+"self_attention.linear_proj", cfg.NumAttentionHeads*vWidth, h, cfg.AddBiasLinear(), 1)
	switch {
	case cfg.MultiLatentAttention:
		l.MLA = newMLA(ps, pre, cfg, l.heads)
	default:
		l.QKV = newLinear(ps, pre+"self_attention.linear_qkv", h, cfg.QKVDim(), cfg.AddBiasLinear() || cfg.AddQKVBias, 0)
		if cfg.QKLayernorm {
			l.QNorm = newPartialNorm(ps, pre+"self_attention.q_layernorm", cfg, cfg.KVChannels)
			l.KNorm = newPartialNorm(ps, pre+"self_attention.k_layernorm", cfg, cfg.KVChannels)
		}
	}
	if !cfg.ParallelAttention || cfg.ParallelMLPNorm {
		l.PreMLP = newNorm(ps, pre+"pre_mlp_layernorm", cfg, h)
	}
	if cfg.IsMoELayer(global) {
		l.MoE = newMoE(ps, pre, global, cfg, par, ps.auxScale)
		l.PreMLP.W.Unfused = true
		if l.PreMLP.B != nil {
			l.PreMLP.B.Unfused = true
		}
	} else {
		l.FC1 = newLinear(ps, pre+"mlp.linear_fc1", h, cfg.FC1Dim(), cfg.AddBiasLinear(), 0)
		l.FC1.W.GLU = cfg.SwiGLU
		if l.FC1.B != nil {
			l.FC1.B.GLU = cfg.SwiGLU
		}
		l.FC2 = newLinear(ps, pre+"mlp.linear_fc2", cfg.FFNHiddenSize, h, cfg.AddBiasLinear(), 1)
	}
	for _, p := range ps.all[start:] { // initialise from the global name
		if !p.Expert { // experts name their global expert already
			p.InitKey = fmt.Sprintf("decoder.layers.%d.", global) + p.Name[len(pre):]
		}
	}
	l.params = ps.all[start:len(ps.all):len(ps.all)]
	if cfg.PositionEmbeddingType == "alibi" {
		r := par.tpRank()
		l.slopes = ALiBiSlopes(cfg.NumAttentionHeads)[r*l.heads : (r+1)*l.heads]
	}
	return l
}

// layerStash holds one microbatch's activations of one layer: what Backward needs.
// Tensors with an f suffix are full-sequence [N, ·]; without, this rank's rows [Nl, ·]
// (the same tensor when sequence parallelism is off).
type layerStash struct {
	x                  *tensor.Tensor // layer input (owned by the caller)
	ln1, ln1f          *tensor.Tensor
	h1, ln2, ln2f, out *tensor.Tensor
	n1, n2             normStash
	qkv                *tensor.Tensor // [N, qkv/TP] (nil with multi-latent attention)
	mla                *mlaStash      // multi-latent attention's latents
	q, k, v, o         *tensor.Tensor // [b, heads/TP, s, hn]
	qIn, kIn           *tensor.Tensor // --qk-layernorm: q and k before their norms
	nq, nk             normStash
	lse                *tensor.Tensor // [b, np/TP, s]
	o2                 *tensor.Tensor // [N, np/TP·hn]
	ap, a, mp, m       *tensor.Tensor // partial [N, h] and reduced [Nl, h] branch outputs
	mask1, mask2       *tensor.Tensor // dropout masks (U8) [Nl, h]
	f, g               *tensor.Tensor // fc1 output [N, fc1/TP], activation output [N, ffn/TP]
	dropSeed, dropOffs uint64
	// The microbatch's per-token RoPE positions and document starts [b, s] (I32), or nil:
	// --reset-position-ids and --reset-attention-mask (Batch.Positions, Batch.DocStart).
	positions, keyStart *tensor.Tensor
	keyChunks           [2]*tensor.Tensor // keyStart of each context-parallel chunk
	moe                 *moeStash         // MoE layers: routing and expert activations
	cp                  *cpStash          // context parallelism: gathered keys and values, chunks
}

// rowPair allocates a full [N, h] tensor and, with SP, a separate local [N/TP, h] one.
func rowPair(be kernels.Backend, dt tensor.DType, sp bool, n, nl, h int) (full, local *tensor.Tensor) {
	full = be.Alloc(dt, n, h)
	if !sp {
		return full, full
	}
	return full, be.Alloc(dt, nl, h)
}

// newStash allocates one microbatch's activations in dtype act (lse and the norms'
// statistics stay F32).
func (l *TransformerLayer) newStash(be kernels.Backend, act tensor.DType, s, b int) *layerStash {
	c := l.cfg
	sp := l.par.sp()
	n, h, hn := s*b, c.HiddenSize, c.KVChannels
	nl := n / l.par.tpSize()
	if !sp {
		nl = n
	}
	a := func(shape ...int) *tensor.Tensor { return be.Alloc(act, shape...) }
	st := &layerStash{
		h1: a(nl, h), out: a(nl, h),
		n1: newNormStash(be, nl), n2: newNormStash(be, nl),
		q: a(b, l.heads, s, hn), k: a(b, l.groups, s, hn), v: a(b, l.groups, s, hn),
		o: a(b, l.heads, s, hn), lse: be.Alloc(tensor.F32, b, l.heads, s),
		o2: a(n, l.Proj.In),
	}
	if l.MLA != nil {
		st.mla = l.MLA.newStash(be, act, l.par.tpSize(), s, b)
	} else {
		st.qkv = a(n, l.QKV.Out)
	}
	if l.QNorm != nil {
		st.qIn, st.kIn = a(b, l.heads, s, hn), a(b, l.groups, s, hn)
		st.nq, st.nk = newNormStash(be, b*l.heads*s), newNormStash(be, b*l.groups*s)
	}
	if l.MoE != nil {
		st.moe = l.MoE.newStash(be, act, n)
	} else {
		st.f, st.g = a(n, l.FC1.Out), a(n, l.FC2.In)
	}
	if l.par.cpSize() > 1 {
		st.cp = l.newCPStash(be, act, s, b)
	}
	st.ln1f, st.ln1 = rowPair(be, act, sp, n, nl, h)
	st.ap, st.a = rowPair(be, act, sp, n, nl, h)
	st.mp, st.m = rowPair(be, act, sp, n, nl, h)
	if l.PreMLP != nil {
		st.ln2f, st.ln2 = rowPair(be, act, sp, n, nl, h)
	}
	if c.HiddenDropout > 0 {
		st.mask1, st.mask2 = be.Alloc(tensor.U8, nl, h), be.Alloc(tensor.U8, nl, h)
	}
	return st
}

// layerGrads is backward scratch shared by all layers (they run one at a time).
type layerGrads struct {
	dqkv, dq, dk, dv, do, do2 *tensor.Tensor
	mla                       *mlaGrads
	dqIn, dkIn                *tensor.Tensor // --qk-layernorm: grads of q and k before their norms
	df, dg                    *tensor.Tensor
	dlnf, dln                 *tensor.Tensor // partial d(norm output) [N, h] and reduced rows
	dmf, dm                   *tensor.Tensor // branch-output grads gathered [N, h] and local
	dh1, dsave                *tensor.Tensor
	moe                       *moeGrads
	cp                        *cpGrads
}

func (l *TransformerLayer) newGrads(be kernels.Backend, act tensor.DType, s, b int) *layerGrads {
	c := l.cfg
	sp := l.par.sp()
	n, h, hn := s*b, c.HiddenSize, c.KVChannels
	nl := n / l.par.tpSize()
	if !sp {
		nl = n
	}
	a := func(shape ...int) *tensor.Tensor { return be.Alloc(act, shape...) }
	g := &layerGrads{
		dq: a(b, l.heads, s, hn), dk: a(b, l.groups, s, hn), dv: a(b, l.groups, s, hn),
		do: a(b, l.heads, s, hn), do2: a(n, l.Proj.In), dh1: a(nl, h),
	}
	if l.MLA != nil {
		g.mla = l.MLA.newGrads(be, act, l.par.tpSize(), s, b, h)
	} else {
		g.dqkv = a(n, l.QKV.Out)
	}
	if l.QNorm != nil {
		g.dqIn, g.dkIn = a(b, l.heads, s, hn), a(b, l.groups, s, hn)
	}
	if l.MoE != nil {
		g.moe = l.MoE.newGrads(be, act, n, nl)
	} else {
		g.df, g.dg = a(n, l.FC1.Out), a(n, l.FC2.In)
	}
	if l.par.cpSize() > 1 {
		g.cp = l.newCPGrads(be, act, s, b)
	}
	g.dlnf, g.dln = rowPair(be, act, sp, n, nl, h)
	g.dmf, g.dm = rowPair(be, act, sp, n, nl, h)
	if c.ParallelAttention {
		g.dsave = a(n, h)
	}
	return g
}

// completeStash adds to st, made by another layer, the MLP activations this layer needs:
// with --moe-layer-freq, MoE and dense layers share recomputation stashes.
func (l *TransformerLayer) completeStash(be kernels.Backend, st *layerStash, act tensor.DType, s, b int) {
	n := s * b
	if l.MoE != nil && st.moe == nil {
		st.moe = l.MoE.newStash(be, act, n)
	} else if l.MoE == nil && st.f == nil {
		st.f, st.g = be.Alloc(act, n, l.FC1.Out), be.Alloc(act, n, l.FC2.In)
	}
}

// completeGrads adds to g, made by another layer, the MLP scratch this layer's backward
// needs (the layers share one layerGrads).
func (l *TransformerLayer) completeGrads(be kernels.Backend, g *layerGrads, act tensor.DType, s, b int) {
	n := s * b
	if l.MoE != nil && g.moe == nil {
		nl := n
		if l.par.sp() {
			nl = n / l.par.tpSize()
		}
		g.moe = l.MoE.newGrads(be, act, n, nl)
	} else if l.MoE == nil && g.df == nil {
		g.df, g.dg = be.Alloc(act, n, l.FC1.Out), be.Alloc(act, n, l.FC2.In)
	}
}

func (l *TransformerLayer) attnParams() kernels.AttnParams {
	c := l.cfg
	return kernels.AttnParams{
		Causal: true, Scale: float32(c.SoftmaxScale()),
		ALiBiSlopes: l.slopes, ALiBiBeforeScale: c.ALiBiBeforeScale, SlidingWindow: c.SlidingWindow,
	}
}

// attnSeedSalt separates the attention-dropout streams from the hidden-dropout ones, and
// jitterSeedSalt the MoE router's jitter.
const (
	attnSeedSalt   = 0x5851F42D4C957F2D
	jitterSeedSalt = 0x2545F4914F6CDD1D
)

// trainAttnParams adds --attention-dropout for a training step: a stream per layer (its
// seed salted with the global layer number) whose counters start at the layer's dropout
// offset for this step (steps lie 2⁴⁰ apart), heads numbered globally so every TP layout
// draws the same masks.
func (l *TransformerLayer) trainAttnParams(st *layerStash) kernels.AttnParams {
	p := l.attnParams()
	p.KeyStart = st.keyStart
	if d := l.cfg.AttentionDropout; d > 0 {
		p.DropoutP = float32(d)
		p.DropoutSeed = st.dropSeed ^ attnSeedSalt*uint64(l.Index+1)
		p.DropoutOffset = st.dropOffs
		p.DropoutHeads, p.DropoutHead0 = l.cfg.NumAttentionHeads, l.par.tpRank()*l.heads
	}
	return p
}

func (l *TransformerLayer) rope(inverse bool) kernels.RoPEParams {
	return kernels.RoPEParams{Base: l.cfg.RotaryBase, RotaryDim: l.cfg.RotaryDim(), Inverse: inverse, Interleaved: l.cfg.RotaryInterleaved,
		Interpolation: l.cfg.RotarySeqLenInterpolationFactor, Scaling: l.cfg.RoPEScaling()}
}

// trainRoPE is rope with the microbatch's per-token positions (--reset-position-ids, and
// context parallelism's global positions, below S·CP).
func (l *TransformerLayer) trainRoPE(st *layerStash, inverse bool) kernels.RoPEParams {
	p := l.rope(inverse)
	p.Positions = st.positions
	if st.cp != nil {
		p.PosLimit = st.cp.S
	}
	return p
}

// attention runs qkv → rope → core attention → o2 (the input of linear_proj) on lnf.
func (l *TransformerLayer) attention(be kernels.Backend, st *layerStash, lnf *tensor.Tensor) error {
	c := l.cfg
	if l.MLA != nil {
		if err := l.MLA.forward(be, l.par, st.mla, st.q, st.k, st.v, lnf, l.trainRoPE(st, false)); err != nil {
			return err
		}
	} else if l.QKV.Forward(be, st.qkv, lnf); l.QNorm != nil {
		be.SplitQKV(st.qIn, st.kIn, st.v, st.qkv, l.groups, l.heads/l.groups)
		l.QNorm.Forward(be, rowsOf(st.q), rowsOf(st.qIn), st.nq)
		l.KNorm.Forward(be, rowsOf(st.k), rowsOf(st.kIn), st.nk)
	} else {
		be.SplitQKV(st.q, st.k, st.v, st.qkv, l.groups, l.heads/l.groups)
	}
	if c.Rotary() && l.MLA == nil {
		be.RoPE(st.q, st.q, l.trainRoPE(st, false))
		be.RoPE(st.k, st.k, l.trainRoPE(st, false))
	}
	if st.cp != nil {
		if err := l.cpAttention(be, st); err != nil {
			return err
		}
	} else {
		be.Attention(st.o, st.lse, st.q, st.k, st.v, l.trainAttnParams(st))
	}
	l.mergeHeads(be, st.o2, st.o, st.mla)
	return nil
}

// mergeHeads writes the heads' outputs o [b, np, s, hn] as linear_proj's input o2
// [s·b, np·width], width hn or multi-latent attention's v-head-dim (o's first channels,
// by ms's views).
func (l *TransformerLayer) mergeHeads(be kernels.Backend, o2, o *tensor.Tensor, ms *mlaStash) {
	b, np, s, hn := o.Dim(0), o.Dim(1), o.Dim(2), o.Dim(3)
	if l.MLA != nil {
		be.StridedCopy(o2, o, ms.vw.o)
		return
	}
	be.Permute(o2.View(s, b, np, hn), o, []int{2, 0, 1, 3})
}

// attentionBackward takes d(o2) in g.do2 and leaves the partial d(lnf) in g.dlnf.
func (l *TransformerLayer) attentionBackward(be kernels.Backend, st *layerStash, g *layerGrads, lnf *tensor.Tensor) error {
	c := l.cfg
	b, np, s, hn := st.o.Dim(0), st.o.Dim(1), st.o.Dim(2), st.o.Dim(3)
	if l.MLA != nil {
		if l.MLA.dv < hn {
			be.Fill(g.do, 0)
		}
		be.StridedCopy(g.do, g.do2, swap(st.mla.vw.o))
	} else {
		be.Permute(g.do, g.do2.View(s, b, np, hn), []int{1, 2, 0, 3})
	}
	if st.cp != nil {
		if err := l.cpAttentionBackward(be, st, g); err != nil {
			return err
		}
	} else {
		be.AttentionBackward(g.dq, g.dk, g.dv, g.do, st.q, st.k, st.v, st.o, st.lse, l.trainAttnParams(st))
	}
	if l.MLA != nil {
		return l.MLA.backward(be, l.par, st.mla, g.mla, g.dlnf, g.dq, g.dk, g.dv, lnf, l.trainRoPE(st, false))
	}
	if c.Rotary() {
		be.RoPE(g.dq, g.dq, l.trainRoPE(st, true))
		be.RoPE(g.dk, g.dk, l.trainRoPE(st, true))
	}
	if l.QNorm != nil {
		l.QNorm.Backward(be, rowsOf(g.dqIn), rowsOf(g.dq), rowsOf(st.qIn), st.nq)
		l.KNorm.Backward(be, rowsOf(g.dkIn), rowsOf(g.dk), rowsOf(st.kIn), st.nk)
		be.MergeQKV(g.dqkv, g.dqIn, g.dkIn, g.dv, l.groups, l.heads/l.groups)
	} else {
		be.MergeQKV(g.dqkv, g.dq, g.dk, g.dv, l.groups, l.heads/l.groups)
	}
	l.QKV.Backward(be, g.dlnf, g.dqkv, lnf)
	return nil
}

// mlp runs fc1 → activation → fc2 (without its bias) on lnf into st.mp, or the experts.
func (l *TransformerLayer) mlp(be kernels.Backend, st *layerStash, lnf *tensor.Tensor) error {
	if l.MoE != nil {
		st.moe.seqs = st.o.Dim(0)
		st.moe.jitterSeed, st.moe.jitterOffs = st.dropSeed^jitterSeedSalt*uint64(l.Index+1), st.dropOffs
		return l.MoE.Forward(be, l.cast, st.moe, st.mp, lnf)
	}
	l.FC1.Forward(be, st.f, lnf)
	l.cfg.activation(be, st.g, st.f)
	l.FC2.Matmul(be, st.mp, st.g)
	return nil
}

// mlpBackward takes the gathered d(mp) in g.dmf and leaves the partial d(lnf) in g.dlnf
// (in MoE layers the router's d(ln) of this rank's rows in g.moe.dxr).
func (l *TransformerLayer) mlpBackward(be kernels.Backend, st *layerStash, g *layerGrads, lnf *tensor.Tensor) error {
	if l.MoE != nil {
		lo := 0
		if l.par.sp() {
			lo = l.par.tpRank() * st.ln2.Dim(0)
		}
		return l.MoE.Backward(be, l.cast, st.moe, g.moe, g.dlnf, g.dmf, lnf, st.ln2, lo)
	}
	l.FC2.WeightBackward(be, g.dg, g.dmf, st.g)
	l.cfg.activationBackward(be, g.df, g.dg, st.f)
	l.FC1.Backward(be, g.dlnf, g.df, lnf)
	return nil
}

func (l *TransformerLayer) dropout(be kernels.Backend, x, mask *tensor.Tensor, offset uint64, st *layerStash) {
	if p := float32(l.cfg.HiddenDropout); p > 0 {
		segs, n := l.par.dropoutSegments(x.Dim(0), x.Dim(1))
		for _, sg := range segs[:n] {
			xs := x.Slice(sg.lo, sg.hi)
			be.Dropout(xs, mask.Slice(sg.lo, sg.hi), xs, p, st.dropSeed, st.dropOffs+offset+sg.off)
		}
	}
}

// dropoutGrad writes into dst the gradient through the dropout that produced a branch output.
func (l *TransformerLayer) dropoutGrad(be kernels.Backend, dst, dout, mask *tensor.Tensor) {
	if p := float32(l.cfg.HiddenDropout); p > 0 {
		be.DropoutBackward(dst, dout, mask, p)
		return
	}
	be.Copy(dst, dout)
}

// branchOut reduces a row-parallel partial output over TP, adds the bias and applies dropout.
func (l *TransformerLayer) branchOut(be kernels.Backend, st *layerStash, lin *Linear, local, partial, mask *tensor.Tensor, offset uint64, what string) error {
	if err := l.par.reduceRows(local, partial, what); err != nil {
		return err
	}
	lin.AddBias(be, local)
	l.dropout(be, local, mask, offset, st)
	return nil
}

// Forward computes st.out from this rank's rows x.
func (l *TransformerLayer) Forward(be kernels.Backend, st *layerStash, x *tensor.Tensor) error {
	c := l.cfg
	st.x = x
	l.InNorm.Forward(be, st.ln1, x, st.n1)
	if err := l.par.gatherRows(st.ln1f, st.ln1, "input_layernorm output"); err != nil {
		return err
	}
	if err := l.attention(be, st, st.ln1f); err != nil {
		return err
	}
	l.Proj.Matmul(be, st.ap, st.o2)
	n := uint64(st.ln1f.Numel() * l.par.cpSize()) // the whole [N, h]: the second dropout's counters follow the first's
	if err := l.branchOut(be, st, l.Proj, st.a, st.ap, st.mask1, 0, "linear_proj output"); err != nil {
		return err
	}
	res1 := x
	if c.ApplyResidualConnectionPostLayernorm {
		res1 = st.ln1
	}
	if c.ParallelAttention {
		mlpIn := st.ln1f
		if l.PreMLP != nil { // Falcon-40B: the MLP's own norm of x
			l.PreMLP.Forward(be, st.ln2, x, st.n2)
			if err := l.par.gatherRows(st.ln2f, st.ln2, "pre_mlp_layernorm output"); err != nil {
				return err
			}
			mlpIn = st.ln2f
		}
		if err := l.mlp(be, st, mlpIn); err != nil {
			return err
		}
		if err := l.branchOut(be, st, l.FC2, st.m, st.mp, st.mask2, n, "linear_fc2 output"); err != nil {
			return err
		}
		be.Add(st.out, res1, st.a)
		be.Add(st.out, st.out, st.m)
		return nil
	}
	be.Add(st.h1, res1, st.a)
	l.PreMLP.Forward(be, st.ln2, st.h1, st.n2)
	if err := l.par.gatherRows(st.ln2f, st.ln2, "pre_mlp_layernorm output"); err != nil {
		return err
	}
	if err := l.mlp(be, st, st.ln2f); err != nil {
		return err
	}
	if err := l.branchOut(be, st, l.FC2, st.m, st.mp, st.mask2, n, "linear_fc2 output"); err != nil {
		return err
	}
	res2 := st.h1
	if c.ApplyResidualConnectionPostLayernorm {
		res2 = st.ln2
	}
	be.Add(st.out, res2, st.m)
	return nil
}

// branchGrad turns d(branch output) (local rows, before dropout) into the gathered gradient
// of the row-parallel matmul output in g.dmf, accumulating the bias gradient on the way.
func (l *TransformerLayer) branchGrad(be kernels.Backend, g *layerGrads, lin *Linear, dout, mask *tensor.Tensor, what string) error {
	l.dropoutGrad(be, g.dm, dout, mask)
	lin.BiasGrad(be, g.dm)
	return l.par.gatherRows(g.dmf, g.dm, what)
}

// Backward turns dout (d loss/d out, this rank's rows) into dx (may alias dout) and
// accumulates every parameter gradient of the layer.
func (l *TransformerLayer) Backward(be kernels.Backend, st *layerStash, g *layerGrads, dx, dout *tensor.Tensor) error {
	c := l.cfg
	postRes := c.ApplyResidualConnectionPostLayernorm
	if c.ParallelAttention && l.PreMLP != nil {
		// Two norms of x: dx = dout + d(x) through pre_mlp_layernorm + through input_layernorm.
		if err := l.mlpBranchBackward(be, st, g, dout); err != nil {
			return err
		}
		l.PreMLP.Backward(be, g.dh1, g.dln, st.x, st.n2)
		be.Add(g.dh1, g.dh1, dout) // the residual grad; dx may alias dout
		if err := l.attnBranchBackward(be, st, g, dout); err != nil {
			return err
		}
		l.InNorm.Backward(be, dx, g.dln, st.x, st.n1)
		be.Add(dx, dx, g.dh1)
		return nil
	}
	if c.ParallelAttention {
		// Both branches read ln1: sum their partial d(ln1f) before one TP reduction.
		if err := l.branchGrad(be, g, l.FC2, dout, st.mask2, "linear_fc2 output grad"); err != nil {
			return err
		}
		if err := l.mlpBackward(be, st, g, st.ln1f); err != nil {
			return err
		}
		be.Copy(g.dsave, g.dlnf)
		if err := l.branchGrad(be, g, l.Proj, dout, st.mask1, "linear_proj output grad"); err != nil {
			return err
		}
		l.Proj.WeightBackward(be, g.do2, g.dmf, st.o2)
		if err := l.attentionBackward(be, st, g, st.ln1f); err != nil {
			return err
		}
		be.Add(g.dlnf, g.dlnf, g.dsave)
		if err := l.par.reduceRows(g.dln, g.dlnf, "input_layernorm output grad"); err != nil {
			return err
		}
		be.Copy(g.dh1, dout) // the residual grad; dx may alias dout
		if postRes {
			be.Add(g.dln, g.dln, g.dh1)
			l.InNorm.Backward(be, dx, g.dln, st.x, st.n1)
			return nil
		}
		l.InNorm.Backward(be, dx, g.dln, st.x, st.n1)
		be.Add(dx, dx, g.dh1)
		return nil
	}
	if err := l.mlpBranchBackward(be, st, g, dout); err != nil {
		return err
	}
	if l.MoE != nil {
		be.Add(g.dln, g.dln, g.moe.dxr.Slice(0, g.dln.Dim(0)))
	}
	// dh1 = residual grad + pre_mlp_layernorm backward.
	if postRes {
		be.Add(g.dln, g.dln, dout)
		l.PreMLP.Backward(be, g.dh1, g.dln, st.h1, st.n2)
	} else {
		l.PreMLP.Backward(be, g.dh1, g.dln, st.h1, st.n2)
		be.Add(g.dh1, g.dh1, dout)
	}
	if err := l.attnBranchBackward(be, st, g, g.dh1); err != nil {
		return err
	}
	if postRes {
		be.Add(g.dln, g.dln, g.dh1)
		l.InNorm.Backward(be, dx, g.dln, st.x, st.n1)
		return nil
	}
	l.InNorm.Backward(be, dx, g.dln, st.x, st.n1)
	be.Add(dx, dx, g.dh1)
	return nil
}

// activation applies the MLP's activation to fc1's output f: SwiGLU, squared ReLU
// (--squared-relu) or GeLU (its tanh approximation when Config.TanhGeLU).
func (c *Config) activation(be kernels.Backend, out, f *tensor.Tensor) {
	switch {
	case c.SwiGLU:
		be.SwiGLU(out, f)
	case c.SquaredReLU:
		be.SquaredReLU(out, f)
	default:
		be.GeLU(out, f, c.TanhGeLU())
	}
}

// activationBackward is activation's backward: df from dout and f.
func (c *Config) activationBackward(be kernels.Backend, df, dout, f *tensor.Tensor) {
	switch {
	case c.SwiGLU:
		be.SwiGLUBackward(df, dout, f)
	case c.SquaredReLU:
		be.SquaredReLUBackward(df, dout, f)
	default:
		be.GeLUBackward(df, dout, f, c.TanhGeLU())
	}
}

// mlpBranchBackward takes d(MLP branch output) dy and leaves the reduced d(ln2) of this
// rank's rows in g.dln (the MLP read st.ln2f: pre_mlp_layernorm's output).
func (l *TransformerLayer) mlpBranchBackward(be kernels.Backend, st *layerStash, g *layerGrads, dy *tensor.Tensor) error {
	if err := l.branchGrad(be, g, l.FC2, dy, st.mask2, "linear_fc2 output grad"); err != nil {
		return err
	}
	if err := l.mlpBackward(be, st, g, st.ln2f); err != nil {
		return err
	}
	return l.par.reduceRows(g.dln, g.dlnf, "pre_mlp_layernorm output grad")
}

// attnBranchBackward takes d(attention branch output) dy and leaves the reduced d(ln1) of
// this rank's rows in g.dln.
func (l *TransformerLayer) attnBranchBackward(be kernels.Backend, st *layerStash, g *layerGrads, dy *tensor.Tensor) error {
	if err := l.branchGrad(be, g, l.Proj, dy, st.mask1, "linear_proj output grad"); err != nil {
		return err
	}
	l.Proj.WeightBackward(be, g.do2, g.dmf, st.o2)
	if err := l.attentionBackward(be, st, g, st.ln1f); err != nil {
		return err
	}
	return l.par.reduceRows(g.dln, g.dlnf, "input_layernorm output grad")
}
