package layers

import (
	"fmt"

	"github.com/gomegatron/gomegatron/kernels"
	"github.com/gomegatron/gomegatron/tensor"
)

// KVCache holds, for one batch of B sequences decoded in lockstep, every layer's keys and
// values (after RoPE) of the positions decoded so far, plus the scratch a Decode step
// needs. It is Megatron's inference key_value_memory_dict: keys and values are stored
// sequence first, [MaxLen, B, G/TP, hn] per layer, so appending a chunk writes contiguous
// rows and the first T positions are one contiguous slice.
type KVCache struct {
	B, MaxLen int
	// Len is the number of positions whose keys and values are cached.
	Len  int
	k, v []*tensor.Tensor // per layer [MaxLen, B, groups, hn]

	capN int               // chunk length the scratch below is sized for
	sc   inferScratch      // flat buffers, viewed per call
	mla  map[int]*mlaStash // multi-latent attention's scratch per chunk length
}

// inferScratch are flat buffers sized for capN·B rows; Decode views prefixes of them.
type inferScratch struct {
	ids, pos           *tensor.Tensor // [N] I64
	hostIDs, hostPos   *tensor.Tensor // [N] I64 host
	x, y, tmp          *tensor.Tensor // [N·h] residual stream, layer output, position embeddings
	ln1, ln2, h1, a, m *tensor.Tensor // [N·h]
	mean, rstd         *tensor.Tensor // [N]
	qkv                *tensor.Tensor // [N·qkv/TP]
	q, o, o2           *tensor.Tensor // [N·heads·hn]
	kn, vn             *tensor.Tensor // [N·groups·hn] the chunk's keys and values
	qIn, kIn           *tensor.Tensor // --qk-layernorm: q and k before their norms
	hMean, hRstd       *tensor.Tensor // --qk-layernorm: the head norms' statistics [N·heads]
	kt, vt             *tensor.Tensor // [MaxLen·B·groups·hn] cached keys as [B, G, T, hn]
	lse                *tensor.Tensor // [N·heads]
	f, g               *tensor.Tensor // [N·fc1/TP], [N·ffn/TP]
	moe                *moeStash      // MoE layers' routing and expert activations
	fin                *tensor.Tensor // [B·h] final norm output of the last position
	logits             *tensor.Tensor // [B·V/TP]
	hostLogits         *tensor.Tensor // [B·V/TP] host
}

// NewKVCache returns an empty cache for batch sequences of up to maxLen positions on this
// rank (its query groups). The model must be whole (PP = 1).
func (m *GPTModel) NewKVCache(batch, maxLen int) *KVCache {
	c := &m.Cfg
	kc := &KVCache{B: batch, MaxLen: maxLen}
	for _, l := range m.Layers {
		kc.k = append(kc.k, m.be.Alloc(tensor.F32, maxLen, batch, l.groups, c.KVChannels))
		kc.v = append(kc.v, m.be.Alloc(tensor.F32, maxLen, batch, l.groups, c.KVChannels))
	}
	if len(m.Layers) > 0 {
		l := m.Layers[0]
		n := maxLen * batch * l.groups * c.KVChannels
		kc.sc.kt, kc.sc.vt = m.be.Alloc(tensor.F32, n), m.be.Alloc(tensor.F32, n)
	}
	vl := c.PaddedVocabSize / m.Par.tpSize()
	kc.sc.fin = m.be.Alloc(tensor.F32, batch*c.HiddenSize)
	kc.sc.logits = m.be.Alloc(tensor.F32, batch*vl)
	kc.sc.hostLogits = tensor.New(tensor.F32, batch*vl)
	return kc
}

