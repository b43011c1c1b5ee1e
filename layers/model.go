package layers

import (
	"fmt"
	"math"

	"github.com/gomegatron/gomegatron/kernels"
	"github.com/gomegatron/gomegatron/tensor"
)

// GPTModel is Megatron's GPTModel at TP=1, PP=1: embedding (+ learned positions, + BLOOM's
// embedding LayerNorm), the transformer layers, the final norm and the output layer (tied to
// the word embeddings unless --untie-embeddings-and-output-weights), with the vocab-parallel
// cross entropy as the loss.
type GPTModel struct {
	Cfg       Config
	Params    Params
	be        kernels.Backend
	WordEmb   *Param
	PosEmb    *Param // learned_absolute only
	EmbNorm   *Norm  // BLOOM only
	Layers    []*TransformerLayer
	FinalNorm *Norm
	Output    *Param // nil when tied: the word embeddings serve as the output layer
}

// NewGPTModel builds the model with Megatron's initialisation: weights N(0, σ²) with
// σ = --init-method-std, the output projections of each layer (linear_proj, linear_fc2)
// with σ/sqrt(2·num_layers), biases 0 and norm weights 1. The seed fixes every value.
func NewGPTModel(be kernels.Backend, cfg Config, seed uint64) (*GPTModel, error) {
	if err := cfg.Finalize(); err != nil {
		return nil, err
	}
	m := &GPTModel{Cfg: cfg, be: be}
	c := &m.Cfg
	ps := &paramSet{be: be}
	m.WordEmb = ps.add("embedding.word_embeddings.weight", 0, c.PaddedVocabSize, c.HiddenSize)
	if c.PositionEmbeddingType == "learned_absolute" {
		m.PosEmb = ps.add("embedding.position_embeddings.weight", -1, c.MaxPositionEmbeddings, c.HiddenSize)
	}
	if c.EmbeddingLayerNorm {
		m.EmbNorm = newNorm(ps, "embedding.word_embeddings_layernorm", c, c.HiddenSize)
	}
	for i := 0; i < c.NumLayers; i++ {
		m.Layers = append(m.Layers, newTransformerLayer(ps, c, i))
	}
	m.FinalNorm = newNorm(ps, "decoder.final_layernorm", c, c.HiddenSize)
	if c.UntieEmbeddingsAndOutputWeights {
		m.Output = ps.add("output_layer.weight", 0, c.PaddedVocabSize, c.HiddenSize)
	}
	m.Params = ps.all
	m.initWeights(seed)
	return m, nil
}

func (m *GPTModel) initWeights(seed uint64) {
	rng := newSplitMix(seed)
	std := m.Cfg.InitMethodStd
	outStd := std / math.Sqrt(2*float64(m.Cfg.NumLayers))
	for _, p := range m.Params {
		switch {
		case p.Data.Rank() == 1 && hasSuffix(p.Name, "norm.weight"):
			m.be.Fill(p.Data, 1)
		case p.Data.Rank() == 1:
			m.be.Fill(p.Data, 0)
		case hasSuffix(p.Name, "linear_proj.weight") || hasSuffix(p.Name, "linear_fc2.weight"):
			initNormal(m.be, p, outStd, rng)
		default:
			initNormal(m.be, p, std, rng)
		}
	}
}

// outputWeight is the [Vpad, h] matrix of the output layer.
func (m *GPTModel) outputWeight() *Param {
	if m.Output != nil {
		return m.Output
	}
	return m.WordEmb
}

// Stash holds one microbatch's activations and the backward scratch for a fixed [s, b].
type Stash struct {
	S, B      int
	ids       *tensor.Tensor // [s·b] I64 token ids in [s, b] order
	posIDs    *tensor.Tensor // [s·b] I64 positions
	targets   *tensor.Tensor // [s·b] I64
	lossMask  []float32      // [s·b] host
	emb       *tensor.Tensor // [N, h] embedding output (input of layer 0)
	embPre    *tensor.Tensor // [N, h] before the embedding norm (BLOOM)
	embMask   *tensor.Tensor
	embNorm   normStash
	layers    []*layerStash
	final     *tensor.Tensor // [N, h] final norm output
	finalNorm normStash
	Logits    *tensor.Tensor // [N, Vpad] in [s, b] order
	mx, se    *tensor.Tensor // [N]
	tl        *tensor.Tensor // [N]
	losses    []float32      // [N] per-token loss (host)
	grads     *layerGrads
	dlogits   *tensor.Tensor
	dh, dh2   *tensor.Tensor
	hostN     *tensor.Tensor // [N] F32 host scratch
	hostIDs   *tensor.Tensor // [N] I64 host scratch
	hostTg    *tensor.Tensor // [N] I64 host scratch
	dloss     *tensor.Tensor // [N] d loss / d per-token loss
	mxH, seH  []float32
}

