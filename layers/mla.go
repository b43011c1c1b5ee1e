package layers

import (
	"fmt"
	"math"

	"github.com/gomegatron/gomegatron/comm"
	"github.com/gomegatron/gomegatron/kernels"
	"github.com/gomegatron/gomegatron/tensor"
)

// mlaAttn is multi-latent attention's projections (DeepSeek-V2/V3, Megatron-Core's
// MLASelfAttention), for H heads of dn = --qk-head-dim, dr = --qk-pos-emb-head-dim and
// dv = --v-head-dim channels. From the norm output x:
//
//	q      = linear_q_proj(x), or linear_q_up_proj(q_layernorm(linear_q_down_proj(x)))   [H, dn+dr]
//	[c, kᵣ] = linear_kv_down_proj(x)                                                   [rkv + dr]
//	[kₙ, v] = linear_kv_up_proj(kv_layernorm(c))                                       [H, dn+dv]
//	k      = [kₙ, RoPE(kᵣ)] (kᵣ shared by every head),  q = [qₙ, RoPE(qᵣ)]
//
// and attention over heads of width hd = dn + dr with softmax scale m(mscale-all-dim)²/√hd.
// RoPE on the dr channels is Megatron-Core's MLA RoPE (de-interleave, then rotate halves),
// which gives the same q·k as rotating the pairs (2i, 2i+1): that is what runs. Values are
// padded with zeros to hd so that the attention kernels see one head width; the output's
// first dv channels are the heads' outputs.
//
// Tensor parallelism: the up projections (and linear_q_proj) are column-parallel by heads;
// the down projections are column-parallel too, as Megatron-Core's local spec builds them,
// and their outputs all-gathered over TP (gather_from_tensor_model_parallel_region), so
// every rank normalises the whole latent and the latent norms' grads are summed over TP.
type mlaAttn struct {
	QProj, QDown, QUp, KVDown, KVUp *Linear
	QNorm, KVNorm                   *Norm // --qk-layernorm; nil is Megatron's IdentityOp
	heads, dn, dr, dv, hd, rq, rkv  int
}

func newMLA(ps *paramSet, pre string, cfg *Config, heads int) *mlaAttn {
	h, H := cfg.HiddenSize, cfg.NumAttentionHeads
	a := &mlaAttn{heads: heads, dn: cfg.QKHeadDim, dr: cfg.QKPosEmbHeadDim, dv: cfg.VHeadDim,
		hd: cfg.QKHeadDim + cfg.QKPosEmbHeadDim, rq: cfg.QLoRARank, rkv: cfg.KVLoRARank}
	pre += "self_attention."
	// Megatron-Core's registration order (MLASelfAttention.__init__): the projections, then
	// the latent norms.
	if a.rq == 0 {
		a.QProj = newLinear(ps, pre+"linear_q_proj", h, H*a.hd, false, 0)
	} else {
		a.QDown = newLinear(ps, pre+"linear_q_down_proj", h, a.rq, false, 0)
		a.QUp = newLinear(ps, pre+"linear_q_up_proj", a.rq, H*a.hd, false, 0)
	}
	a.KVDown = newLinear(ps, pre+"linear_kv_down_proj", h, a.rkv+a.dr, false, 0)
	a.KVUp = newLinear(ps, pre+"linear_kv_up_proj", a.rkv, H*(a.dn+a.dv), false, 0)
	if cfg.QKLayernorm {
		if a.rq != 0 {
			a.QNorm = newPartialNorm(ps, pre+"q_layernorm", cfg, a.rq)
		}
		a.KVNorm = newPartialNorm(ps, pre+"kv_layernorm", cfg, a.rkv)
	}
	return a
}

// linears lists the projections (for FP8).
func (a *mlaAttn) linears() []*Linear {
	if a.QProj != nil {
		return []*Linear{a.QProj, a.KVDown, a.KVUp}
	}
	return []*Linear{a.QDown, a.QUp, a.KVDown, a.KVUp}
}

