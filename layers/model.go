package layers

import (
	"fmt"
	"math"

	"github.com/gomegatron/gomegatron/comm"
	"github.com/gomegatron/gomegatron/kernels"
	"github.com/gomegatron/gomegatron/tensor"
)

// GPTModel is Megatron's GPTModel, or one pipeline stage of it: on the first stage the
// embedding (+ learned positions, + BLOOM's embedding LayerNorm), this stage's transformer
// layers, and on the last stage the final norm, the output layer (tied to the word
// embeddings unless --untie-embeddings-and-output-weights) and the vocab-parallel cross
// entropy. Every tensor is this rank's tensor-parallel shard.
type GPTModel struct {
	Cfg       Config
	Par       Parallel
	Params    Params
	be        kernels.Backend
	cast      *castScratch // GEMMs on 16-bit weight copies (Param.Low)
	normHead  normHead     // --use-normhead: the output layer's normalised rows
	WordEmb   *Param       // first stage
	PosEmb    *Param       // first stage, learned_absolute only
	EmbNorm   *Norm        // first stage, BLOOM only
	Layers    []*TransformerLayer
	FinalNorm *Norm   // last stage
	Output    *Param  // last stage; nil when tied on a single stage (the word embeddings serve)
	vocabLo   int     // first vocabulary id of this TP rank's shard
	chunks    []chunk // recompute chunking of Layers (nil: none)
	// GradsReady, when set, is called during Backward with parameters whose gradients are
	// final for this backward (for --overlap-grad-reduce).
	GradsReady func([]*Param)
	fp8        *FP8Recipe     // nil: no FP8
	fp8Amax    *tensor.Tensor // [fp8 linears × roles] F32 on the backend: this step's amaxes
	shared     []*layerStash  // activations shared by recomputed layers
	act        tensor.DType   // activations' dtype (SetActivationDType)
	// AuxLossScale multiplies the gradients of MoE layers' auxiliary losses: the main loss's
	// scale over the step's microbatch count, as Megatron's MoEAuxLossAutoScaler is set.
	AuxLossScale float32
}

// NewGPTModel builds a whole model on one process (TP = PP = 1).
func NewGPTModel(be kernels.Backend, cfg Config, seed uint64) (*GPTModel, error) {
	return NewParallelGPTModel(be, cfg, Parallel{}, seed)
}

// Specs describes the parameters (names, local and full shapes, TP partitioning) of one
// (TP rank, PP stage) shard without allocating them: what checkpoint conversion needs to
// lay out a model of any size.
func Specs(cfg Config, par Parallel) (Params, error) {
	m, err := newGPTModel(nil, cfg, par)
	if err != nil {
		return nil, err
	}
	return m.Params, nil
}

// NewParallelGPTModel builds this rank's shard of the model. Weights follow Megatron's
// initialisation — N(0, σ²) with σ = --init-method-std, linear_proj and linear_fc2 with
// σ/sqrt(2·num_layers), biases 0, norm weights 1 — drawn per full tensor from (seed, global
// name) and then sharded, so every parallel layout starts from identical weights.
func NewParallelGPTModel(be kernels.Backend, cfg Config, par Parallel, seed uint64) (*GPTModel, error) {
	m, err := newGPTModel(be, cfg, par)
	if err != nil {
		return nil, err
	}
	m.initWeights(seed)
	return m, nil
}