// grow sizes the per-chunk scratch for chunks of n positions (a prefill, then 1 per step).
func (kc *KVCache) grow(m *GPTModel, n int) {
	if n <= kc.capN {
		return
	}
	c := &m.Cfg
	be := m.be
	N, h := n*kc.B, c.HiddenSize
	f32 := func(k int) *tensor.Tensor { return be.Alloc(tensor.F32, k) }
	s := &kc.sc
	s.ids, s.pos = be.Alloc(tensor.I64, N), be.Alloc(tensor.I64, N)
	s.hostIDs, s.hostPos = tensor.New(tensor.I64, N), tensor.New(tensor.I64, N)
	s.x, s.y, s.tmp = f32(N*h), f32(N*h), f32(N*h)
	s.ln1, s.ln2, s.h1, s.a, s.m = f32(N*h), f32(N*h), f32(N*h), f32(N*h), f32(N*h)
	s.mean, s.rstd = f32(N), f32(N)
	if len(m.Layers) > 0 {
		l := m.Layers[0]
		hn := c.KVChannels
		if l.QKV != nil {
			s.qkv = f32(N * l.QKV.Out)
		}
		s.q, s.o, s.o2 = f32(N*l.heads*hn), f32(N*l.heads*hn), f32(N*l.heads*hn)
		s.kn, s.vn = f32(N*l.groups*hn), f32(N*l.groups*hn)
		s.lse = f32(N * l.heads)
		if l.QNorm != nil {
			s.qIn, s.kIn = f32(N*l.heads*hn), f32(N*l.groups*hn)
			s.hMean, s.hRstd = f32(N*l.heads), f32(N*l.heads)
		}
		for _, l := range m.Layers { // MoE and dense layers may alternate (--moe-layer-freq)
			if l.MoE != nil && s.moe == nil {
				s.moe = l.MoE.newStash(be, tensor.F32, N)
			} else if l.MoE == nil && s.f == nil {
				s.f, s.g = f32(N*l.FC1.Out), f32(N*l.FC2.In)
			}
		}
	}
	kc.capN = n
}

// view is the first numel(shape) elements of a flat buffer, shaped.
func view(t *tensor.Tensor, shape ...int) *tensor.Tensor {
	return t.Slice(0, tensor.ShapeNumel(shape)).View(shape...)
}

// Decode runs the model on a chunk of new tokens and returns the next-token logits of the
// chunk's last position, gathered over tensor parallelism: a host F32 tensor [B, Vpad].
// tokens is [B][n] (every row the same n ≥ 1) and occupies positions pos … pos+n−1 of each
// sequence; the cache must already hold positions < pos (pos ≤ Len), and afterwards holds
// positions < pos+n (a smaller pos rewinds). The usual call sequence is one prefill chunk
// at pos 0, then one token per step.
//
// Each layer computes the chunk's queries, keys and values as the training Forward does
// (the same Backend ops, RoPE at PosOffset pos), appends the keys and values to the cache,
// and attends with query i at position pos+i over all cached keys 0 … pos+i (QOffset = pos;
// causal, ALiBi and the sliding window measured in absolute positions). With TP > 1 the
// partial outputs of linear_proj and linear_fc2 and the word embeddings are all-reduced
// (sequence parallelism is not used for inference) and the vocab-parallel logits are
// all-gathered. Dropout is off.
func (m *GPTModel) Decode(kc *KVCache, tokens [][]int64, pos int) (*tensor.Tensor, error) {
	c := &m.Cfg
	if !m.Par.First() || !m.Par.Last() {
		return nil, fmt.Errorf("decode: the model is one pipeline stage of %d; inference needs the whole model (--pipeline-model-parallel-size 1)", m.Par.PPSize)
	}
	if len(tokens) != kc.B {
		return nil, fmt.Errorf("decode: %d token rows for a cache of batch %d", len(tokens), kc.B)
	}
	n := len(tokens[0])
	for i, row := range tokens {
		if len(row) != n {
			return nil, fmt.Errorf("decode: row %d has %d tokens, row 0 has %d; every row needs the same chunk length", i, len(row), n)
		}
	}
	switch {
	case n == 0:
		return nil, fmt.Errorf("decode: empty chunk")
	case pos < 0 || pos > kc.Len:
		return nil, fmt.Errorf("decode: position %d, but the cache holds %d positions", pos, kc.Len)
	case pos+n > kc.MaxLen:
		return nil, fmt.Errorf("decode: positions up to %d exceed the cache's %d", pos+n, kc.MaxLen)
	case m.PosEmb != nil && pos+n > c.MaxPositionEmbeddings:
		return nil, fmt.Errorf("decode: positions up to %d exceed --max-position-embeddings %d", pos+n, c.MaxPositionEmbeddings)
	}
	kc.grow(m, n)
	b, h, N := kc.B, c.HiddenSize, n*kc.B
	s := &kc.sc
	// Token ids and positions in [s, b] order.
	iv, pv := s.hostIDs.I64(), s.hostPos.I64()
	for si := 0; si < n; si++ {
		for bi := 0; bi < b; bi++ {
			tok := tokens[bi][si]
			if tok < 0 || tok >= int64(c.PaddedVocabSize) {
				return nil, fmt.Errorf("decode: token id %d at [%d, %d] is outside the vocabulary of %d", tok, bi, si, c.PaddedVocabSize)
			}
			iv[si*b+bi], pv[si*b+bi] = tok, int64(pos+si)
		}
	}
	ids, posIDs := s.ids.Slice(0, N), s.pos.Slice(0, N)
	m.be.Upload(ids, s.hostIDs.Slice(0, N))
	m.be.Upload(posIDs, s.hostPos.Slice(0, N))

	x := view(s.x, N, h)
	m.be.Embedding(x, m.WordEmb.Value(), ids, m.vocabLo)
	if err := m.Par.allReduce(x, "word embeddings"); err != nil {
		return nil, err
	}
	if m.PosEmb != nil {
		tmp := view(s.tmp, N, h)
		m.be.Embedding(tmp, m.PosEmb.Value(), posIDs, 0)
		m.be.Add(x, x, tmp)
	}
	if m.EmbNorm != nil {
		y := view(s.y, N, h)
		m.EmbNorm.Forward(m.be, y, x, m.inferNormStash(kc, N))
		x, s.x, s.y = y, s.y, s.x
	}
	for i, l := range m.Layers {
		y := view(s.y, N, h)
		if err := l.decode(m, kc, i, y, x, n, pos); err != nil {
			return nil, fmt.Errorf("decode: layer %d: %w", l.Index, err)
		}
		x, s.x, s.y = y, s.y, s.x
	}
	kc.Len = pos + n
	// Only the last position's logits are needed: rows (n−1)·b … n·b in [s, b] order.
	last := x.Slice((n-1)*b, n*b)
	fin := view(s.fin, b, h)
	m.FinalNorm.Forward(m.be, fin, last, normStash{mean: s.mean.Slice(0, b), rstd: s.rstd.Slice(0, b)})
	vl := m.outputWeight().Data.Dim(0)
	logits := view(s.logits, b, vl)
	m.cast.forward(m.be, logits, fin, m.headWeight())
	m.be.Download(s.hostLogits, s.logits)
	return m.GatherLogits(s.hostLogits, b, vl)
}

