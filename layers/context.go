package layers

import (
	"fmt"

	"github.com/gomegatron/gomegatron/comm"
	"github.com/gomegatron/gomegatron/kernels"
	"github.com/gomegatron/gomegatron/tensor"
)

// Context parallelism (--context-parallel-size CP) splits every sequence of S tokens into
// 2·CP chunks of S/(2·CP) and gives rank r chunks r and 2·CP−1−r, as Megatron's
// get_batch_on_this_cp_rank does (each rank then has as much causal attention work as the
// others). Everything but attention is per token, so a rank runs the layers on its S/CP
// tokens at their global positions; attention all-gathers the keys and values over CP,
// each local chunk's queries attend to them at their offset, and the keys' and values'
// gradients are reduce-scattered back (Megatron-Core's all-gather context parallelism; its
// ring exchange computes the same sums).

func (p Parallel) cpSize() int {
	if p.CP != nil {
		return p.CP.Size()
	}
	return 1
}

// cpChunks are the global chunk numbers this rank holds (of 2·CP).
func (p Parallel) cpChunks() [2]int {
	r, n := p.CP.Rank(), p.CP.Size()
	return [2]int{r, 2*n - 1 - r}
}

// cpPosition is the global position of local sequence index i of a stash of s local
// tokens per sequence.
func (p Parallel) cpPosition(i, s int) int {
	if p.cpSize() == 1 {
		return i
	}
	sc := s / 2
	return p.cpChunks()[i/sc]*sc + i%sc
}

// cpLocal cuts this rank's chunks out of a batch of full sequences ([b, S] each), with
// the tokens' global positions (Batch.Positions, or 0…S−1), into buf's slices (each of
// capacity b·S/CP, so that a step allocates nothing).
func (p Parallel) cpLocal(buf *Batch, bt Batch, b, S int) Batch {
	s := S / p.cpSize()
	out := Batch{Tokens: buf.Tokens[:0], Labels: buf.Labels[:0], LossMask: buf.LossMask[:0], Positions: buf.Positions[:0]}
	if bt.DocStart != nil {
		out.DocStart = buf.DocStart[:0]
	}
	for bi := 0; bi < b; bi++ {
		for i := 0; i < s; i++ {
			g := bi*S + p.cpPosition(i, s)
			pos := int64(g - bi*S)
			if bt.Positions != nil {
				pos = bt.Positions[g]
			}
			out.Tokens, out.Labels = append(out.Tokens, bt.Tokens[g]), append(out.Labels, bt.Labels[g])
			out.LossMask, out.Positions = append(out.LossMask, bt.LossMask[g]), append(out.Positions, pos)
			if bt.DocStart != nil { // absolute positions: the same for the chunk's queries
				out.DocStart = append(out.DocStart, bt.DocStart[g])
			}
		}
	}
	return out
}

// cpScratch is the staging of the key/value exchange and the gathered keys and values,
// shared by a model's layers (they run one at a time), grown to the largest use. The
// gathered keys and values are not kept for backward, which gathers them again: a layer
// stashes only its own tokens', as Megatron-Core's ring exchange does.
type cpScratch struct{ gathered, blocks, chunks, k, v *tensor.Tensor }

// kv are the gathered keys and values, [b, g, S, hn] each.
func (x *cpScratch) kv(be kernels.Backend, dt tensor.DType, shape ...int) (k, v *tensor.Tensor) {
	n := tensor.ShapeNumel(shape)
	grow(be, &x.k, dt, n)
	grow(be, &x.v, dt, n)
	return x.k.Slice(0, n).View(shape...), x.v.Slice(0, n).View(shape...)
}

func (x *cpScratch) bufs(be kernels.Backend, dt tensor.DType, n int) (g, b, c *tensor.Tensor) {
	grow(be, &x.gathered, dt, n)
	grow(be, &x.blocks, dt, n)
	grow(be, &x.chunks, dt, n)
	return x.gathered.Slice(0, n), x.blocks.Slice(0, n), x.chunks.Slice(0, n)
}