func newGPTModel(be kernels.Backend, cfg Config, par Parallel) (*GPTModel, error) {
	if par.PPSize == 0 {
		par.PPSize = 1
	}
	if par.VPSize == 0 {
		par.VPSize = 1
	}
	cfg.TensorModelParallelSize = par.tpSize()
	if err := cfg.Finalize(); err != nil {
		return nil, err
	}
	if cfg.NumLayers%par.PPSize != 0 {
		return nil, fmt.Errorf("--num-layers %d is not divisible by --pipeline-model-parallel-size %d", cfg.NumLayers, par.PPSize)
	}
	if cfg.NumExperts > 0 && par.cpSize() > 1 {
		// Sinkhorn balances over every token of the microbatch, and the jitter numbers them;
		// a CP rank holds a part.
		if cfg.MoERouterLoadBalancingType == "sinkhorn" {
			return nil, fmt.Errorf("--moe-router-load-balancing-type sinkhorn with --context-parallel-size %d is not supported", par.cpSize())
		}
		if cfg.MoEInputJitterEps > 0 {
			return nil, fmt.Errorf("--moe-input-jitter-eps with --context-parallel-size %d is not supported", par.cpSize())
		}
	}
	if cfg.NumLayers%(par.PPSize*par.VPSize) != 0 {
		return nil, fmt.Errorf("--num-layers %d is not divisible by pipeline size %d × virtual stages %d", cfg.NumLayers, par.PPSize, par.VPSize)
	}
	m := &GPTModel{Cfg: cfg, Par: par, be: be, act: tensor.F32, AuxLossScale: 1}
	c := &m.Cfg
	tp := par.tpSize()
	m.cast = &castScratch{be: be}
	ps := &paramSet{be: be, tp: tp, cast: m.cast, auxScale: &m.AuxLossScale, cpx: &cpScratch{}}
	m.vocabLo, _ = ShardRange(c.PaddedVocabSize, par.tpRank(), tp)
	if par.First() {
		m.WordEmb = ps.add("embedding.word_embeddings.weight", 0, c.PaddedVocabSize, c.HiddenSize)
		m.WordEmb.Lookup = true
		if c.PositionEmbeddingType == "learned_absolute" {
			m.PosEmb = ps.add("embedding.position_embeddings.weight", -1, c.MaxPositionEmbeddings, c.HiddenSize)
			m.PosEmb.Lookup = true
		}
		if c.EmbeddingLayerNorm {
			m.EmbNorm = newNorm(ps, "embedding.word_embeddings_layernorm", c, c.HiddenSize)
		}
	}
	per := c.NumLayers / (par.PPSize * par.VPSize)
	first := par.VPRank*(c.NumLayers/par.VPSize) + par.PPRank*per
	for i := 0; i < per; i++ {
		m.Layers = append(m.Layers, newTransformerLayer(ps, c, par, first+i, i))
	}
	if par.Last() {
		m.FinalNorm = newNorm(ps, "decoder.final_layernorm", c, c.HiddenSize)
		switch {
		case c.UntieEmbeddingsAndOutputWeights:
			m.Output = ps.add("output_layer.weight", 0, c.PaddedVocabSize, c.HiddenSize)
		case !par.First():
			// The tied output layer's copy on the last stage: same initial values as the word
			// embeddings, grads summed over the embedding group, left out of the grad norm.
			m.Output = ps.add("output_layer.weight", 0, c.PaddedVocabSize, c.HiddenSize)
			m.Output.Shared, m.Output.SharedEmbedding = true, true
			m.Output.InitKey = "embedding.word_embeddings.weight"
		}
	}
	if m.WordEmb != nil && par.PPSize > 1 && !c.UntieEmbeddingsAndOutputWeights {
		m.WordEmb.SharedEmbedding = true
	}
	m.Params = ps.all
	return m, nil
}

func (m *GPTModel) initWeights(seed uint64) {
	std := m.Cfg.InitMethodStd
	outStd := std / math.Sqrt(2*float64(m.Cfg.NumLayers))
	r, size := m.Par.tpRank(), m.Par.tpSize()
	for _, p := range m.Params {
		switch {
		case p.Data.Rank() == 1 && hasSuffix(p.Name, "norm.weight") && !m.Cfg.ApplyLayernorm1p:
			m.be.Fill(p.Data, 1)
		case p.Data.Rank() == 1:
			m.be.Fill(p.Data, 0)
		case hasSuffix(p.Name, "linear_proj.weight") || hasSuffix(p.Name, "linear_fc2.weight") ||
			hasSuffix(p.Name, "experts.weight2"): // output_layer_init_method (Xavier: the same)
			initShard(m.be, p, outStd, m.Cfg.InitMethodXavierUniform, seed, r, size)
		default:
			initShard(m.be, p, std, m.Cfg.InitMethodXavierUniform, seed, r, size)
		}
	}
}