// NewStash allocates the activations for microbatches of b sequences of length s.
func (m *GPTModel) NewStash(s, b int) *Stash {
	c := &m.Cfg
	n, h := s*b, c.HiddenSize
	f32 := func(shape ...int) *tensor.Tensor { return m.be.Alloc(tensor.F32, shape...) }
	st := &Stash{
		S: s, B: b,
		ids: m.be.Alloc(tensor.I64, n), posIDs: m.be.Alloc(tensor.I64, n), targets: m.be.Alloc(tensor.I64, n),
		lossMask: make([]float32, n),
		emb:      f32(n, h), final: f32(n, h), finalNorm: newNormStash(m.be, n),
		Logits: f32(n, c.PaddedVocabSize), mx: f32(n), se: f32(n), tl: f32(n),
		losses: make([]float32, n), grads: newLayerGrads(m.be, c, s, b),
		dlogits: f32(n, c.PaddedVocabSize), dh: f32(n, h), dh2: f32(n, h), hostN: tensor.New(tensor.F32, n),
		hostIDs: tensor.New(tensor.I64, n), hostTg: tensor.New(tensor.I64, n), dloss: f32(n),
		mxH: make([]float32, n), seH: make([]float32, n),
	}
	if m.EmbNorm != nil {
		st.embPre, st.embNorm = f32(n, h), newNormStash(m.be, n)
	}
	if c.HiddenDropout > 0 {
		st.embMask = m.be.Alloc(tensor.U8, n, h)
	}
	for range m.Layers {
		st.layers = append(st.layers, newLayerStash(m.be, c, s, b))
	}
	pos := tensor.New(tensor.I64, n)
	pv := pos.I64()
	for i := range pv {
		pv[i] = int64(i / b)
	}
	m.be.Upload(st.posIDs, pos)
	return st
}

// Batch is one microbatch: tokens and labels [b, s] (row-major, as Megatron's data loader
// yields them) and the loss mask [b, s].
type Batch struct {
	Tokens, Labels []int64
	LossMask       []float32
}

// Forward runs the model on a microbatch and returns Σ mask·loss and Σ mask, where loss is
// the per-token cross entropy of the labels. Dropout draws from (seed, step).
func (m *GPTModel) Forward(st *Stash, bt Batch, seed, step uint64) (lossSum, tokens float64, err error) {
	s, b := st.S, st.B
	n := s * b
	if len(bt.Tokens) != n || len(bt.Labels) != n || len(bt.LossMask) != n {
		return 0, 0, fmt.Errorf("batch has %d tokens, %d labels, %d mask entries; the stash is [b=%d, s=%d]", len(bt.Tokens), len(bt.Labels), len(bt.LossMask), b, s)
	}
	c := &m.Cfg
	if c.PositionEmbeddingType == "learned_absolute" && s > c.MaxPositionEmbeddings {
		return 0, 0, fmt.Errorf("sequence length %d exceeds --max-position-embeddings %d", s, c.MaxPositionEmbeddings)
	}
	// Transpose [b, s] → [s, b].
	iv, tv := st.hostIDs.I64(), st.hostTg.I64()
	for bi := 0; bi < b; bi++ {
		for si := 0; si < s; si++ {
			tok := bt.Tokens[bi*s+si]
			if tok < 0 || tok >= int64(c.PaddedVocabSize) {
				return 0, 0, fmt.Errorf("token id %d at [%d, %d] is outside the vocabulary of %d", tok, bi, si, c.PaddedVocabSize)
			}
			iv[si*b+bi] = tok
			tv[si*b+bi] = bt.Labels[bi*s+si]
			st.lossMask[si*b+bi] = bt.LossMask[bi*s+si]
		}
	}
	m.be.Upload(st.ids, st.hostIDs)
	m.be.Upload(st.targets, st.hostTg)

	m.embed(st, seed, step)
	x := st.emb
	for i, l := range m.Layers {
		ls := st.layers[i]
		ls.dropSeed, ls.dropOffs = seed, dropOffset(step, i+1, n*c.HiddenSize)
		l.Forward(m.be, ls, x)
		x = ls.out
	}
	m.FinalNorm.Forward(m.be, st.final, x, st.finalNorm)
	w := m.outputWeight()
	m.be.Gemm(kernels.GemmParams{TransB: true, M: n, N: c.PaddedVocabSize, K: c.HiddenSize, Alpha: 1, Batch: 1}, st.final, w.Data, st.Logits)
	return m.loss(st)
}

// dropOffset gives each dropout site of each step its own counter range.
func dropOffset(step uint64, site, n int) uint64 {
	return step<<40 + uint64(site)*uint64(2*n)
}