func (m *GPTModel) inferNormStash(kc *KVCache, rows int) normStash {
	return normStash{mean: kc.sc.mean.Slice(0, rows), rstd: kc.sc.rstd.Slice(0, rows)}
}

// GatherLogits joins the TP ranks' vocabulary shards [b, V/TP] (host logits of b rows)
// into [b, Vpad] on the host. Collective over TP.
func (m *GPTModel) GatherLogits(local *tensor.Tensor, b, vl int) (*tensor.Tensor, error) {
	tp := m.Par.tpSize()
	out := tensor.New(tensor.F32, b, vl*tp)
	if tp == 1 {
		copy(out.F32(), local.F32())
		return out, nil
	}
	all := tensor.New(tensor.F32, tp*b*vl)
	if err := m.Par.TP.AllGather(all, local); err != nil {
		return nil, fmt.Errorf("tensor-parallel all-gather of the logits: %w", err)
	}
	av, ov := all.F32(), out.F32()
	for r := 0; r < tp; r++ {
		for bi := 0; bi < b; bi++ {
			copy(ov[bi*vl*tp+r*vl:bi*vl*tp+(r+1)*vl], av[(r*b+bi)*vl:(r*b+bi+1)*vl])
		}
	}
	return out, nil
}

// decode is TransformerLayer.Forward for a chunk of n positions starting at pos, with the
// keys and values of earlier positions read from (and this chunk's written to) the cache's
// layer li. x and out are [n·b, h] in [s, b] order.
func (l *TransformerLayer) decode(m *GPTModel, kc *KVCache, li int, out, x *tensor.Tensor, n, pos int) error {
	c := l.cfg
	be := m.be
	s := &kc.sc
	b, h, hn := kc.B, c.HiddenSize, c.KVChannels
	N := n * b
	ns := m.inferNormStash(kc, N)
	ln1 := view(s.ln1, N, h)
	l.InNorm.Forward(be, ln1, x, ns)

	// Attention over the cached keys.
	q := view(s.q, b, l.heads, n, hn)
	kn, vn := view(s.kn, b, l.groups, n, hn), view(s.vn, b, l.groups, n, hn)
	rp := l.rope(false)
	rp.PosOffset = pos
	var ms *mlaStash
	if l.MLA != nil {
		ms = kc.mlaStash(m, l, n)
		if err := l.MLA.forward(be, l.par, ms, q, kn, vn, ln1, rp); err != nil {
			return err
		}
	} else if qkv := view(s.qkv, N, l.QKV.Out); l.QNorm != nil {
		l.QKV.Forward(be, qkv, ln1)
		qIn, kIn := view(s.qIn, b, l.heads, n, hn), view(s.kIn, b, l.groups, n, hn)
		be.SplitQKV(qIn, kIn, vn, qkv, l.groups, l.heads/l.groups)
		hs := func(rows int) normStash { return normStash{mean: s.hMean.Slice(0, rows), rstd: s.hRstd.Slice(0, rows)} }
		l.QNorm.Forward(be, rowsOf(q), rowsOf(qIn), hs(b*l.heads*n))
		l.KNorm.Forward(be, rowsOf(kn), rowsOf(kIn), hs(b*l.groups*n))
	} else {
		l.QKV.Forward(be, qkv, ln1)
		be.SplitQKV(q, kn, vn, qkv, l.groups, l.heads/l.groups)
	}
	if c.Rotary() && l.MLA == nil {
		be.RoPE(q, q, rp)
		be.RoPE(kn, kn, rp)
	}
	T := pos + n
	perm := []int{2, 0, 1, 3} // [b, G, n, hn] → [n, b, G, hn]
	be.Permute(kc.k[li].Slice(pos, T), kn, perm)
	be.Permute(kc.v[li].Slice(pos, T), vn, perm)
	kt, vt := view(s.kt, b, l.groups, T, hn), view(s.vt, b, l.groups, T, hn)
	back := []int{1, 2, 0, 3} // [T, b, G, hn] → [b, G, T, hn]
	be.Permute(kt, kc.k[li].Slice(0, T), back)
	be.Permute(vt, kc.v[li].Slice(0, T), back)
	o := view(s.o, b, l.heads, n, hn)
	ap := l.attnParams()
	ap.QOffset = pos
	be.Attention(o, view(s.lse, b, l.heads, n), q, kt, vt, ap)
	o2 := view(s.o2, N, l.Proj.In)
	l.mergeHeads(be, o2, o, ms)
	a := view(s.a, N, h)
	l.Proj.Matmul(be, a, o2)
	if err := l.par.allReduce(a, "linear_proj output"); err != nil {
		return err
	}
	l.Proj.AddBias(be, a)

	res1 := x
	if c.ApplyResidualConnectionPostLayernorm {
		res1 = ln1
	}
	mo := view(s.m, N, h)
	if c.ParallelAttention {
		mlpIn := ln1
		if l.PreMLP != nil { // Falcon-40B: the MLP's own norm of x
			mlpIn = view(s.ln2, N, h)
			l.PreMLP.Forward(be, mlpIn, x, ns)
		}
		if err := l.decodeMLP(be, s, mo, mlpIn, N); err != nil {
			return err
		}
		be.Add(out, res1, a)
		be.Add(out, out, mo)
		return nil
	}
	h1 := view(s.h1, N, h)
	be.Add(h1, res1, a)
	ln2 := view(s.ln2, N, h)
	l.PreMLP.Forward(be, ln2, h1, ns)
	if err := l.decodeMLP(be, s, mo, ln2, N); err != nil {
		return err
	}
	res2 := h1
	if c.ApplyResidualConnectionPostLayernorm {
		res2 = ln2
	}
	be.Add(out, res2, mo)
	return nil
}