// SetActivationDType chooses the dtype of the activations and their gradients, F32
// (the default) or BF16 as Megatron keeps them under --bf16: half the activation memory
// and bandwidth, with each op computing in F32 and rounding what it stores (see
// kernels.Backend). Weights, their gradients, the norms' statistics and the loss stay
// F32; GEMMs read 16-bit weight copies (Param.Low) when present. Call it before NewStash.
// FP8 GEMMs write F32 outputs, so FP8 keeps F32 activations.
func (m *GPTModel) SetActivationDType(dt tensor.DType) error {
	switch {
	case dt != tensor.F32 && dt != tensor.BF16:
		return fmt.Errorf("activations in %v: want F32 or BF16", dt)
	case dt != tensor.F32 && m.fp8 != nil:
		return fmt.Errorf("activations in %v: FP8 GEMMs need F32 activations", dt)
	}
	if dt != m.act {
		m.act, m.shared = dt, nil
	}
	return nil
}

// ActivationDType is the activations' dtype (SetActivationDType).
func (m *GPTModel) ActivationDType() tensor.DType { return m.act }

// outputWeight is this rank's [Vpad/TP, h] output-layer matrix.
func (m *GPTModel) outputWeight() *Param {
	if m.Output != nil {
		return m.Output
	}
	return m.WordEmb
}

// Stash holds one microbatch's activations and the backward scratch for a fixed [s, b].
// Row counts: N = s·b; Nl = N/TP with sequence parallelism, else N.
type Stash struct {
	S, B     int            // this rank's sequence length (S/CP with context parallelism) and batch
	fullS    int            // the sequence length of a Batch
	cpTokens float64        // Σ loss-mask tokens over the context-parallel group (last stage)
	ids      *tensor.Tensor // [N] I64 token ids in [s, b] order
	posIDs   *tensor.Tensor // [N] I64 positions
	posStale bool           // posIDs do not hold 0…s−1 (unwritten, or a Batch's Positions)
	ropePos  *tensor.Tensor // [b, s] I32 Batch.Positions for RoPE (nil: none this batch)
	keyStart *tensor.Tensor // [b, s] I32 Batch.DocStart (nil: none this batch)
	ropeBuf  *tensor.Tensor // allocations behind ropePos and keyStart
	keyBuf   *tensor.Tensor
	// keyChunks are keyStart's two context-parallel chunks, [b, s/2] each (nil without CP).
	keyChunks [2]*tensor.Tensor
	hostI32   *tensor.Tensor // [N] I32 host scratch
	cpBatch   Batch          // this rank's chunks of a context-parallel batch, [N] each
	targets   *tensor.Tensor // [N] I64
	lossMask  []float32      // [N] host
	embFull   *tensor.Tensor // [N, h] summed embeddings
	embPre    *tensor.Tensor // [Nl, h] before BLOOM's embedding norm
	emb       *tensor.Tensor // [Nl, h] input of the first layer
	embMask   *tensor.Tensor
	embNorm   normStash
	input     *tensor.Tensor // [Nl, h] stage input received from the previous stage
	layers    []*layerStash
	chunkIn   []*tensor.Tensor // saved input of each recomputed chunk
	lastOut   *tensor.Tensor   // stage output when the last layer is recomputed
	seed      uint64           // dropout seed and step of the last Forward (for recompute)
	step      uint64
	final     *tensor.Tensor // [Nl, h] final norm output
	finalFull *tensor.Tensor // [N, h]
	finalNorm normStash
	Logits    *tensor.Tensor // [N, Vpad/TP] in [s, b] order
	mx, se    *tensor.Tensor // [N]
	tl        *tensor.Tensor // [N]
	losses    []float32      // [N] per-token loss (host)
	grads     *layerGrads
	dlogits   *tensor.Tensor
	dfinalF   *tensor.Tensor // [N, h] partial d(final) before the TP reduction
	dfinal    *tensor.Tensor // [Nl, h]
	dh        *tensor.Tensor // [Nl, h] gradient flowing down the stage
	dembF     *tensor.Tensor // [N, h]
	hostN     *tensor.Tensor // [N] F32 host scratch
	hostIDs   *tensor.Tensor // [N] I64 host scratch
	hostTg    *tensor.Tensor // [N] I64 host scratch
	dloss     *tensor.Tensor // [N] d loss / d per-token loss
	mxH, seH  []float32
}