// cpGather all-gathers local [b, g, s, hn] (chunks r and 2CP−1−r) into full [b, g, S, hn]
// in sequence order: the gathered [CP, b·g, 2, sc·hn] is permuted to its (half, rank)
// blocks, each block copied to its chunk's slot, and the chunks permuted into place.
func (l *TransformerLayer) cpGather(be kernels.Backend, full, local *tensor.Tensor, what string) error {
	cp := l.par.cpSize()
	bg := local.Dim(0) * local.Dim(1)
	w := local.Numel() / bg / 2 // a chunk row: sc·hn
	gat, blk, chk := l.cpx.bufs(be, local.DType(), full.Numel())
	if err := l.par.CP.AllGather(gat, local); err != nil {
		return fmt.Errorf("context-parallel all-gather of %s: %w", what, err)
	}
	be.Permute(blk.View(2, cp, bg, w), gat.View(cp, bg, 2, w), []int{2, 0, 1, 3})
	blocks, chunks := blk.View(2*cp, bg*w), chk.View(2*cp, bg*w)
	for half := 0; half < 2; half++ {
		for r := 0; r < cp; r++ {
			be.Copy(chunks.Slice(cpChunk(half, r, cp), cpChunk(half, r, cp)+1), blocks.Slice(half*cp+r, half*cp+r+1))
		}
	}
	be.Permute(full.View(bg, 2*cp, w), chk.View(2*cp, bg, w), []int{1, 0, 2})
	return nil
}

// cpReduceScatter is cpGather's backward: full [b, g, S, hn] gradients summed over CP into
// this rank's chunks, local [b, g, s, hn].
func (l *TransformerLayer) cpReduceScatter(be kernels.Backend, local, full *tensor.Tensor, what string) error {
	cp := l.par.cpSize()
	bg := local.Dim(0) * local.Dim(1)
	w := local.Numel() / bg / 2
	gat, blk, chk := l.cpx.bufs(be, local.DType(), full.Numel())
	be.Permute(chk.View(2*cp, bg, w), full.View(bg, 2*cp, w), []int{1, 0, 2})
	blocks, chunks := blk.View(2*cp, bg*w), chk.View(2*cp, bg*w)
	for half := 0; half < 2; half++ {
		for r := 0; r < cp; r++ {
			be.Copy(blocks.Slice(half*cp+r, half*cp+r+1), chunks.Slice(cpChunk(half, r, cp), cpChunk(half, r, cp)+1))
		}
	}
	be.Permute(gat.View(cp, bg, 2, w), blk.View(2, cp, bg, w), []int{1, 2, 0, 3})
	if err := l.par.CP.ReduceScatter(local, gat, comm.Sum); err != nil {
		return fmt.Errorf("context-parallel reduce-scatter of %s: %w", what, err)
	}
	return nil
}

// cpChunk is the chunk rank r holds in its first (half 0) or second half.
func cpChunk(half, r, cp int) int {
	if half == 0 {
		return r
	}
	return 2*cp - 1 - r
}

// cpStash holds a layer's context-parallel attention state: the queries, outputs and lse
// of each local chunk ([2, b·heads, sc, ·]); S is the full sequence length.
type cpStash struct {
	q, o, lse *tensor.Tensor
	S         int
}

func (l *TransformerLayer) newCPStash(be kernels.Backend, act tensor.DType, s, b int) *cpStash {
	hn, bh := l.cfg.KVChannels, b*l.heads
	return &cpStash{S: s * l.par.cpSize(),
		q: be.Alloc(act, 2, bh, s/2, hn), o: be.Alloc(act, 2, bh, s/2, hn), lse: be.Alloc(tensor.F32, 2, bh, s/2),
	}
}

// cpGrads is the backward scratch: each chunk's d out and d q, and the full-sequence key
// and value gradients of each chunk's attention (summed).
type cpGrads struct{ do, dq, dk, dv, dk2, dv2 *tensor.Tensor }

func (l *TransformerLayer) newCPGrads(be kernels.Backend, act tensor.DType, s, b int) *cpGrads {
	cp, hn := l.par.cpSize(), l.cfg.KVChannels
	S, bh := s*cp, b*l.heads
	kv := func() *tensor.Tensor { return be.Alloc(act, b, l.groups, S, hn) }
	return &cpGrads{do: be.Alloc(act, 2, bh, s/2, hn), dq: be.Alloc(act, 2, bh, s/2, hn),
		dk: kv(), dv: kv(), dk2: kv(), dv2: kv()}
}