// mlaStash holds one microbatch's latent activations (what backward needs) and the
// forward's scratch. Rows are the n = s·b tokens in [s, b] order.
type mlaStash struct {
	cq, cqn  *tensor.Tensor // [n, rq]: q_down's gathered output and q_layernorm's (the same without the norm)
	c, cn    *tensor.Tensor // [n, rkv]: the kv latent and kv_layernorm's output (the same without the norm)
	nq, nkv  normStash
	qf, kvf  *tensor.Tensor // [n, H/TP·hd], [n, H/TP·(dn+dv)]: the up projections' outputs
	ckv      *tensor.Tensor // [n, rkv+dr]: kv_down's gathered output
	qpe, kpe *tensor.Tensor // [b, H/TP, s, dr], [b, 1, s, dr]: the rotary parts
	loc, gat *tensor.Tensor // a down projection's local output and its TP all-gather (TP > 1)
	vw       mlaViews       // the strided copies for this stash's s and b, made once
}

func (a *mlaAttn) newStash(be kernels.Backend, act tensor.DType, tp, s, b int) *mlaStash {
	n := s * b
	al := func(shape ...int) *tensor.Tensor { return be.Alloc(act, shape...) }
	st := &mlaStash{c: al(n, a.rkv), qf: al(n, a.heads*a.hd), kvf: al(n, a.heads*(a.dn+a.dv)),
		ckv: al(n, a.rkv+a.dr), qpe: al(b, a.heads, s, a.dr), kpe: al(b, 1, s, a.dr), vw: a.views(s, b)}
	st.cn = st.c
	if a.KVNorm != nil {
		st.cn, st.nkv = al(n, a.rkv), newNormStash(be, n)
	}
	if a.rq > 0 {
		st.cq = al(n, a.rq)
		st.cqn = st.cq
		if a.QNorm != nil {
			st.cqn, st.nq = al(n, a.rq), newNormStash(be, n)
		}
	}
	if tp > 1 {
		w := max(a.rq, a.rkv+a.dr)
		st.loc, st.gat = al(n*w/tp), al(n*w)
	}
	return st
}

// mlaGrads is multi-latent attention's backward scratch, shared by the layers.
type mlaGrads struct {
	dqf, dkvf, dckv, dc, dcq, dx *tensor.Tensor
	dcqn                         *tensor.Tensor // q_layernorm's output grad
	dpe                          *tensor.Tensor // [b, H/TP, s, dr]: the heads' key rotary grads before their sum
	loc, scat                    *tensor.Tensor // a down projection's local grad and its reduce-scatter input
}

func (a *mlaAttn) newGrads(be kernels.Backend, act tensor.DType, tp, s, b, h int) *mlaGrads {
	n := s * b
	al := func(shape ...int) *tensor.Tensor { return be.Alloc(act, shape...) }
	g := &mlaGrads{dqf: al(n, a.heads*a.hd), dkvf: al(n, a.heads*(a.dn+a.dv)), dckv: al(n, a.rkv+a.dr),
		dc: al(n, a.rkv), dx: al(n, h), dpe: al(b, a.heads, s, a.dr)}
	if a.rq > 0 {
		g.dcq = al(n, a.rq)
		if a.QNorm != nil {
			g.dcqn = al(n, a.rq)
		}
	}
	if tp > 1 {
		w := max(a.rq, a.rkv+a.dr)
		g.loc, g.scat = al(n*w/tp), al(n*w)
	}
	return g
}

// strided is kernels.StridedCopyParams built from the view's shape and (offset, strides) of dst
// and src.
func strided(shape []int, doff int, dst []int, soff int, src []int) kernels.StridedCopyParams {
	return kernels.StridedCopyParams{Shape: shape, DstOff: doff, DstStride: dst, SrcOff: soff, SrcStride: src}
}

// swap is p with dst and src exchanged: the copy back.
func swap(p kernels.StridedCopyParams) kernels.StridedCopyParams {
	return strided(p.Shape, p.SrcOff, p.SrcStride, p.DstOff, p.DstStride)
}

// mlaViews are the strided copies between the [s, b]-ordered projections and the
// [b, H/TP, s, hd] attention tensors, for s positions of b sequences.
type mlaViews struct {
	qpe, kn, v, o, c, kpeIn, kpeOut, dpe kernels.StridedCopyParams
}