// NewStash allocates the activations for microbatches of b sequences of length s (each
// context-parallel rank holds s/CP of them).
func (m *GPTModel) NewStash(s, b int) *Stash {
	full := s
	if cp := m.Par.cpSize(); cp > 1 {
		if s%(2*cp) != 0 {
			panic(fmt.Sprintf("layers: sequence length %d is not divisible by 2 × context-parallel size %d", s, cp))
		}
		s /= cp
	}
	c := &m.Cfg
	sp := m.Par.sp()
	n, h := s*b, c.HiddenSize
	nl := n
	if sp {
		nl = n / m.Par.tpSize()
	}
	be := m.be
	f32 := func(shape ...int) *tensor.Tensor { return be.Alloc(tensor.F32, shape...) }
	act := func(shape ...int) *tensor.Tensor { return be.Alloc(m.act, shape...) }
	st := &Stash{S: s, B: b, fullS: full, lossMask: make([]float32, n), losses: make([]float32, n),
		hostN: tensor.New(tensor.F32, n), hostIDs: tensor.New(tensor.I64, n), hostTg: tensor.New(tensor.I64, n),
		ids: be.Alloc(tensor.I64, n), targets: be.Alloc(tensor.I64, n), dh: act(nl, h),
		mxH: make([]float32, n), seH: make([]float32, n)}
	if m.Par.cpSize() > 1 {
		st.cpBatch = Batch{Tokens: make([]int64, n), Labels: make([]int64, n), LossMask: make([]float32, n),
			Positions: make([]int64, n), DocStart: make([]int32, n)}
	}
	if m.Par.First() {
		st.posIDs = be.Alloc(tensor.I64, n)
		st.embFull, st.emb = rowPair(be, m.act, sp, n, nl, h)
		if !sp {
			st.emb = act(n, h) // keep the summed embeddings apart from the layer input
		}
		st.dembF = act(n, h)
		if m.EmbNorm != nil {
			st.embPre, st.embNorm = act(nl, h), newNormStash(be, nl)
		}
		if c.HiddenDropout > 0 {
			st.embMask = be.Alloc(tensor.U8, nl, h)
		}
		st.posStale = true // the first Forward writes 0…s−1 (setDocuments)
	} else {
		st.input = act(nl, h)
	}
	m.allocLayerStashes(st, s, b)
	if len(m.Layers) > 0 {
		st.grads = m.Layers[0].newGrads(be, m.act, s, b)
		for _, l := range m.Layers[1:] { // MoE and dense layers may alternate (--moe-layer-freq)
			l.completeGrads(be, st.grads, m.act, s, b)
		}
	}
	if m.Par.Last() {
		vl := c.PaddedVocabSize / m.Par.tpSize()
		st.finalFull, st.final = rowPair(be, m.act, sp, n, nl, h)
		st.finalNorm = newNormStash(be, nl)
		st.Logits, st.dlogits = act(n, vl), act(n, vl)
		st.mx, st.se, st.tl, st.dloss = f32(n), f32(n), f32(n), f32(n)
		st.dfinalF, st.dfinal = rowPair(be, m.act, sp, n, nl, h)
	}
	return st
}

// Input is the tensor a non-first stage receives its input activations into ([Nl, h]).
func (st *Stash) Input() *tensor.Tensor { return st.input }

