package layers

import (
	"fmt"
	"math"

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
type TransformerLayer struct {
	cfg      *Config
	Index    int
	InNorm   *Norm
	QKV      *Linear
	Proj     *Linear
	PreMLP   *Norm // nil with ParallelAttention
	FC1, FC2 *Linear
	slopes   []float32
}

func newTransformerLayer(ps *paramSet, cfg *Config, i int) *TransformerLayer {
	pre := fmt.Sprintf("decoder.layers.%d.", i)
	h := cfg.HiddenSize
	l := &TransformerLayer{cfg: cfg, Index: i}
	l.InNorm = newNorm(ps, pre+"input_layernorm", cfg, h)
	l.QKV = newLinear(ps, pre+"self_attention.linear_qkv", h, cfg.QKVDim(), cfg.AddBiasLinear() || cfg.AddQKVBias, 0)
	l.Proj = newLinear(ps, pre+"self_attention.linear_proj", cfg.NumAttentionHeads*cfg.KVChannels, h, cfg.AddBiasLinear(), 1)
	if l.Proj.B != nil {
		l.Proj.B.SequenceParallel = true
	}
	if !cfg.ParallelAttention {
		l.PreMLP = newNorm(ps, pre+"pre_mlp_layernorm", cfg, h)
	}
	l.FC1 = newLinear(ps, pre+"mlp.linear_fc1", h, cfg.FC1Dim(), cfg.AddBiasLinear(), 0)
	l.FC2 = newLinear(ps, pre+"mlp.linear_fc2", cfg.FFNHiddenSize, h, cfg.AddBiasLinear(), 1)
	if l.FC2.B != nil {
		l.FC2.B.SequenceParallel = true
	}
	if cfg.PositionEmbeddingType == "alibi" {
		l.slopes = ALiBiSlopes(cfg.NumAttentionHeads)
	}
	return l
}

// layerStash holds one microbatch's activations of one layer: what Backward needs.
type layerStash struct {
	x                  *tensor.Tensor // layer input [N, h] (owned by the previous stage)
	ln1, h1, ln2, out  *tensor.Tensor // [N, h]
	n1, n2             normStash
	qkv                *tensor.Tensor // [N, qkv]
	q, k, v, o         *tensor.Tensor // [b, heads, s, hn]
	lse                *tensor.Tensor // [b, np, s]
	o2                 *tensor.Tensor // [N, np·hn] attention output, proj input
	a, m               *tensor.Tensor // proj and fc2 outputs [N, h]
	mask1, mask2       *tensor.Tensor // dropout masks (U8) [N, h]
	f, g               *tensor.Tensor // fc1 output [N, fc1], activation output [N, ffn]
	dropSeed, dropOffs uint64
}

func newLayerStash(be kernels.Backend, c *Config, s, b int) *layerStash {
	n, h, hn := s*b, c.HiddenSize, c.KVChannels
	f32 := func(shape ...int) *tensor.Tensor { return be.Alloc(tensor.F32, shape...) }
	st := &layerStash{
		ln1: f32(n, h), h1: f32(n, h), out: f32(n, h),
		n1: newNormStash(be, n), n2: newNormStash(be, n),
		qkv: f32(n, c.QKVDim()),
		q:   f32(b, c.NumAttentionHeads, s, hn), k: f32(b, c.NumQueryGroups, s, hn), v: f32(b, c.NumQueryGroups, s, hn),
		o: f32(b, c.NumAttentionHeads, s, hn), lse: f32(b, c.NumAttentionHeads, s),
		o2: f32(n, c.NumAttentionHeads*hn), a: f32(n, h), m: f32(n, h),
		f: f32(n, c.FC1Dim()), g: f32(n, c.FFNHiddenSize),
	}
	if !c.ParallelAttention {
		st.ln2 = f32(n, h)
	}
	if c.HiddenDropout > 0 {
		st.mask1, st.mask2 = be.Alloc(tensor.U8, n, h), be.Alloc(tensor.U8, n, h)
	}
	return st
}

// layerGrads is backward scratch shared by all layers (they run one at a time).
type layerGrads struct {
	dqkv, dq, dk, dv, do, do2 *tensor.Tensor
	df, dg, dln, dh1, dtmp    *tensor.Tensor
}

func newLayerGrads(be kernels.Backend, c *Config, s, b int) *layerGrads {
	n, h, hn := s*b, c.HiddenSize, c.KVChannels
	f32 := func(shape ...int) *tensor.Tensor { return be.Alloc(tensor.F32, shape...) }
	return &layerGrads{
		dqkv: f32(n, c.QKVDim()),
		dq:   f32(b, c.NumAttentionHeads, s, hn), dk: f32(b, c.NumQueryGroups, s, hn), dv: f32(b, c.NumQueryGroups, s, hn),
		do: f32(b, c.NumAttentionHeads, s, hn), do2: f32(n, c.NumAttentionHeads*hn),
		df: f32(n, c.FC1Dim()), dg: f32(n, c.FFNHiddenSize),
		dln: f32(n, h), dh1: f32(n, h), dtmp: f32(n, h),
	}
}

func (l *TransformerLayer) attnParams() kernels.AttnParams {
	c := l.cfg
	return kernels.AttnParams{
		Causal: true, Scale: float32(1 / math.Sqrt(float64(c.KVChannels))),
		ALiBiSlopes: l.slopes, ALiBiBeforeScale: c.ALiBiBeforeScale, SlidingWindow: c.SlidingWindow,
	}
}

func (l *TransformerLayer) rope(inverse bool) kernels.RoPEParams {
	return kernels.RoPEParams{Base: l.cfg.RotaryBase, RotaryDim: l.cfg.RotaryDim(), Inverse: inverse}
}

// attention runs ln → qkv → rope → core attention → o2 (before linear_proj).
func (l *TransformerLayer) attention(be kernels.Backend, st *layerStash, ln *tensor.Tensor) {
	c := l.cfg
	l.QKV.Forward(be, st.qkv, ln)
	be.SplitQKV(st.q, st.k, st.v, st.qkv, c.NumQueryGroups, c.NumAttentionHeads/c.NumQueryGroups)
	if c.PositionEmbeddingType == "rope" {
		be.RoPE(st.q, st.q, l.rope(false))
		be.RoPE(st.k, st.k, l.rope(false))
	}
	be.Attention(st.o, st.lse, st.q, st.k, st.v, l.attnParams())
	b, np, s, hn := st.o.Dim(0), st.o.Dim(1), st.o.Dim(2), st.o.Dim(3)
	be.Permute(st.o2.View(s, b, np, hn), st.o, []int{2, 0, 1, 3})
}

// attentionBackward takes d(o2) in g.do2 and returns d(ln) in dln (overwritten).
func (l *TransformerLayer) attentionBackward(be kernels.Backend, st *layerStash, g *layerGrads, ln, dln *tensor.Tensor) {
	c := l.cfg
	b, np, s, hn := st.o.Dim(0), st.o.Dim(1), st.o.Dim(2), st.o.Dim(3)
	be.Permute(g.do, g.do2.View(s, b, np, hn), []int{1, 2, 0, 3})
	be.AttentionBackward(g.dq, g.dk, g.dv, g.do, st.q, st.k, st.v, st.o, st.lse, l.attnParams())
	if c.PositionEmbeddingType == "rope" {
		be.RoPE(g.dq, g.dq, l.rope(true))
		be.RoPE(g.dk, g.dk, l.rope(true))
	}
	be.MergeQKV(g.dqkv, g.dq, g.dk, g.dv, c.NumQueryGroups, c.NumAttentionHeads/c.NumQueryGroups)
	l.QKV.Backward(be, dln, g.dqkv, ln)
}

func (l *TransformerLayer) mlp(be kernels.Backend, st *layerStash, ln *tensor.Tensor) {
	l.FC1.Forward(be, st.f, ln)
	l.activation(be, st)
	l.FC2.Forward(be, st.m, st.g)
}

func (l *TransformerLayer) activation(be kernels.Backend, st *layerStash) {
	switch {
	case l.cfg.SwiGLU:
		be.SwiGLU(st.g, st.f)
	default:
		be.GeLU(st.g, st.f, l.cfg.OpenAIGeLU)
	}
}

// mlpBackward takes d(m) and writes d(ln) into dln (overwritten).
func (l *TransformerLayer) mlpBackward(be kernels.Backend, st *layerStash, g *layerGrads, dm, ln, dln *tensor.Tensor) {
	l.FC2.Backward(be, g.dg, dm, st.g)
	if l.cfg.SwiGLU {
		be.SwiGLUBackward(g.df, g.dg, st.f)
	} else {
		be.GeLUBackward(g.df, g.dg, st.f, l.cfg.OpenAIGeLU)
	}
	l.FC1.Backward(be, dln, g.df, ln)
}

func (l *TransformerLayer) dropout(be kernels.Backend, x, mask *tensor.Tensor, seed, offset uint64) {
	if p := float32(l.cfg.HiddenDropout); p > 0 {
		be.Dropout(x, mask, x, p, seed, offset)
	}
}

// Forward computes st.out from x [N, h].
func (l *TransformerLayer) Forward(be kernels.Backend, st *layerStash, x *tensor.Tensor) {
	c := l.cfg
	st.x = x
	l.InNorm.Forward(be, st.ln1, x, st.n1)
	l.attention(be, st, st.ln1)
	l.Proj.Forward(be, st.a, st.o2)
	n := int64(x.Numel())
	l.dropout(be, st.a, st.mask1, st.dropSeed, st.dropOffs)
	res1 := x
	if c.ApplyResidualConnectionPostLayernorm {
		res1 = st.ln1
	}
	if c.ParallelAttention {
		l.mlp(be, st, st.ln1)
		l.dropout(be, st.m, st.mask2, st.dropSeed, st.dropOffs+uint64(n))
		be.Add(st.out, res1, st.a)
		be.Add(st.out, st.out, st.m)
		return
	}
	be.Add(st.h1, res1, st.a)
	l.PreMLP.Forward(be, st.ln2, st.h1, st.n2)
	l.mlp(be, st, st.ln2)
	l.dropout(be, st.m, st.mask2, st.dropSeed, st.dropOffs+uint64(n))
	res2 := st.h1
	if c.ApplyResidualConnectionPostLayernorm {
		res2 = st.ln2
	}
	be.Add(st.out, res2, st.m)
}

// Backward turns dout (d loss/d out, [N, h]) into dx (may alias dout) and accumulates every
// parameter gradient of the layer.
func (l *TransformerLayer) Backward(be kernels.Backend, st *layerStash, g *layerGrads, dx, dout *tensor.Tensor) {
	c := l.cfg
	p := float32(c.HiddenDropout)
	postRes := c.ApplyResidualConnectionPostLayernorm
	// dm: gradient of the MLP branch output before dropout.
	dm := g.dtmp
	if p > 0 {
		be.DropoutBackward(dm, dout, st.mask2, p)
	} else {
		be.Copy(dm, dout)
	}
	if c.ParallelAttention {
		// Both branches read ln1; the residual is x (or ln1).
		l.mlpBackward(be, st, g, dm, st.ln1, g.dln) // dln = d(ln1) from the MLP
		if p > 0 {
			be.DropoutBackward(dm, dout, st.mask1, p)
		} else {
			be.Copy(dm, dout)
		}
		l.Proj.Backward(be, g.do2, dm, st.o2)
		be.Copy(g.dh1, g.dln)
		l.attentionBackward(be, st, g, st.ln1, g.dln)
		be.Add(g.dln, g.dln, g.dh1)
		if postRes {
			be.Add(g.dln, g.dln, dout)
			l.InNorm.Backward(be, dx, g.dln, st.x, st.n1)
			return
		}
		be.Copy(g.dh1, dout) // keep the residual grad: dx may alias dout
		l.InNorm.Backward(be, dx, g.dln, st.x, st.n1)
		be.Add(dx, dx, g.dh1)
		return
	}
	l.mlpBackward(be, st, g, dm, st.ln2, g.dln)
	// dh1 = residual grad + pre_mlp_layernorm backward.
	if postRes {
		be.Add(g.dln, g.dln, dout)
		l.PreMLP.Backward(be, g.dh1, g.dln, st.h1, st.n2)
	} else {
		l.PreMLP.Backward(be, g.dh1, g.dln, st.h1, st.n2)
		be.Add(g.dh1, g.dh1, dout)
	}
	if p > 0 {
		be.DropoutBackward(dm, g.dh1, st.mask1, p)
	} else {
		dm = g.dh1
	}
	l.Proj.Backward(be, g.do2, dm, st.o2)
	l.attentionBackward(be, st, g, st.ln1, g.dln)
	if postRes {
		be.Add(g.dln, g.dln, g.dh1)
		l.InNorm.Backward(be, dx, g.dln, st.x, st.n1)
		return
	}
	l.InNorm.Backward(be, dx, g.dln, st.x, st.n1)
	be.Add(dx, dx, g.dh1)
}