func (a *mlaAttn) views(s, b int) mlaViews {
	H, hd, kvw, ckw := a.heads, a.hd, a.dn+a.dv, a.rkv+a.dr
	head := []int{H * s * hd, s * hd, hd, 1}  // [b, H, s, ·] in a head-width tensor
	kv := []int{H * kvw, kvw, b * H * kvw, 1} // [b, H, s, ·] in kvf [s, b, H, dn+dv]
	return mlaViews{
		qpe:    strided([]int{b * H * s, a.dr}, 0, []int{a.dr, 1}, a.dn, []int{hd, 1}),
		kn:     strided([]int{b, H, s, a.dn}, 0, head, 0, kv),
		v:      strided([]int{b, H, s, a.dv}, 0, head, a.dn, kv),
		o:      strided([]int{b, H, s, a.dv}, 0, []int{H * a.dv, a.dv, b * H * a.dv, 1}, 0, head),
		c:      strided([]int{s * b, a.rkv}, 0, []int{a.rkv, 1}, 0, []int{ckw, 1}),
		kpeIn:  strided([]int{b, s, a.dr}, 0, []int{s * a.dr, a.dr, 1}, a.rkv, []int{ckw, b * ckw, 1}),
		kpeOut: strided([]int{b, H, s, a.dr}, a.dn, head, 0, []int{s * a.dr, 0, a.dr, 1}),
		dpe:    strided([]int{b, H, s, a.dr}, 0, []int{H * s * a.dr, s * a.dr, a.dr, 1}, a.dn, head),
	}
}

// downForward runs a column-parallel down projection whose whole output every rank needs:
// out [n, Out·TP] = x·Wᵀ gathered over TP.
func downForward(be kernels.Backend, par Parallel, lin *Linear, out, x, loc, gat *tensor.Tensor, what string) error {
	tp := par.tpSize()
	if tp == 1 {
		lin.Forward(be, out, x)
		return nil
	}
	n := x.Dim(0)
	l := loc.Slice(0, n*lin.Out).View(n, lin.Out)
	g := gat.Slice(0, n*lin.Out*tp)
	lin.Forward(be, l, x)
	if err := par.TP.AllGather(g, l); err != nil {
		return fmt.Errorf("tensor-parallel all-gather of %s: %w", what, err)
	}
	be.Permute(out.View(n, tp, lin.Out), g.View(tp, n, lin.Out), []int{1, 0, 2})
	return nil
}

// downBackward is downForward's backward: dout [n, Out·TP] holds this rank's part of the
// output's grad (its heads'), summed over TP onto the rank's columns (a reduce-scatter)
// before the weight grad; dx is the rank's partial d(x).
func downBackward(be kernels.Backend, par Parallel, lin *Linear, dx, dout, x, loc, scat *tensor.Tensor, what string) error {
	tp := par.tpSize()
	if tp == 1 {
		lin.Backward(be, dx, dout, x)
		return nil
	}
	n := x.Dim(0)
	l := loc.Slice(0, n*lin.Out).View(n, lin.Out)
	sc := scat.Slice(0, n*lin.Out*tp)
	be.Permute(sc.View(tp, n, lin.Out), dout.View(n, tp, lin.Out), []int{1, 0, 2})
	if err := par.TP.ReduceScatter(l, sc, comm.Sum); err != nil {
		return fmt.Errorf("tensor-parallel reduce-scatter of %s: %w", what, err)
	}
	lin.Backward(be, dx, l, x)
	return nil
}