// Output is this stage's output activations ([Nl, h]) after Forward (non-last stages).
func (st *Stash) Output() *tensor.Tensor {
	switch {
	case st.lastOut != nil:
		return st.lastOut
	case len(st.layers) == 0:
		return st.emb
	}
	return st.layers[len(st.layers)-1].out
}

// InputGrad is d loss / d input after Backward on a non-first stage ([Nl, h]).
func (st *Stash) InputGrad() *tensor.Tensor { return st.dh }

// Batch is one microbatch: tokens and labels [b, s] (row-major, as Megatron's data loader
// yields them) and the loss mask [b, s].
type Batch struct {
	Tokens, Labels []int64
	LossMask       []float32
	// Positions [b, s] are the tokens' positions when they restart with each document
	// (--reset-position-ids); nil: 0, 1, … s−1. DocStart [b, s] is each token's document
	// start (--reset-attention-mask, data/gpt.DocStarts): a token attends to none before it;
	// nil: the whole sequence.
	Positions []int64
	DocStart  []int32
}

// Eval puts the model in Megatron's eval mode until restore is called (model.eval()
// around evaluation and generation): no dropout, so validation losses are the
// deterministic model's, and Sinkhorn routers pick the top-k activations.
func (m *GPTModel) Eval() (restore func()) {
	c := &m.Cfg
	a, h, e := c.AttentionDropout, c.HiddenDropout, c.evaluating
	c.AttentionDropout, c.HiddenDropout, c.evaluating = 0, 0, true
	return func() { c.AttentionDropout, c.HiddenDropout, c.evaluating = a, h, e }
}