// chunkView is chunk half of a [2, b·heads, sc, ·] tensor as [b, heads, sc, ·].
func (l *TransformerLayer) chunkView(t *tensor.Tensor, half, b int) *tensor.Tensor {
	c := t.Slice(half, half+1)
	shape := append([]int{b, l.heads}, c.Shape()[2:]...)
	return c.View(shape...)
}

// cpAttnParams is the attention of local chunk half, whose queries start at position off.
func (l *TransformerLayer) cpAttnParams(st *layerStash, half, off int) kernels.AttnParams {
	p := l.trainAttnParams(st)
	p.QOffset = off
	if p.DropoutP > 0 { // the whole sequence's masks
		p.DropoutRows = st.cp.S
	}
	if st.keyStart != nil {
		p.KeyStart = st.keyChunks[half]
	}
	return p
}

// gatherKV all-gathers this rank's keys and values into the model's shared [b, g, S, hn].
func (l *TransformerLayer) gatherKV(be kernels.Backend, st *layerStash) (k, v *tensor.Tensor, err error) {
	k, v = l.cpx.kv(be, st.k.DType(), st.k.Dim(0), st.k.Dim(1), st.cp.S, st.k.Dim(3))
	if err := l.cpGather(be, k, st.k, "keys"); err != nil {
		return nil, nil, err
	}
	if err := l.cpGather(be, v, st.v, "values"); err != nil {
		return nil, nil, err
	}
	return k, v, nil
}

// cpAttention runs attention on this rank's query chunks against the gathered keys and
// values: chunk c's queries sit at positions c·sc….
func (l *TransformerLayer) cpAttention(be kernels.Backend, st *layerStash) error {
	x := st.cp
	k, v, err := l.gatherKV(be, st)
	if err != nil {
		return err
	}
	b, s, hn := st.q.Dim(0), st.q.Dim(2), st.q.Dim(3)
	bh := b * l.heads
	be.Permute(x.q, st.q.View(bh, 2, s/2, hn), []int{1, 0, 2, 3})
	for half, c := range l.par.cpChunks() {
		p := l.cpAttnParams(st, half, c*(s/2))
		be.Attention(l.chunkView(x.o, half, b), l.chunkView(x.lse, half, b), l.chunkView(x.q, half, b), k, v, p)
	}
	be.Permute(st.o.View(bh, 2, s/2, hn), x.o, []int{1, 0, 2, 3})
	return nil
}

// cpAttentionBackward takes d o in g.do and writes d q, d k, d v of this rank's tokens,
// gathering the keys and values again.
func (l *TransformerLayer) cpAttentionBackward(be kernels.Backend, st *layerStash, g *layerGrads) error {
	x, gx := st.cp, g.cp
	k, v, err := l.gatherKV(be, st)
	if err != nil {
		return err
	}
	b, s, hn := st.q.Dim(0), st.q.Dim(2), st.q.Dim(3)
	bh := b * l.heads
	be.Permute(gx.do, g.do.View(bh, 2, s/2, hn), []int{1, 0, 2, 3})
	for half, c := range l.par.cpChunks() {
		p := l.cpAttnParams(st, half, c*(s/2))
		dk, dv := gx.dk, gx.dv
		if half == 1 {
			dk, dv = gx.dk2, gx.dv2
		}
		be.AttentionBackward(l.chunkView(gx.dq, half, b), dk, dv, l.chunkView(gx.do, half, b),
			l.chunkView(x.q, half, b), k, v, l.chunkView(x.o, half, b), l.chunkView(x.lse, half, b), p)
	}
	be.Add(gx.dk, gx.dk, gx.dk2)
	be.Add(gx.dv, gx.dv, gx.dv2)
	be.Permute(g.dq.View(bh, 2, s/2, hn), gx.dq, []int{1, 0, 2, 3})
	if err := l.cpReduceScatter(be, g.dk, gx.dk, "key grads"); err != nil {
		return err
	}
	return l.cpReduceScatter(be, g.dv, gx.dv, "value grads")
}