// forward computes the attention inputs q, k, v [b, H/TP, s, hd] (v zero beyond dv) from
// x [s·b, h] with RoPE rp (whose RotaryDim is dr).
func (a *mlaAttn) forward(be kernels.Backend, par Parallel, st *mlaStash, q, k, v, x *tensor.Tensor, rp kernels.RoPEParams) error {
	b, s, vw := q.Dim(0), q.Dim(2), st.vw
	rp.Interleaved = true
	if a.QProj != nil {
		a.QProj.Forward(be, st.qf, x)
	} else {
		if err := downForward(be, par, a.QDown, st.cq, x, st.loc, st.gat, "linear_q_down_proj output"); err != nil {
			return err
		}
		if a.QNorm != nil {
			a.QNorm.Forward(be, st.cqn, st.cq, st.nq)
		}
		a.QUp.Forward(be, st.qf, st.cqn)
	}
	be.Permute(q, st.qf.View(s, b, a.heads, a.hd), []int{1, 2, 0, 3})
	be.StridedCopy(st.qpe, q, vw.qpe)
	be.RoPE(st.qpe, st.qpe, rp)
	be.StridedCopy(q, st.qpe, swap(vw.qpe))

	if err := downForward(be, par, a.KVDown, st.ckv, x, st.loc, st.gat, "linear_kv_down_proj output"); err != nil {
		return err
	}
	be.StridedCopy(st.c, st.ckv, vw.c)
	if a.KVNorm != nil {
		a.KVNorm.Forward(be, st.cn, st.c, st.nkv)
	}
	a.KVUp.Forward(be, st.kvf, st.cn)
	be.StridedCopy(st.kpe, st.ckv, vw.kpeIn)
	be.RoPE(st.kpe, st.kpe, rp)
	be.StridedCopy(k, st.kvf, vw.kn)
	be.StridedCopy(k, st.kpe, vw.kpeOut)
	if a.dv < a.hd {
		be.Fill(v, 0)
	}
	be.StridedCopy(v, st.kvf, vw.v)
	return nil
}

// backward takes the grads of q, k, v (dq is rotated back in place) and leaves this rank's
// partial d(x) in dx.
func (a *mlaAttn) backward(be kernels.Backend, par Parallel, st *mlaStash, g *mlaGrads, dx, dq, dk, dv, x *tensor.Tensor, rp kernels.RoPEParams) error {
	b, s := dq.Dim(0), dq.Dim(2)
	vw := st.vw
	rp.Interleaved, rp.Inverse = true, true
	// Keys and values: [d kₙ, d v] into d kvf; d kᵣ summed over this rank's heads.
	be.StridedCopy(g.dkvf, dk, swap(vw.kn))
	be.StridedCopy(g.dkvf, dv, swap(vw.v))
	be.StridedCopy(g.dpe, dk, vw.dpe)
	dkpe := st.kpe // the rotated keys are no longer needed: their grad goes in their place
	rows := s * a.dr
	for bi := range b {
		sum := dkpe.View(b, rows).Slice(bi, bi+1)
		heads := g.dpe.View(b*a.heads, rows)
		be.Copy(sum, heads.Slice(bi*a.heads, bi*a.heads+1))
		for h := 1; h < a.heads; h++ {
			be.Add(sum, sum, heads.Slice(bi*a.heads+h, bi*a.heads+h+1))
		}
	}
	be.RoPE(dkpe, dkpe, rp)
	dcn := g.dc
	if a.KVNorm != nil {
		dcn = view(g.dckv.View(g.dckv.Numel()), g.dc.Shape()...) // scratch until dckv is assembled
	}
	a.KVUp.Backward(be, dcn, g.dkvf, st.cn)
	if a.KVNorm != nil {
		a.KVNorm.Backward(be, g.dc, dcn, st.c, st.nkv)
	}
	be.StridedCopy(g.dckv, g.dc, swap(vw.c))
	be.StridedCopy(g.dckv, dkpe, swap(vw.kpeIn))
	if err := downBackward(be, par, a.KVDown, dx, g.dckv, x, g.loc, g.scat, "linear_kv_down_proj output grad"); err != nil {
		return err
	}

	// Queries.
	be.StridedCopy(st.qpe, dq, vw.qpe)
	be.RoPE(st.qpe, st.qpe, rp)
	be.StridedCopy(dq, st.qpe, swap(vw.qpe))
	be.Permute(g.dqf.View(s, b, a.heads, a.hd), dq, []int{2, 0, 1, 3})
	if a.QProj != nil {
		a.QProj.Backward(be, g.dx, g.dqf, x)
	} else {
		dcqn := g.dcq
		if a.QNorm != nil {
			dcqn = g.dcqn
		}
		a.QUp.Backward(be, dcqn, g.dqf, st.cqn)
		if a.QNorm != nil {
			a.QNorm.Backward(be, g.dcq, dcqn, st.cq, st.nq)
		}
		if err := downBackward(be, par, a.QDown, g.dx, g.dcq, x, g.loc, g.scat, "linear_q_down_proj output grad"); err != nil {
			return err
		}
	}
	be.Add(dx, dx, g.dx)
	return nil
}