// Forward runs this stage on a microbatch. The first stage reads bt.Tokens; other stages read
// the activations placed in st.Input(). On the last stage it returns Σ mask·loss and Σ mask
// for the labels; elsewhere zeros, with the output in st.Output(). Dropout draws from
// (seed, step).
func (m *GPTModel) Forward(st *Stash, bt Batch, seed, step uint64) (lossSum, tokens float64, err error) {
	s, b := st.S, st.B
	if nf := st.fullS * b; len(bt.Tokens) != nf || len(bt.Labels) != nf || len(bt.LossMask) != nf {
		return 0, 0, fmt.Errorf("batch has %d tokens, %d labels, %d mask entries; the stash is [b=%d, s=%d]", len(bt.Tokens), len(bt.Labels), len(bt.LossMask), b, st.fullS)
	}
	c := &m.Cfg
	if c.PositionEmbeddingType == "learned_absolute" && st.fullS > c.MaxPositionEmbeddings {
		return 0, 0, fmt.Errorf("sequence length %d exceeds --max-position-embeddings %d", st.fullS, c.MaxPositionEmbeddings)
	}
	if m.Par.cpSize() > 1 {
		if err := checkPositions(bt.Positions, st.fullS); err != nil {
			return 0, 0, err
		}
		if err := checkDocStarts(bt.DocStart, st.fullS); err != nil {
			return 0, 0, err
		}
		bt = m.Par.cpLocal(&st.cpBatch, bt, b, st.fullS)
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
	if err := m.setDocuments(st, bt); err != nil {
		return 0, 0, err
	}

	x := st.input
	if m.Par.First() {
		if err := m.embed(st, seed, step); err != nil {
			return 0, 0, err
		}
		x = st.emb
	}
	st.seed, st.step = seed, step
	if err := m.forwardLayers(st, x); err != nil {
		return 0, 0, err
	}
	if !m.Par.Last() {
		return 0, 0, nil
	}
	m.FinalNorm.Forward(m.be, st.final, st.Output(), st.finalNorm)
	if err := m.Par.gatherRows(st.finalFull, st.final, "final layernorm output"); err != nil {
		return 0, 0, err
	}
	m.cast.forward(m.be, st.Logits, st.finalFull, m.headWeight())
	return m.loss(st)
}

// setDocuments takes the batch's per-token positions and document starts
// (--reset-position-ids, --reset-attention-mask) onto the backend: RoPE's positions, the
// learned position embeddings' ids (back to 0…s−1 when a batch has none) and attention's
// KeyStart.
func (m *GPTModel) setDocuments(st *Stash, bt Batch) error {
	s, b := st.S, st.B
	n := s * b
	st.ropePos, st.keyStart = nil, nil
	if (bt.Positions != nil && len(bt.Positions) != n) || (bt.DocStart != nil && len(bt.DocStart) != n) {
		return fmt.Errorf("batch has %d positions and %d document starts; the stash is [b=%d, s=%d]", len(bt.Positions), len(bt.DocStart), b, s)
	}
	if st.hostI32 == nil {
		st.hostI32 = tensor.New(tensor.I32, n)
	}
	h := st.hostI32.I32()
	upload := func(buf **tensor.Tensor) *tensor.Tensor {
		if *buf == nil {
			*buf = m.be.Alloc(tensor.I32, b, s)
		}
		m.be.Upload(*buf, st.hostI32)
		return *buf
	}
	if bt.Positions != nil {
		if m.Par.cpSize() == 1 { // context parallelism checked the full sequences
			if err := checkPositions(bt.Positions, s); err != nil {
				return err
			}
		}
		for i, p := range bt.Positions {
			h[i] = int32(p)
		}
		if m.Cfg.Rotary() {
			st.ropePos = upload(&st.ropeBuf)
		}
	}
	if st.posIDs != nil && (bt.Positions != nil || st.posStale) { // learned positions, [s, b] order
		pv := st.hostIDs.I64()
		for bi := 0; bi < b; bi++ {
			for si := 0; si < s; si++ {
				pv[si*b+bi] = int64(si)
				if bt.Positions != nil {
					pv[si*b+bi] = bt.Positions[bi*s+si]
				}
			}
		}
		m.be.Upload(st.posIDs, st.hostIDs)
		st.posStale = bt.Positions != nil
	}
	if bt.DocStart != nil {
		if m.Par.cpSize() == 1 { // context parallelism checked the full sequences
			if err := checkDocStarts(bt.DocStart, s); err != nil {
				return err
			}
		}
		for i, d := range bt.DocStart {
			h[i] = d
		}
		st.keyStart = upload(&st.keyBuf)
		if m.Par.cpSize() > 1 {
			m.chunkKeyStarts(st, bt.DocStart)
		}
	}
	return nil
}

// chunkKeyStarts uploads the document starts of each context-parallel chunk's queries.
func (m *GPTModel) chunkKeyStarts(st *Stash, starts []int32) {
	s, b := st.S, st.B
	sc := s / 2
	for half := range st.keyChunks {
		if st.keyChunks[half] == nil {
			st.keyChunks[half] = m.be.Alloc(tensor.I32, b, sc)
		}
		h := st.hostI32.Slice(0, b*sc).View(b, sc) // setDocuments uploaded its content
		for bi := 0; bi < b; bi++ {
			copy(h.I32()[bi*sc:(bi+1)*sc], starts[bi*s+half*sc:bi*s+(half+1)*sc])
		}
		m.be.Upload(st.keyChunks[half], h)
	}
}

// checkDocStarts requires every document start of a [b, s] batch to lie in [0, its index].
func checkDocStarts(starts []int32, s int) error {
	for i, d := range starts {
		if d < 0 || int(d) > i%s {
			return fmt.Errorf("document start %d of token [%d, %d] is outside [0, %d]", d, i/s, i%s, i%s)
		}
	}
	return nil
}

// checkPositions requires every position of a [b, s] batch to lie in [0, its index].
func checkPositions(pos []int64, s int) error {
	for i, p := range pos {
		if p < 0 || p > int64(i%s) {
			return fmt.Errorf("position %d of token [%d, %d] is outside [0, %d]", p, i/s, i%s, i%s)
		}
	}
	return nil
}

// dropOffset gives each dropout site of each step its own counter range.
func dropOffset(step uint64, site, n int) uint64 {
	return step<<40 + uint64(site)*uint64(2*n)
}

// embed computes the first layer's input: the vocab-parallel lookup summed over TP, plus
// positions, then (with SP) this rank's rows, BLOOM's norm and dropout.
func (m *GPTModel) embed(st *Stash, seed, step uint64) error {
	c := &m.Cfg
	m.be.Embedding(st.embFull, m.WordEmb.Value(), st.ids, m.vocabLo)
	if err := m.Par.allReduce(st.embFull, "word embeddings"); err != nil {
		return err
	}
	if m.PosEmb != nil {
		m.be.Embedding(st.dembF, m.PosEmb.Value(), st.posIDs, 0)
		m.be.Add(st.embFull, st.embFull, st.dembF)
	}
	out := st.emb
	if m.EmbNorm != nil {
		out = st.embPre
	}
	m.scatterRows(out, st.embFull)
	if m.EmbNorm != nil {
		m.EmbNorm.Forward(m.be, st.emb, st.embPre, st.embNorm)
	}
	if p := float32(c.HiddenDropout); p > 0 {
		segs, n := m.Par.dropoutSegments(st.emb.Dim(0), st.emb.Dim(1))
		for _, sg := range segs[:n] {
			e := st.emb.Slice(sg.lo, sg.hi)
			m.be.Dropout(e, st.embMask.Slice(sg.lo, sg.hi), e, p, seed, dropOffset(step, 0, 2*st.fullS*st.B*c.HiddenSize)+sg.off)
		}
	}
	return nil
}

// scatterRows copies this TP rank's rows of full into local (scatter_to_sequence_parallel_region);
// without SP it copies everything.
func (m *GPTModel) scatterRows(local, full *tensor.Tensor) {
	if !m.Par.sp() {
		m.be.Copy(local, full)
		return
	}
	nl := local.Dim(0)
	r := m.Par.tpRank()
	m.be.Copy(local, full.Slice(r*nl, (r+1)*nl))
}

// loss computes per-token cross entropy from the vocab-parallel logits: the global max and
// Σ exp are combined over TP (max, then sum), as is the target logit.
func (m *GPTModel) loss(st *Stash) (lossSum, tokens float64, err error) {
	m.be.RowMax(st.mx, st.Logits)
	if m.Par.tpSize() > 1 {
		if err := m.Par.TP.AllReduce(st.mx, comm.Max); err != nil {
			return 0, 0, fmt.Errorf("tensor-parallel max of the logits: %w", err)
		}
	}
	m.be.SumExp(st.se, st.Logits, st.mx)
	m.be.TargetLogit(st.tl, st.Logits, st.targets, m.vocabLo)
	if err := m.Par.allReduce(st.se, "Σ exp(logits)"); err != nil {
		return 0, 0, err
	}
	if err := m.Par.allReduce(st.tl, "target logits"); err != nil {
		return 0, 0, err
	}
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
	st.cpTokens = tokens
	if m.Par.cpSize() > 1 {
		t := tensor.FromF64([]float64{tokens}, 1)
		if err := m.Par.CP.AllReduce(t, comm.Sum); err != nil {
			return 0, 0, fmt.Errorf("context-parallel sum of the loss tokens: %w", err)
		}
		st.cpTokens = t.F64()[0]
	}
	return lossSum, tokens, nil
}

// CPTokens is the loss-mask total of the last Forward's microbatch over the
// context-parallel group (this rank's without context parallelism; last stage).
func (st *Stash) CPTokens() float64 { return st.cpTokens }

// tokensHere is this rank's loss-mask total of the last Forward.
func (st *Stash) tokensHere() float64 {
	var n float64
	for _, v := range st.lossMask {
		n += float64(v)
	}
	return n
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

// Backward accumulates into every Param.Grad the gradient of Σ_n scale·mask_n·loss_n.
// On the last stage it starts from the loss (Megatron divides by the token count and the
// number of microbatches through scale); on other stages from dout, the gradient of this
// stage's output received from the next stage. Non-first stages leave d loss/d input in
// st.InputGrad().
func (m *GPTModel) Backward(st *Stash, scale float32, dout *tensor.Tensor) error {
	c := &m.Cfg
	d := st.dh
	if m.Par.Last() {
		if cp := m.Par.cpSize(); cp > 1 {
			// scale is relative to this rank's tokens: make it the CP group's, times CP for
			// the gradient average over DP × CP (Megatron's loss × context_parallel_size).
			scale *= float32(float64(cp) * max(st.tokensHere(), 1) / max(st.cpTokens, 1))
		}
		dl := st.hostN.F32()
		for i := range dl {
			dl[i] = st.lossMask[i] * scale
		}
		m.be.Upload(st.dloss, st.hostN)
		m.be.CrossEntropyBackward(st.dlogits, st.Logits, st.mx, st.se, st.targets, st.dloss, m.vocabLo)
		// d final = dlogits·W (partial over TP); dW += dlogitsᵀ·final.
		m.headBackward(st.dfinalF, st.dlogits, st.finalFull)
		if err := m.Par.reduceRows(st.dfinal, st.dfinalF, "final layernorm output grad"); err != nil {
			return err
		}
		m.FinalNorm.Backward(m.be, d, st.dfinal, st.Output(), st.finalNorm)
		ready := []*Param{m.FinalNorm.W}
		if m.FinalNorm.B != nil {
			ready = append(ready, m.FinalNorm.B)
		}
		if m.Output != nil {
			ready = append(ready, m.Output)
		}
		m.gradsReady(ready)
	} else {
		m.be.Copy(d, dout)
	}
	if err := m.backwardLayers(st, d); err != nil {
		return err
	}
	if !m.Par.First() {
		return nil
	}
	if p := float32(c.HiddenDropout); p > 0 {
		m.be.DropoutBackward(d, d, st.embMask, p)
	}
	if m.EmbNorm != nil {
		m.EmbNorm.Backward(m.be, st.emb, d, st.embPre, st.embNorm) // emb is free again
		d = st.emb
	}
	// The backward of the row split is an all-gather.
	if m.Par.sp() {
		if err := m.Par.TP.AllGather(st.dembF, d); err != nil {
			return fmt.Errorf("sequence-parallel all-gather of the embedding grad: %w", err)
		}
	} else {
		m.be.Copy(st.dembF, d)
	}
	m.be.EmbeddingBackward(m.WordEmb.Grad, st.dembF, st.ids, m.vocabLo)
	ready := []*Param{m.WordEmb}
	if m.PosEmb != nil {
		m.be.EmbeddingBackward(m.PosEmb.Grad, st.dembF, st.posIDs, 0)
		ready = append(ready, m.PosEmb)
	}
	if m.EmbNorm != nil {
		ready = append(ready, m.EmbNorm.W)
		if m.EmbNorm.B != nil {
			ready = append(ready, m.EmbNorm.B)
		}
	}
	m.gradsReady(ready)
	return nil
}

func (m *GPTModel) gradsReady(ps []*Param) {
	if m.GradsReady != nil {
		m.GradsReady(ps)
	}
}

// HiddenState returns layer i's output (this rank's rows, [s, b] order) from the last
// Forward; i = -1 is the embedding output.
func (st *Stash) HiddenState(i int) *tensor.Tensor {
	if i < 0 {
		return st.emb
	}
	return st.layers[i].out
}

// FinalHidden is the output of the final norm.
func (st *Stash) FinalHidden() *tensor.Tensor { return st.final }

// UpdateExpertBias moves every MoE layer's expert bias (--moe-router-enable-expert-bias)
// by the step's token counts summed over group (the pipeline stage's ranks), as
// Megatron-Core's finalize_model_grads does after backward. Collective over group.
func (m *GPTModel) UpdateExpertBias(group comm.Comm) error {
	for _, l := range m.Layers {
		if l.MoE == nil {
			continue
		}
		if err := l.MoE.updateExpertBias(m.be, group); err != nil {
			return fmt.Errorf("layer %d: %w", l.Index, err)
		}
	}
	return nil
}