// decodeMLP is fc1 → activation → fc2 → TP all-reduce → fc2 bias, into out [N, h].
func (l *TransformerLayer) decodeMLP(be kernels.Backend, s *inferScratch, out, in *tensor.Tensor, N int) error {
	if l.MoE != nil {
		if err := l.MoE.Forward(be, l.cast, s.moe, out, in); err != nil {
			return err
		}
		return l.par.allReduce(out, "MoE output")
	}
	f, g := view(s.f, N, l.FC1.Out), view(s.g, N, l.FC2.In)
	l.FC1.Forward(be, f, in)
	l.cfg.activation(be, g, f)
	l.FC2.Matmul(be, out, g)
	if err := l.par.allReduce(out, "linear_fc2 output"); err != nil {
		return err
	}
	l.FC2.AddBias(be, out)
	return nil
}

// mlaStash is multi-latent attention's scratch for chunks of n positions (decoding uses a
// prefill length and 1, so there are few).
func (kc *KVCache) mlaStash(m *GPTModel, l *TransformerLayer, n int) *mlaStash {
	if st := kc.mla[n]; st != nil {
		return st
	}
	if kc.mla == nil {
		kc.mla = map[int]*mlaStash{}
	}
	st := l.MLA.newStash(m.be, tensor.F32, l.par.tpSize(), n, kc.B)
	kc.mla[n] = st
	return st
}