// finalizeMLA checks --multi-latent-attention's settings (Megatron's asserts, and what this
// implementation covers) and sets the attention head width --kv-channels to
// qk-head-dim + qk-pos-emb-head-dim.
func (c *Config) finalizeMLA() error {
	if !c.MultiLatentAttention {
		if c.RopeType == "yarn" {
			return fmt.Errorf("--rope-type yarn applies to --multi-latent-attention; other attention takes --position-embedding-type yarn (Megatron: common attention only supports rope_type rope)")
		}
		return nil
	}
	tp := max(c.TensorModelParallelSize, 1)
	switch {
	case c.PositionEmbeddingType != "rope" && c.PositionEmbeddingType != "yarn":
		return fmt.Errorf("--multi-latent-attention rotates each head's qk-pos-emb part: pass --position-embedding-type rope (--rope-type picks rope or yarn), not %s", c.PositionEmbeddingType)
	case c.RotaryInterleaved:
		return fmt.Errorf("--rotary-interleaved does not work with --multi-latent-attention (as Megatron says; MLA's RoPE de-interleaves itself)")
	case c.QLoRARank < 0 || c.KVLoRARank <= 0 || c.QKHeadDim <= 0 || c.QKPosEmbHeadDim <= 0 || c.VHeadDim <= 0 || c.QKPosEmbHeadDim%2 != 0:
		return fmt.Errorf("--multi-latent-attention needs positive --kv-lora-rank %d, --qk-head-dim %d, --v-head-dim %d, an even --qk-pos-emb-head-dim %d and --q-lora-rank %d ≥ 0",
			c.KVLoRARank, c.QKHeadDim, c.VHeadDim, c.QKPosEmbHeadDim, c.QLoRARank)
	case c.VHeadDim > c.QKHeadDim+c.QKPosEmbHeadDim:
		return fmt.Errorf("--v-head-dim %d wider than --qk-head-dim + --qk-pos-emb-head-dim %d is not supported (values are padded to the query and key width)", c.VHeadDim, c.QKHeadDim+c.QKPosEmbHeadDim)
	case (c.KVLoRARank+c.QKPosEmbHeadDim)%tp != 0 || c.QLoRARank%tp != 0:
		return fmt.Errorf("--kv-lora-rank + --qk-pos-emb-head-dim %d and --q-lora-rank %d must be divisible by --tensor-model-parallel-size %d (their projections are column-parallel)",
			c.KVLoRARank+c.QKPosEmbHeadDim, c.QLoRARank, tp)
	case c.ParallelAttention:
		return fmt.Errorf("--multi-latent-attention with --parallel-attention is not supported")
	case c.GroupQueryAttention:
		return fmt.Errorf("--group-query-attention is mutually exclusive with --multi-latent-attention (as Megatron asserts)")
	}
	c.KVChannels = c.QKHeadDim + c.QKPosEmbHeadDim
	if c.YaRN() && c.YarnOrigMaxPositions == 0 {
		c.YarnOrigMaxPositions = 4096 // MLATransformerConfig's original_max_position_embeddings
	}
	return nil
}

// SoftmaxScale is attention's score scale: 1/√hd, times m(mscale-all-dim)² with multi-latent
// attention (Megatron-Core's MLASelfAttention.softmax_scale).
func (c *Config) SoftmaxScale() float64 {
	s := 1 / math.Sqrt(float64(c.KVChannels))
	if c.MultiLatentAttention {
		m := c.yarnMScale(c.YarnMScaleAllDim)
		s *= m * m
	}
	return s
}