func (m *GPTModel) embed(st *Stash, seed, step uint64) {
	c := &m.Cfg
	out := st.emb
	if m.EmbNorm != nil {
		out = st.embPre
	}
	m.be.Embedding(out, m.WordEmb.Data, st.ids, 0)
	if m.PosEmb != nil {
		m.be.Embedding(st.dh, m.PosEmb.Data, st.posIDs, 0)
		m.be.Add(out, out, st.dh)
	}
	if m.EmbNorm != nil {
		m.EmbNorm.Forward(m.be, st.emb, st.embPre, st.embNorm)
	}
	if p := float32(c.HiddenDropout); p > 0 {
		m.be.Dropout(st.emb, st.embMask, st.emb, p, seed, dropOffset(step, 0, st.S*st.B*c.HiddenSize))
	}
}

// loss computes per-token cross entropy from the logits: log Σexp − target logit.
func (m *GPTModel) loss(st *Stash) (lossSum, tokens float64, err error) {
	m.be.RowMax(st.mx, st.Logits)
	m.be.SumExp(st.se, st.Logits, st.mx)
	m.be.TargetLogit(st.tl, st.Logits, st.targets, 0)
	n := st.S * st.B
	mx, se, tl := st.mxH, st.seH, st.hostN.F32()
	m.be.Download(st.hostN, st.mx)
	copy(mx, tl)
	m.be.Download(st.hostN, st.se)
	copy(se, tl)
	m.be.Download(st.hostN, st.tl)
	for i := 0; i < n; i++ {
		st.losses[i] = float32(math.Log(float64(se[i]))) + mx[i] - tl[i]
		if st.lossMask[i] != 0 {
			lossSum += float64(st.losses[i]) * float64(st.lossMask[i])
			tokens += float64(st.lossMask[i])
		}
	}
	return lossSum, tokens, nil
}

// TokenLosses returns the per-token losses of the last Forward in [b, s] order.
func (st *Stash) TokenLosses() []float32 {
	out := make([]float32, len(st.losses))
	for si := 0; si < st.S; si++ {
		for bi := 0; bi < st.B; bi++ {
			out[bi*st.S+si] = st.losses[si*st.B+bi]
		}
	}
	return out
}

// Backward accumulates into every Param.Grad the gradient of Σ_n scale·mask_n·loss_n
// (Megatron divides by the token count and the number of microbatches through scale).
func (m *GPTModel) Backward(st *Stash, scale float32) {
	c := &m.Cfg
	n := st.S * st.B
	dl := st.hostN.F32()
	for i := range dl {
		dl[i] = st.lossMask[i] * scale
	}
	m.be.Upload(st.dloss, st.hostN)
	m.be.CrossEntropyBackward(st.dlogits, st.Logits, st.mx, st.se, st.targets, st.dloss, 0)
	w := m.outputWeight()
	h, v := c.HiddenSize, c.PaddedVocabSize
	// d final = dlogits·W; dW += dlogitsᵀ·final.
	m.be.Gemm(kernels.GemmParams{M: n, N: h, K: v, Alpha: 1, Batch: 1}, st.dlogits, w.Data, st.dh)
	m.be.Gemm(kernels.GemmParams{TransA: true, M: v, N: h, K: n, Alpha: 1, Beta: 1, Batch: 1}, st.dlogits, st.final, w.Grad)
	last := st.emb
	if len(m.Layers) > 0 {
		last = st.layers[len(m.Layers)-1].out
	}
	m.FinalNorm.Backward(m.be, st.dh2, st.dh, last, st.finalNorm)
	d := st.dh2
	for i := len(m.Layers) - 1; i >= 0; i-- {
		m.Layers[i].Backward(m.be, st.layers[i], st.grads, d, d)
	}
	// Embedding backward.
	if p := float32(c.HiddenDropout); p > 0 {
		m.be.DropoutBackward(d, d, st.embMask, p)
	}
	if m.EmbNorm != nil {
		m.EmbNorm.Backward(m.be, st.dh, d, st.embPre, st.embNorm)
		d = st.dh
	}
	m.be.EmbeddingBackward(m.WordEmb.Grad, d, st.ids, 0)
	if m.PosEmb != nil {
		m.be.EmbeddingBackward(m.PosEmb.Grad, d, st.posIDs, 0)
	}
}

// HiddenState returns layer i's output [N, h] ([s, b] order) from the last Forward;
// i = -1 is the embedding output.
func (st *Stash) HiddenState(i int) *tensor.Tensor {
	if i < 0 {
		return st.emb
	}
	return st.layers[i].out
}

// FinalHidden is the output of the final norm.
func (st *Stash) FinalHidden() *tensor.Tensor { return st.final }
