package layers

import (
	"fmt"
	"math"
	"slices"

	"github.com/gomegatron/gomegatron/comm"
	"github.com/gomegatron/gomegatron/kernels"
	"github.com/gomegatron/gomegatron/kernels/cpu"
	"github.com/gomegatron/gomegatron/tensor"
)

// MoE is Megatron-Core's MoELayer (megatron/core/transformer/moe) in a layer's MLP slot:
// a TopKRouter, the dropless token dispatcher and SequentialMLP experts (or GroupedMLP's
// packed weights, the same maps). For token t with
// router logits z_t = Rx_t (R [E, h], replicated over TP) and its k largest logits
// z_{t,e_1} ≥ … ≥ z_{t,e_k} (ties to the lower expert),
//
//	s_{t,j} = softmax_j(z_{t,e_1..e_k})          out_t = Σ_j s_{t,j}·MLP_{e_j}(x_t)
//
// where every expert is an MLP with linear_fc1 and linear_fc2 split over TP as the dense
// one is (so out_t is a partial sum over TP, reduced like linear_fc2's output). With k = 1
// the score is 1 and the router learns only from the auxiliary losses:
//
//	aux = c_aux·E·Σ_e mean_t(p_{t,e})·mean_t(m_{t,e})     (p = softmax over all E, m = 1 in p_t's top k)
//	z   = c_z·mean_t(logsumexp(z_t)²)
//
// whose gradients are scaled by the main loss's scale over the number of microbatches
// (Megatron's MoEAuxLossAutoScaler). The means run over the microbatch's tokens (all TP
// ranks' rows), so every parallel layout computes the same losses and gradients; Megatron
// 240126 takes them per sequence-parallel shard instead, and its router gets no gradient
// through the scores with top-k > 1 under sequence parallelism (the gathered probabilities
// are detached) — both differ from its own TP = 1 run, which this matches.
//
// With --moe-router-pre-softmax the scores are the full softmax's p_{t,e_j}, not
// renormalised over the top k. Shared experts (--moe-shared-expert-intermediate-size) add
// a dense MLP of every token, split over TP like the experts, scaled per token by
// σ(g·x_t) under --moe-shared-expert-gate (g [1, h], replicated):
//
//	out_t += σ(g·x_t)·MLP_shared(x_t)
type MoE struct {
	Router *Param
	// ExpertBias is --moe-router-enable-expert-bias's mlp.router.expert_bias [E] (a
	// Buffer), added to σ(z) to choose experts; tokens counts each expert's choices this
	// step (host, F64), for UpdateExpertBias.
	ExpertBias *Param
	tokens     *tensor.Tensor
	biasHost   *tensor.Tensor // [E] F32 host copy read by routing
	// W1 and W2 are GroupedMLP's weight1 and weight2 under --moe-grouped-gemm (nil else).
	W1, W2 *Param
	bound  [6]*tensor.Tensor // W1's and W2's Data, Low, Grad the experts' views were made of
	// Experts are this rank's: experts First … First+len(Experts)−1 of NumExperts (all of
	// them without expert parallelism).
	Experts []*Expert
	First   int
	// Shared is Megatron-Core's SharedExpertMLP and Gate its gate_weight [1, h] (nil without
	// them).
	Shared *Expert
	Gate   *Param
	cfg    *Config
	par    Parallel
	// auxScale is the model's AuxLossScale: loss scale / microbatches of the step.
	auxScale *float32
	// The forward's scratch (layers run one at a time): score-weighted rows [R, h] and
	// their F32 sums per token [G, h], grown to the largest microbatch.
	ys, sum *tensor.Tensor
}

// Expert is one SequentialMLP expert: linear_fc1 → activation → linear_fc2. Under
// --moe-grouped-gemm its weights are views of the layer's GroupedMLP weights (bind).
type Expert struct{ FC1, FC2 *Linear }

func newMoE(ps *paramSet, pre string, global int, cfg *Config, par Parallel, auxScale *float32) *MoE {
	h := cfg.HiddenSize
	local := cfg.NumExperts / par.epSize()
	m := &MoE{cfg: cfg, par: par, auxScale: auxScale, First: par.epRank() * local}
	m.Router = ps.add(pre+"mlp.router.weight", -1, cfg.NumExperts, h)
	m.Router.SequenceParallel = true // grads from this rank's rows, summed over TP
	if cfg.MoERouterEnableExpertBias {
		m.ExpertBias = ps.add(pre+"mlp.router.expert_bias", -1, cfg.NumExperts)
		m.ExpertBias.Buffer, m.ExpertBias.NonGEMM, m.ExpertBias.NoWeightDecay = true, true, true
		m.tokens, m.biasHost = tensor.New(tensor.F64, cfg.NumExperts), tensor.New(tensor.F32, cfg.NumExperts)
	}
	if cfg.MoEGroupedGemm {
		// Megatron 240126's GroupedMLP: weight1 [h, E·fc1/TP] is weight1.view(E, h, −1),
		// expert e's fc1 shard transposed in block e; weight2 [E·ffn/TP, h] likewise.
		m.W1 = ps.add(pre+"mlp.experts.weight1", 1, h, local*cfg.ExpertFC1Dim())
		m.W2 = ps.add(pre+"mlp.experts.weight2", 0, local*cfg.ExpertFFN(), h)
		for _, w := range []*Param{m.W1, m.W2} {
			w.Expert = true
			w.InitKey = fmt.Sprintf("decoder.layers.%d.%s", global, w.Name[len(pre):])
		}
	}
	for e := 0; e < local; e++ {
		name := fmt.Sprintf("%smlp.experts.local_experts.%d.", pre, e)
		var fc1, fc2 *Linear
		var w1, w2 *Param // the SequentialMLP weights: fc1.W and fc2.W, or their descriptions
		if cfg.MoEGroupedGemm {
			fc1, w1 = m.packExpert(ps, m.W1, name+"linear_fc1", h, cfg.ExpertFC1Dim(), 0)
			fc2, w2 = m.packExpert(ps, m.W2, name+"linear_fc2", cfg.ExpertFFN(), h, 1)
		} else {
			fc1 = newLinear(ps, name+"linear_fc1", h, cfg.ExpertFC1Dim(), false, 0)
			fc2 = newLinear(ps, name+"linear_fc2", cfg.ExpertFFN(), h, false, 1)
			w1, w2 = fc1.W, fc2.W
		}
		w1.GLU = cfg.SwiGLU
		for _, w := range []*Param{w1, w2} {
			w.Expert = true
			// Initialised (and named in checkpoints of other EP sizes) by the global expert.
			w.InitKey = fmt.Sprintf("decoder.layers.%d.mlp.experts.local_experts.%d.%s", global, m.First+e, w.Name[len(name):])
		}
		m.Experts = append(m.Experts, &Expert{FC1: fc1, FC2: fc2})
	}
	if s := cfg.MoESharedExpertIntermediateSize; s > 0 {
		fc1 := newLinear(ps, pre+"mlp.shared_experts.linear_fc1", h, cfg.SharedFC1Dim(), false, 0)
		fc1.W.GLU = cfg.SwiGLU
		m.Shared = &Expert{FC1: fc1, FC2: newLinear(ps, pre+"mlp.shared_experts.linear_fc2", s, h, false, 1)}
		if cfg.MoESharedExpertGate {
			m.Gate = ps.add(pre+"mlp.shared_experts.gate_weight", -1, 1, h)
			m.Gate.SequenceParallel = true // as the router: grads from this rank's rows
		}
	}
	return m
}

// scoresVary reports whether the chosen experts' scores depend on the logits, so that
// they carry gradients: not for one expert renormalised over itself (always 1).
func (m *MoE) scoresVary() bool {
	c := m.cfg
	return c.MoERouterTopK > 1 || c.MoERouterLoadBalancingType == "sinkhorn" || c.MoERouterPreSoftmax || c.MoERouterScoreFunction == "sigmoid"
}

// packExpert describes one expert's SequentialMLP weight q, held transposed in the
// GroupedMLP weight w (appended to w.Experts), and returns q and a linear map whose
// weight is an [in, out] view of its block, bound before each use.
func (m *MoE) packExpert(ps *paramSet, w *Param, name string, in, out, partitionDim int) (*Linear, *Param) {
	q := ps.describe(name+".weight", partitionDim, out, in)
	w.Experts = append(w.Experts, q)
	v := &Param{Name: q.Name, Shape: []int{q.Shape[1], q.Shape[0]}, InOut: true, Expert: true}
	return &Linear{W: v, In: q.Shape[1], Out: q.Shape[0], cast: ps.cast}, q
}

// bind points each expert's weight views at its block of the GroupedMLP weights' current
// Data, Low and Grad. The optimizer may replace those tensors (AttachGrads, ShadowWeights);
// the views are remade only then, so a step makes none.
func (m *MoE) bind() {
	if m.W1 == nil {
		return
	}
	now := [6]*tensor.Tensor{m.W1.Data, m.W1.Low, m.W1.Grad, m.W2.Data, m.W2.Low, m.W2.Grad}
	if now == m.bound {
		return
	}
	m.bound = now
	n := len(m.Experts)
	for i, e := range m.Experts {
		for _, b := range []struct{ v, w *Param }{{e.FC1.W, m.W1}, {e.FC2.W, m.W2}} {
			b.v.Data, b.v.Low, b.v.Grad = block(b.w.Data, i, n, b.v.Shape), block(b.w.Low, i, n, b.v.Shape), block(b.w.Grad, i, n, b.v.Shape)
		}
	}
}

// block is block i of n equal contiguous blocks of t, shaped shape (nil for a nil t).
func block(t *tensor.Tensor, i, n int, shape []int) *tensor.Tensor {
	if t == nil {
		return nil
	}
	per := t.Numel() / n
	return t.View(t.Numel()).Slice(i*per, (i+1)*per).View(shape...)
}

// moeStash is one microbatch's routing and expert activations. The routing of this rank's
// N tokens is exchanged over expert parallelism: the G = EP·N gathered tokens' choices
// that go to this rank's experts become its rows, grouped by expert, in token order within
// an expert (the permutation Megatron's dispatcher makes with its argsort).
type moeStash struct {
	n                  int            // this rank's tokens
	logits, probs, lse []float32      // [N, E], [N, E], [N]: this rank's tokens
	sel                []int32        // [G, k] chosen experts of the gathered tokens
	score              []float32      // [G, k]
	row                []int32        // [G, k] the row of each choice, −1 on another rank
	own                int            // index in sel and score of this rank's first choice
	tok                *tensor.Tensor // [R] I32 gathered token of each row (host), and on the backend
	tokDev             *tensor.Tensor
	rs, rsDev          *tensor.Tensor // [R] F32 score of each row (host), and on the backend
	rows               int            // R: rows this microbatch
	count              []int          // rows per local expert
	lg                 *tensor.Tensor // [N, E] F32 logits on the backend
	route              *tensor.Tensor // [N, 2k] F32 this rank's choices and scores, and [G, 2k] gathered
	routeG             *tensor.Tensor
	xg, og             *tensor.Tensor // [G, h] gathered input and output (nil without EP)
	x, f, g, y         *tensor.Tensor // [R, h], [R, fc1], [R, ffn/TP], [R, h]
	host               hostF32
	// Router jitter (--moe-input-jitter-eps): the microbatch's stream (set by the layer
	// before Forward) and each logit's factor [N, E] (nil when off).
	jitterSeed, jitterOffs uint64
	jit                    []float32
	jitBuf, jittered       []float32 // [N, E] scratch of the jitter (nil when off)
	sk                     sinkhornScratch
	// Host scratch of routing and its backward, so that a step allocates nothing.
	order     []int32        // [E] one token's experts being ranked
	next      []int          // [local experts] the next free row of each
	routeHost []float32      // [G, 2k] the choices exchanged over EP (nil without EP)
	counts    *tensor.Tensor // [G·(E+1)] F64 choices per expert, then tokens, per group (summed over CP)
	dp        []float64      // [G·E] the aux loss's d/dp per group
	// seqs is the microbatch's sequence count (set by the layer): seq_aux_loss's groups.
	seqs int
	// sig [N, E]: σ(z) with --moe-router-score-function sigmoid (probs then holds σ
	// normalised over the experts, the aux loss's scores); in and gscore: group-limited
	// routing's chosen experts and group scores of one token.
	sig    []float32
	in     []bool
	gscore []float32
	gvals  []float32 // one group's values being ranked
	choice []float32 // one token's σ + expert bias (--moe-router-enable-expert-bias)
	// auxSel [N, k]: the top k of each token's aux-loss scores (probs), which the aux
	// losses count (Megatron-Core's compute_routing_scores_for_aux_loss); set only when
	// groups or the expert bias make them differ from the chosen experts.
	auxSel []int32
	uk, gk []float64 // one token's unscaled scores and scaled score grads
	// Shared experts: fc1 and activation outputs [N, ·/TP], the output before the gate
	// [N, h] (partial over TP) and after it, the gate's logits [N, 1] and σ (host, backend).
	sf, sg, sh, shg *tensor.Tensor
	gl, gateDev     *tensor.Tensor
	gate            []float32
}

// maxRows bounds a microbatch's rows: every gathered token's choices of local experts.
func (m *MoE) maxRows(g int) int { return g * min(m.cfg.MoERouterTopK, len(m.Experts)) }

func (m *MoE) newStash(be kernels.Backend, act tensor.DType, n int) *moeStash {
	c := m.cfg
	k, e, h := c.MoERouterTopK, c.NumExperts, c.HiddenSize
	g := n * m.par.epSize()
	r := m.maxRows(g)
	fc1, ffn := m.Experts[0].FC1.Out, m.Experts[0].FC2.In
	ms := &moeStash{
		logits: make([]float32, n*e), probs: make([]float32, n*e), lse: make([]float32, n),
		sel: make([]int32, g*k), score: make([]float32, g*k), row: make([]int32, g*k),
		tok: tensor.New(tensor.I32, r), tokDev: be.Alloc(tensor.I32, r), count: make([]int, len(m.Experts)),
		rs: tensor.New(tensor.F32, r), rsDev: be.Alloc(tensor.F32, r),
		order: make([]int32, e), next: make([]int, len(m.Experts)), counts: tensor.New(tensor.F64, e+1),
		dp: make([]float64, e),
		lg: be.Alloc(tensor.F32, n, e),
		x:  be.Alloc(act, r, h), f: be.Alloc(act, r, fc1), g: be.Alloc(act, r, ffn),
		y: be.Alloc(act, r, h),
	}
	if c.MoEInputJitterEps > 0 {
		ms.jitBuf, ms.jittered = make([]float32, n*e), make([]float32, n*e)
	}
	if c.MoERouterLoadBalancingType == "sinkhorn" {
		ms.sk = newSinkhornScratch(n, e)
	}
	if c.MoERouterScoreFunction == "sigmoid" {
		ms.sig, ms.choice = make([]float32, n*e), make([]float32, e)
	}
	ms.uk, ms.gk = make([]float64, k), make([]float64, k)
	if c.MoERouterNumGroups > 0 {
		ms.in, ms.gscore, ms.gvals = make([]bool, e), make([]float32, c.MoERouterNumGroups), make([]float32, e/c.MoERouterNumGroups)
	}
	if c.MoEAuxLossCoeff != 0 && (c.MoERouterNumGroups > 0 || c.MoERouterEnableExpertBias) {
		ms.auxSel = make([]int32, n*k)
	}
	if sh := m.Shared; sh != nil {
		ms.sf, ms.sg, ms.sh = be.Alloc(act, n, sh.FC1.Out), be.Alloc(act, n, sh.FC2.In), be.Alloc(act, n, h)
		if m.Gate != nil {
			ms.shg, ms.gl, ms.gateDev = be.Alloc(act, n, h), be.Alloc(tensor.F32, n, 1), be.Alloc(tensor.F32, n)
			ms.gate = make([]float32, n)
		}
	}
	if m.par.epSize() > 1 {
		ms.route, ms.routeG = be.Alloc(tensor.F32, n, 2*k), be.Alloc(tensor.F32, g, 2*k)
		ms.routeHost = make([]float32, g*2*k)
		ms.xg, ms.og = be.Alloc(act, g, h), be.Alloc(act, g, h)
	}
	return ms
}

// moeGrads is the experts' backward scratch, shared by a model's MoE layers.
type moeGrads struct {
	dy, df, dg, dx *tensor.Tensor // [R, h], [R, fc1], [R, ffn/TP], [R, h]
	sum            *tensor.Tensor // [G, h] F32 rows' d x summed per token
	dlg            *tensor.Tensor // [Nl, E] F32 router logits' grad (this rank's rows)
	dxr            *tensor.Tensor // [Nl, h] the router's d input
	dsR            *tensor.Tensor // [R] F32 the rows' score grads
	dsG, ds        *tensor.Tensor // [G·k] F32 score grads of the gathered choices, [N·k] this rank's
	dG, dxG        *tensor.Tensor // [G, h] gathered d out and d x (nil without EP)
	dsh, dl        []float32
	dsRHost        []float32 // [R] dsR on the host
	host           hostF32
	// Shared experts: d out scaled by the gate [N, h], fc2's and fc1's input grads, d x
	// [N, h]; the gate's grad [N] (backend, host), its logits' grad [Nl, 1] and d x [Nl, h].
	sdy, sdg, sdf, sdx *tensor.Tensor
	dgate, gdl, gdx    *tensor.Tensor
	dgateHost, gdlHost []float32
}

func (m *MoE) newGrads(be kernels.Backend, act tensor.DType, n, nl int) *moeGrads {
	c := m.cfg
	h, k := c.HiddenSize, c.MoERouterTopK
	g := n * m.par.epSize()
	r := m.maxRows(g)
	gr := &moeGrads{
		dy: be.Alloc(act, r, h), df: be.Alloc(act, r, m.Experts[0].FC1.Out),
		dg: be.Alloc(act, r, m.Experts[0].FC2.In), dx: be.Alloc(act, r, h),
		sum: be.Alloc(tensor.F32, g, h),
		dlg: be.Alloc(tensor.F32, nl, c.NumExperts), dxr: be.Alloc(act, nl, h),
		dsR: be.Alloc(tensor.F32, r), dsG: be.Alloc(tensor.F32, g*k), ds: be.Alloc(tensor.F32, n*k),
		dsh: make([]float32, g*k), dl: make([]float32, n*c.NumExperts), dsRHost: make([]float32, r),
	}
	if sh := m.Shared; sh != nil {
		gr.sdg, gr.sdf, gr.sdx = be.Alloc(act, n, sh.FC2.In), be.Alloc(act, n, sh.FC1.Out), be.Alloc(act, n, h)
		if m.Gate != nil {
			gr.sdy, gr.dgate, gr.gdl, gr.gdx = be.Alloc(act, n, h), be.Alloc(tensor.F32, n), be.Alloc(tensor.F32, nl, 1), be.Alloc(act, nl, h)
			gr.dgateHost, gr.gdlHost = make([]float32, n), make([]float32, nl)
		}
	}
	if m.par.epSize() > 1 {
		gr.dG, gr.dxG = be.Alloc(act, g, h), be.Alloc(act, g, h)
	}
	return gr
}

// hostF32 moves backend tensors to and from F32 host values through a reusable host
// tensor of the backend tensor's dtype.
type hostF32 struct{ t *tensor.Tensor }

func (h *hostF32) stage(like *tensor.Tensor) *tensor.Tensor {
	if h.t == nil || h.t.DType() != like.DType() || h.t.Numel() < like.Numel() {
		h.t = tensor.New(like.DType(), like.Numel())
	}
	return h.t.Slice(0, like.Numel()).View(like.Shape()...)
}

// get downloads src into dst.
func (h *hostF32) get(be kernels.Backend, dst []float32, src *tensor.Tensor) {
	t := h.stage(src)
	be.Download(t, src)
	tensor.ConvertToF32(dst, t)
}

// put rounds src into the backend tensor dst.
func (h *hostF32) put(be kernels.Backend, dst *tensor.Tensor, src []float32) {
	t := h.stage(dst)
	tensor.ConvertFromF32(t, src[:dst.Numel()])
	be.Upload(dst, t)
}

// route computes the logits of this rank's tokens x [N, h], chooses each token's experts,
// exchanges the choices over expert parallelism and lays out this rank's rows.
func (m *MoE) route(be kernels.Backend, cast *castScratch, ms *moeStash, x *tensor.Tensor) error {
	c := m.cfg
	E, k := c.NumExperts, c.MoERouterTopK
	n := x.Numel() / c.HiddenSize
	ms.n = n
	lg := ms.lg.Slice(0, n)
	cast.forward(be, lg, x, m.Router)
	ms.host.get(be, ms.logits[:n*E], lg)
	// The z-loss takes the raw logits (lse below); jitter multiplies them after it, as
	// Megatron 240126's routing does, and everything else sees the jittered ones.
	raw := ms.logits[:n*E]
	ms.jit = nil
	if eps := c.MoEInputJitterEps; eps > 0 && !c.evaluating {
		ms.jit = ms.jitBuf[:n*E]
		jittered := ms.jittered[:n*E]
		for i, v := range raw {
			u := float32(cpu.DropoutBits(ms.jitterSeed, ms.jitterOffs+uint64(i))>>40) / (1 << 24)
			ms.jit[i] = float32(1 - eps + 2*eps*float64(u))
			jittered[i] = v * ms.jit[i]
		}
		for t := 0; t < n; t++ { // the z-loss's log-sum-exp, of the raw logits
			mx, sum := maxAndExpSum(raw[t*E : (t+1)*E])
			ms.lse[t] = mx + float32(math.Log(sum))
		}
		raw = jittered
	}
	sinkhorn := c.MoERouterLoadBalancingType == "sinkhorn"
	rank := raw // what the top k are taken of
	if sinkhorn && !c.evaluating {
		rank = ms.sk.balance(ms.logits[:n*E], n, E)
	}
	order := ms.order
	sigmoid := c.MoERouterScoreFunction == "sigmoid"
	var bias []float32
	if m.ExpertBias != nil {
		be.Download(m.biasHost, m.ExpertBias.Data)
		bias = m.biasHost.F32()
	}
	for t := 0; t < n; t++ {
		z := raw[t*E : (t+1)*E]
		// Softmax over all experts (the aux loss's p) and its log-sum-exp (the z-loss's,
		// unless jitter computed that from the raw logits above); with sigmoid scores the
		// aux loss's p is σ normalised over all experts.
		mx, sum := maxAndExpSum(z)
		if ms.jit == nil {
			ms.lse[t] = mx + float32(math.Log(sum))
		}
		p := ms.probs[t*E : (t+1)*E]
		if sigmoid {
			sg := ms.sig[t*E : (t+1)*E]
			var tot float64
			for e, v := range z {
				sg[e] = float32(1 / (1 + math.Exp(-float64(v))))
				tot += float64(sg[e])
			}
			for e := range p {
				p[e] = float32(float64(sg[e]) / (tot + 1e-20))
			}
		} else {
			for e, v := range z {
				p[e] = float32(math.Exp(float64(v-mx)) / sum)
			}
		}
		if ms.auxSel != nil {
			topKOf(ms.auxSel[t*k:(t+1)*k], p)
		}
		for e := range order {
			order[e] = int32(e)
		}
		r := rank[t*E : (t+1)*E]
		switch { // what the top k (and the groups' scores) are taken of
		case bias != nil: // σ + the expert bias, for choosing only
			for e := range ms.choice {
				ms.choice[e] = ms.sig[t*E+e] + bias[e]
			}
			r = ms.choice
		case c.MoERouterNumGroups > 0 && sigmoid:
			r = ms.sig[t*E : (t+1)*E]
		case c.MoERouterNumGroups > 0 && c.MoERouterPreSoftmax:
			r = p
		}
		if c.MoERouterNumGroups > 0 {
			m.chooseGroups(ms, r)
		}
		slices.SortStableFunc(order, func(a, b int32) int { // descending; ties keep expert order
			if ms.in != nil && ms.in[a] != ms.in[b] { // experts of chosen groups first
				if ms.in[a] {
					return -1
				}
				return 1
			}
			switch {
			case r[a] > r[b]:
				return -1
			case r[b] > r[a]:
				return 1
			}
			return 0
		})
		sel, sc := ms.sel[t*k:(t+1)*k], ms.score[t*k:(t+1)*k]
		copy(sel, order[:k])
		switch {
		case sinkhorn: // the chosen experts' activations: sigmoid for k = 1, else the softmax
			for j, e := range sel {
				sc[j] = p[e]
				if k == 1 {
					sc[j] = float32(1 / (1 + math.Exp(-float64(z[e]))))
				}
			}
			continue
		case sigmoid: // σ at the chosen experts, renormalised over them when k > 1
			var tot float64
			for j, e := range sel {
				sc[j] = ms.sig[t*E+int(e)]
				tot += float64(sc[j])
			}
			if k > 1 {
				for j := range sc {
					sc[j] = float32(float64(sc[j]) / (tot + 1e-20))
				}
			}
		case c.MoERouterPreSoftmax: // the full softmax at the chosen experts
			for j, e := range sel {
				sc[j] = p[e]
			}
		default:
			top := z[sel[0]]
			var s float64
			for j, e := range sel {
				w := math.Exp(float64(z[e] - top))
				sc[j] = float32(w)
				s += w
			}
			for j := range sc {
				sc[j] = float32(float64(sc[j]) / s)
			}
		}
		if f := c.MoERouterTopKScaling; f != 0 {
			for j := range sc {
				sc[j] *= float32(f)
			}
		}
	}
	g := n
	ms.own = 0
	if ep := m.par.epSize(); ep > 1 {
		g, ms.own = n*ep, m.par.epRank()*n*k
		if err := m.gatherRoutes(be, ms, n); err != nil {
			return err
		}
	}
	// This rank's rows: the gathered choices of its experts, by expert, tokens in order.
	clear(ms.count)
	lo, local := int32(m.First), int32(len(m.Experts))
	for _, e := range ms.sel[:g*k] {
		if e >= lo && e < lo+local {
			ms.count[e-lo]++
		}
	}
	next := ms.next
	next[0] = 0
	for e := 1; e < int(local); e++ {
		next[e] = next[e-1] + ms.count[e-1]
	}
	tok, rs := ms.tok.I32(), ms.rs.F32()
	ms.rows = 0
	for i, e := range ms.sel[:g*k] {
		if e < lo || e >= lo+local {
			ms.row[i] = -1
			continue
		}
		r := next[e-lo]
		next[e-lo]++
		ms.row[i] = int32(r)
		tok[r], rs[r] = int32(i/k), ms.score[i]
		ms.rows++
	}
	be.Upload(ms.tokDev.Slice(0, ms.rows), ms.tok.Slice(0, ms.rows))
	be.Upload(ms.rsDev.Slice(0, ms.rows), ms.rs.Slice(0, ms.rows))
	return nil
}

// gatherRoutes all-gathers every EP rank's choices and scores into ms.sel and ms.score.
func (m *MoE) gatherRoutes(be kernels.Backend, ms *moeStash, n int) error {
	k := m.cfg.MoERouterTopK
	g := n * m.par.epSize()
	v := ms.routeHost
	for i := 0; i < n*k; i++ { // [N, 2k]: k choices (exact as floats), then k scores
		t, j := i/k, i%k
		v[t*2*k+j], v[t*2*k+k+j] = float32(ms.sel[i]), ms.score[i]
	}
	ms.host.put(be, ms.route.Slice(0, n), v)
	if err := m.par.epGather(ms.routeG.Slice(0, g), ms.route.Slice(0, n), "router choices"); err != nil {
		return err
	}
	ms.host.get(be, v, ms.routeG.Slice(0, g))
	for i := 0; i < g*k; i++ {
		t, j := i/k, i%k
		ms.sel[i], ms.score[i] = int32(v[t*2*k+j]), v[t*2*k+k+j]
	}
	return nil
}

// expertRows calls f with each local expert that received tokens and its row range.
func (m *MoE) expertRows(ms *moeStash, f func(e *Expert, lo, hi int)) {
	lo := 0
	for i, c := range ms.count {
		if c > 0 {
			f(m.Experts[i], lo, lo+c)
		}
		lo += c
	}
}

// Forward routes x [N, h] (every token of the microbatch, gathered over TP) and writes
// into out [N, h] the experts' score-weighted outputs, partial over TP. With expert
// parallelism the tokens are all-gathered over EP, each rank runs its experts' rows, and
// the outputs are reduce-scattered back (Megatron's all-gather dispatcher). Only the
// routing crosses to the host; rows move on the backend (Embedding gathers them,
// EmbeddingBackward sums them per token).
func (m *MoE) Forward(be kernels.Backend, cast *castScratch, ms *moeStash, out, x *tensor.Tensor) error {
	c := m.cfg
	h := c.HiddenSize
	if err := m.route(be, cast, ms, x); err != nil {
		return err
	}
	m.bind()
	n := ms.n
	g, xg := n, x.View(n, h)
	if m.par.epSize() > 1 {
		g, xg = n*m.par.epSize(), ms.xg.Slice(0, n*m.par.epSize())
		if err := m.par.epGather(xg, x.View(n, h), "MoE input"); err != nil {
			return err
		}
	}
	R := ms.rows
	tok := ms.tokDev.Slice(0, R)
	be.Embedding(ms.x.Slice(0, R), xg, tok, 0) // gather rows
	m.expertRows(ms, func(e *Expert, lo, hi int) {
		f, gg := ms.f.Slice(lo, hi), ms.g.Slice(lo, hi)
		e.FC1.Forward(be, f, ms.x.Slice(lo, hi))
		c.activation(be, gg, f)
		e.FC2.Matmul(be, ms.y.Slice(lo, hi), gg)
	})
	grow(be, &m.ys, ms.y.DType(), R*h)
	grow(be, &m.sum, tensor.F32, g*h)
	ys := m.ys.Slice(0, R*h).View(R, h)
	be.Copy(ys, ms.y.Slice(0, R))
	be.ScaleRows(ys, ms.rsDev.Slice(0, R))
	sum := m.sum.Slice(0, g*h).View(g, h)
	if m.par.epSize() == 1 {
		sumRows(be, out.View(n, h), sum, ys, tok)
	} else {
		sumRows(be, ms.og.Slice(0, g), sum, ys, tok)
		if err := m.par.epReduceScatter(out.View(n, h), ms.og.Slice(0, g), "MoE output"); err != nil {
			return err
		}
	}
	if m.Shared != nil {
		m.sharedForward(be, cast, ms, out.View(n, h), x.View(n, h))
	}
	return nil
}

// sharedForward adds the shared experts' (gated) output of this rank's tokens x [N, h]
// to out [N, h], both partial over TP.
func (m *MoE) sharedForward(be kernels.Backend, cast *castScratch, ms *moeStash, out, x *tensor.Tensor) {
	n := ms.n
	f, a, y := ms.sf.Slice(0, n), ms.sg.Slice(0, n), ms.sh.Slice(0, n)
	m.Shared.FC1.Forward(be, f, x)
	m.cfg.activation(be, a, f)
	m.Shared.FC2.Matmul(be, y, a)
	if m.Gate != nil {
		cast.forward(be, ms.gl.Slice(0, n), x, m.Gate)
		ms.host.get(be, ms.gate[:n], ms.gl.Slice(0, n))
		for i, v := range ms.gate[:n] {
			ms.gate[i] = float32(1 / (1 + math.Exp(-float64(v))))
		}
		ms.host.put(be, ms.gateDev.Slice(0, n), ms.gate[:n])
		gy := ms.shg.Slice(0, n)
		be.Copy(gy, y)
		be.ScaleRows(gy, ms.gateDev.Slice(0, n))
		y = gy
	}
	be.Add(out, out, y)
}

// grow makes *t a flat dt tensor of at least n elements (freeing a smaller one on backends
// that manage device memory).
func grow(be kernels.Backend, t **tensor.Tensor, dt tensor.DType, n int) {
	if *t != nil && (*t).Numel() >= n && (*t).DType() == dt {
		return
	}
	if f, ok := be.(interface{ Free(*tensor.Tensor) error }); ok && *t != nil {
		_ = f.Free(*t)
	}
	*t = be.Alloc(dt, n)
}

// sumRows writes into dst [G, h] the sum of each token's rows (rows[r] adds to token
// tok[r]), through the F32 scratch sum [G, h] when dst is not F32.
func sumRows(be kernels.Backend, dst, sum, rows, tok *tensor.Tensor) {
	if dst.DType() == tensor.F32 {
		sum = dst
	}
	be.Fill(sum, 0)
	be.EmbeddingBackward(sum, rows, tok, 0)
	if sum != dst {
		be.Cast(dst, sum)
	}
}

// Backward takes d out [N, h] (gathered over TP) and the forward's input x [N, h], and
// writes the experts' partial d x into dx [N, h]; it accumulates the experts' and the
// router's weight grads and leaves the router's (and the shared experts' gate's) d x for
// this rank's rows xl [Nl, h] (rows lo…lo+Nl of x) in g.dxr, to be added after the TP
// reduction.
func (m *MoE) Backward(be kernels.Backend, cast *castScratch, ms *moeStash, g *moeGrads, dx, dout, x, xl *tensor.Tensor, lo int) error {
	c := m.cfg
	h, E := c.HiddenSize, c.NumExperts
	n, ep := ms.n, m.par.epSize()
	G, R := n*ep, ms.rows
	m.bind()
	dG := dout.View(n, h)
	if ep > 1 {
		dG = g.dG.Slice(0, G)
		if err := m.par.epGather(dG, dout.View(n, h), "MoE output grad"); err != nil {
			return err
		}
	}
	// Each row's d out, its score grad ⟨d out_t, y_r⟩ (partial over TP: y is) and d y = s·d out_t.
	tok, dy := ms.tokDev.Slice(0, R), g.dy.Slice(0, R)
	be.Embedding(dy, dG, tok, 0)
	if m.scoresVary() {
		be.RowDot(g.dsR.Slice(0, R), dy, ms.y.Slice(0, R))
	}
	be.ScaleRows(dy, ms.rsDev.Slice(0, R))
	m.expertRows(ms, func(e *Expert, lo, hi int) {
		dg, df := g.dg.Slice(lo, hi), g.df.Slice(lo, hi)
		e.FC2.WeightBackward(be, dg, g.dy.Slice(lo, hi), ms.g.Slice(lo, hi))
		c.activationBackward(be, df, dg, ms.f.Slice(lo, hi))
		e.FC1.WeightBackward(be, g.dx.Slice(lo, hi), df, ms.x.Slice(lo, hi))
	})
	// The rows' d x summed per (gathered) token.
	if ep > 1 {
		sumRows(be, g.dxG.Slice(0, G), g.sum.Slice(0, G), g.dx.Slice(0, R), tok)
		if err := m.par.epReduceScatter(dx.View(n, h), g.dxG.Slice(0, G), "MoE input grad"); err != nil {
			return err
		}
	} else {
		sumRows(be, dx.View(n, h), g.sum.Slice(0, n), g.dx.Slice(0, R), tok)
	}
	ds, err := m.scoreGrads(be, ms, g)
	if err != nil {
		return err
	}
	// The router: d logits of this rank's rows, then its weight grad and d x.
	nl := xl.Numel() / h
	dl := g.dl[:nl*E]
	if err := m.logitGrads(ms, dl, ds, lo, nl); err != nil {
		return err
	}
	g.host.put(be, g.dlg.Slice(0, nl), dl)
	cast.backward(be, g.dxr.Slice(0, nl), g.dlg.Slice(0, nl), xl.View(nl, h), m.Router)
	if m.Shared != nil {
		return m.sharedBackward(be, cast, ms, g, dx.View(n, h), dout.View(n, h), x.View(n, h), xl.View(nl, h), lo)
	}
	return nil
}

// sharedBackward adds the shared experts' partial d x to dx [N, h] and their gate's d x of
// rows xl to g.dxr, accumulating their weight grads. The gate's grad is
// ⟨d out_t, MLP_shared(x_t)⟩ (summed over TP: the output is partial) times σ'.
func (m *MoE) sharedBackward(be kernels.Backend, cast *castScratch, ms *moeStash, g *moeGrads, dx, dout, x, xl *tensor.Tensor, lo int) error {
	n, nl := ms.n, xl.Dim(0)
	dy := dout
	if m.Gate != nil {
		be.RowDot(g.dgate.Slice(0, n), dout, ms.sh.Slice(0, n))
		if err := m.par.allReduce(g.dgate.Slice(0, n), "shared expert gate grads"); err != nil {
			return err
		}
		g.host.get(be, g.dgateHost[:n], g.dgate.Slice(0, n))
		for t := range nl {
			s := float64(ms.gate[lo+t])
			g.gdlHost[t] = float32(float64(g.dgateHost[lo+t]) * s * (1 - s))
		}
		g.host.put(be, g.gdl.Slice(0, nl), g.gdlHost[:nl])
		gdx := g.gdx.Slice(0, nl)
		cast.backward(be, gdx, g.gdl.Slice(0, nl), xl, m.Gate)
		be.Add(g.dxr.Slice(0, nl), g.dxr.Slice(0, nl), gdx)
		dy = g.sdy.Slice(0, n)
		be.Copy(dy, dout)
		be.ScaleRows(dy, ms.gateDev.Slice(0, n))
	}
	dg, df, sdx := g.sdg.Slice(0, n), g.sdf.Slice(0, n), g.sdx.Slice(0, n)
	m.Shared.FC2.WeightBackward(be, dg, dy, ms.sg.Slice(0, n))
	m.cfg.activationBackward(be, df, dg, ms.sf.Slice(0, n))
	m.Shared.FC1.Backward(be, sdx, df, x)
	be.Add(dx, dx, sdx)
	return nil
}

// scoreGrads returns the score grads of this rank's tokens' choices [N·k] (nil with k = 1):
// the rows' partial dots summed over TP, placed by choice, summed over EP (each choice's
// row is on one EP rank).
func (m *MoE) scoreGrads(be kernels.Backend, ms *moeStash, g *moeGrads) ([]float32, error) {
	k, n, ep := m.cfg.MoERouterTopK, ms.n, m.par.epSize()
	if !m.scoresVary() {
		return nil, nil // the renormalised score of one expert is 1
	}
	G, R := n*ep, ms.rows
	if err := m.par.allReduce(g.dsR.Slice(0, R), "router score grads"); err != nil {
		return nil, err
	}
	dsR := g.dsRHost[:R]
	g.host.get(be, dsR, g.dsR.Slice(0, R))
	ds := g.dsh[:G*k]
	for i, r := range ms.row[:G*k] {
		ds[i] = 0
		if r >= 0 {
			ds[i] = dsR[r]
		}
	}
	if ep == 1 {
		return ds, nil
	}
	g.host.put(be, g.dsG.Slice(0, G*k), ds)
	if err := m.par.epReduceScatter(g.ds.Slice(0, n*k), g.dsG.Slice(0, G*k), "router score grads"); err != nil {
		return nil, err
	}
	own := ds[:n*k]
	g.host.get(be, own, g.ds.Slice(0, n*k))
	return own, nil
}

// chosenGrads adds to d (token t's logits) the gradient through its chosen experts' scores
// from their grads dst. With --moe-router-topk-scaling-factor f the scores are f·u, so
// the unscaled u meet the grads f·dst. Then: sigmoid scores u_j = σ_j/S (S the chosen σs'
// sum, k > 1) or σ_j; Sinkhorn's σ for k = 1; the full softmax's p (pre-softmax, and
// Sinkhorn with k > 1); else the softmax over the top k.
func (m *MoE) chosenGrads(ms *moeStash, d []float32, dst []float32, t int) {
	c := m.cfg
	k, E := c.MoERouterTopK, c.NumExperts
	f := c.MoERouterTopKScaling
	if f == 0 {
		f = 1
	}
	sel, sc := ms.sel[ms.own+t*k:ms.own+(t+1)*k], ms.score[ms.own+t*k:ms.own+(t+1)*k]
	u, g := ms.uk, ms.gk
	var dot float64
	for j := range sc {
		u[j], g[j] = float64(sc[j])/f, float64(dst[j])*f
		dot += u[j] * g[j]
	}
	sinkhorn := c.MoERouterLoadBalancingType == "sinkhorn"
	switch {
	case c.MoERouterScoreFunction == "sigmoid":
		sg := ms.sig[t*E : (t+1)*E]
		var S float64
		for _, e := range sel {
			S += float64(sg[e])
		}
		for j, e := range sel {
			dsig := g[j] // k = 1: the score is σ itself
			if k > 1 {
				dsig = (g[j] - dot) / (S + 1e-20)
			}
			v := float64(sg[e])
			d[e] += float32(dsig * v * (1 - v))
		}
	case sinkhorn && k == 1 && !c.MoERouterPreSoftmax: // σ(z_e): derivative s(1 − s)
		d[sel[0]] += float32(g[0] * u[0] * (1 - u[0]))
	case sinkhorn || c.MoERouterPreSoftmax: // p_e over all experts: ∂p_e/∂z = p_e(δ − p)
		for j, e := range sel {
			d[e] += float32(u[j] * g[j])
		}
		p := ms.probs[t*E : (t+1)*E]
		for e := range p {
			d[e] -= float32(float64(p[e]) * dot)
		}
	default:
		for j, e := range sel {
			d[e] += float32(u[j] * (g[j] - dot))
		}
	}
}

// chooseGroups marks in ms.in the experts of the --moe-router-group-topk groups with the
// largest sums of their top k/group-topk values of r (ties to the lower group), as
// Megatron-Core's group_limited_topk.
func (m *MoE) chooseGroups(ms *moeStash, r []float32) {
	c := m.cfg
	G, gk := c.MoERouterNumGroups, c.MoERouterGroupTopK
	per, take := c.NumExperts/G, c.MoERouterTopK/gk
	for g := range G {
		vals := append(ms.gvals[:0], r[g*per:(g+1)*per]...)
		slices.SortFunc(vals, func(a, b float32) int {
			switch {
			case a > b:
				return -1
			case b > a:
				return 1
			}
			return 0
		})
		var s float64
		for _, v := range vals[:take] {
			s += float64(v)
		}
		ms.gscore[g] = float32(s)
	}
	clear(ms.in)
	for range gk {
		best := -1
		for g := range G {
			if !ms.in[g*per] && (best < 0 || ms.gscore[g] > ms.gscore[best]) {
				best = g
			}
		}
		for e := best * per; e < (best+1)*per; e++ {
			ms.in[e] = true
		}
	}
}

// logitGrads writes d loss/d logits for tokens lo…lo+nl into dl: through the top-k
// softmax from the score grads ds [N·k] (nil with k = 1), plus the auxiliary losses' terms.
func (m *MoE) logitGrads(ms *moeStash, dl, ds []float32, lo, nl int) error {
	c := m.cfg
	k, E, n := c.MoERouterTopK, c.NumExperts, ms.n
	clear(dl)
	sel := ms.sel[ms.own : ms.own+n*k]
	// The expert choice counts and token counts of the microbatch, or of each of its
	// sequences with seq_aux_loss (tokens are in [s, b] order: token t is sequence t mod b):
	// with context parallelism the tokens are spread over the CP ranks, which add theirs;
	// the auxiliary gradients are then multiplied by CP, as the main loss's are, for the
	// gradient average over DP × CP.
	groups := 1
	if c.MoERouterLoadBalancingType == "seq_aux_loss" {
		groups = max(ms.seqs, 1)
	}
	if ms.counts.Numel() != groups*(E+1) {
		ms.counts, ms.dp = tensor.New(tensor.F64, groups*(E+1)), make([]float64, groups*E)
	}
	counts := ms.counts.F64()
	clear(counts)
	var tokens []float64 // the expert bias's counts of this step (every TP rank counts all)
	if m.tokens != nil {
		tokens = m.tokens.F64()
	}
	aux := sel // the aux losses count the top k of their scores: the choices, unless groups or the bias intervene
	if ms.auxSel != nil {
		aux = ms.auxSel
	}
	for t := range n {
		g := counts[t%groups*(E+1):][:E+1]
		for _, e := range aux[t*k : (t+1)*k] {
			g[e]++
		}
		if tokens != nil {
			for _, e := range sel[t*k : (t+1)*k] {
				tokens[e]++
			}
		}
		g[E]++
	}
	scale := float64(*m.auxScale)
	if cp := m.par.cpSize(); cp > 1 {
		if err := m.par.CP.AllReduce(ms.counts, comm.Sum); err != nil {
			return fmt.Errorf("context-parallel sum of the router's choices: %w", err)
		}
		scale *= float64(cp)
	}
	var N float64
	for g := range groups {
		N += counts[g*(E+1)+E]
	}
	// Aux loss: d aux/d p_{t,e} = c·E·mean_t(m_{t,e})/N, through the full softmax; with
	// seq_aux_loss, per sequence of T tokens, c·E·Σ_{t∈seq} m_{t,e}/(k·T²·b) (Megatron-Core's
	// switch loss over each sequence with f_e divided by k, averaged over the b sequences).
	var dp []float64
	if c.MoEAuxLossCoeff != 0 {
		dp = ms.dp
		for g := range groups {
			cg := counts[g*(E+1):][:E+1]
			norm := N * N
			if c.MoERouterLoadBalancingType == "seq_aux_loss" {
				norm = float64(k) * cg[E] * cg[E] * float64(groups)
			}
			for e := range E {
				dp[g*E+e] = cg[e] * c.MoEAuxLossCoeff * float64(E) / norm * scale
			}
		}
	}
	sigmoid := c.MoERouterScoreFunction == "sigmoid"
	for t := lo; t < lo+nl; t++ {
		d := dl[(t-lo)*E : (t-lo+1)*E]
		if ds != nil { // nil with aux_loss and k = 1: the score is constant
			m.chosenGrads(ms, d, ds[t*k:(t+1)*k], t)
		}
		p := ms.probs[t*E : (t+1)*E]
		if dp != nil {
			dpt := dp[t%groups*E:][:E]
			var pd float64
			for e := range p {
				pd += float64(p[e]) * dpt[e]
			}
			for e := range p {
				de := float64(p[e]) * (dpt[e] - pd)
				if sigmoid { // p = σ/Σσ: ∂p_e/∂z_i = p_e(1 − σ_i)(δ − p_i)·… folded as p_i(1 − σ_i)(dp_i − Σ p·dp)
					de *= 1 - float64(ms.sig[t*E+e])
				}
				d[e] += float32(de)
			}
		}
		if ms.jit != nil { // the routing saw the jittered logits z·u: chain rule through u
			for e := range d {
				d[e] *= ms.jit[t*E+e]
			}
		}
		if cz := c.MoEZLossCoeff; cz != 0 {
			zs := cz * 2 * float64(ms.lse[t]) / N * scale
			for e := range p {
				pe := float64(p[e])
				if ms.jit != nil || sigmoid { // the z-loss's softmax is of the raw logits
					pe = math.Exp(float64(ms.logits[t*E+e] - ms.lse[t]))
				}
				d[e] += float32(zs * pe)
			}
		}
	}
	return nil
}

// sinkhornScratch holds balance's buffers for up to n tokens, made once per stash.
type sinkhornScratch struct{ cost, out, d0, d1, next []float32 }

func newSinkhornScratch(n, E int) sinkhornScratch {
	return sinkhornScratch{cost: make([]float32, n*E), out: make([]float32, n*E), d0: make([]float32, n),
		d1: make([]float32, E), next: make([]float32, E)}
}

// balance is Megatron's sinkhorn (moe_utils.py) on the router logits [n, E] in float32:
// with C = exp(logits), iterate
//
//	d0_t = (1/n) / (Σ_e d1_e·C_te + ε),  d1_e = (1/E) / (Σ_t d0_t·C_te + ε)
//
// from d1 = 1 until mean_e |Δd1| ≤ 10⁻⁴ (ε = 10⁻⁸), and return d1_e·C_te·d0_t: a
// balanced assignment whose top k per token are the chosen experts (S-BASE).
func (sk *sinkhornScratch) balance(logits []float32, n, E int) []float32 {
	cost, out, d0, d1, next := sk.cost[:n*E], sk.out[:n*E], sk.d0[:n], sk.d1, sk.next
	for i, v := range logits {
		cost[i] = float32(math.Exp(float64(v)))
	}
	for e := range d1 {
		d1[e] = 1
	}
	const eps, tol = 1e-8, 1e-4
	for err := float32(1e9); err > tol; {
		for t := range d0 {
			var s float32
			for e, c := range cost[t*E : (t+1)*E] {
				s += d1[e] * c
			}
			d0[t] = float32(1/float64(n)) * (1 / (s + eps))
		}
		for e := range next {
			var s float32
			for t := range d0 {
				s += d0[t] * cost[t*E+e]
			}
			next[e] = float32(1/float64(E)) * (1 / (s + eps))
		}
		var sum float32
		for e := range next {
			sum += float32(math.Abs(float64(d1[e] - next[e])))
		}
		err = sum / float32(E)
		copy(d1, next)
	}
	for t := range d0 {
		for e := range d1 {
			out[t*E+e] = d1[e] * cost[t*E+e] * d0[t]
		}
	}
	return out
}

// maxAndExpSum returns max z and Σ exp(z − max): a stable softmax's shift and denominator,
// and the log-sum-exp max + log(sum).
func maxAndExpSum(z []float32) (mx float32, sum float64) {
	mx = z[0]
	for _, v := range z {
		mx = max(mx, v)
	}
	for _, v := range z {
		sum += math.Exp(float64(v - mx))
	}
	return mx, sum
}

// updateExpertBias is Megatron-Core's get_updated_expert_bias after a step's backward: the
// step's choices per expert c_e summed over group (every rank of the pipeline stage: TP ×
// DP × CP; TP ranks count the same tokens, which the sign ignores), then
//
//	bias_e += rate·sign(mean_e(c) − c_e)
//
// and the counts restart.
func (m *MoE) updateExpertBias(be kernels.Backend, group comm.Comm) error {
	if m.ExpertBias == nil {
		return nil
	}
	if group != nil && group.Size() > 1 {
		if err := group.AllReduce(m.tokens, comm.Sum); err != nil {
			return fmt.Errorf("all-reduce of the experts' token counts: %w", err)
		}
	}
	c := m.tokens.F64()
	var mean float64
	for _, v := range c {
		mean += v / float64(len(c))
	}
	be.Download(m.biasHost, m.ExpertBias.Data)
	b := m.biasHost.F32()
	for e, v := range c {
		switch {
		case mean > v:
			b[e] += float32(m.cfg.MoERouterBiasUpdateRate)
		case mean < v:
			b[e] -= float32(m.cfg.MoERouterBiasUpdateRate)
		}
	}
	be.Upload(m.ExpertBias.Data, m.biasHost)
	clear(c)
	return nil
}

// topKOf writes the indices of the k = len(idx) largest values of v into idx, largest
// first, ties to the lower index (torch.topk's order on distinct values).
func topKOf(idx []int32, v []float32) {
	for j := range idx {
		best := -1
		for e, x := range v {
			if slices.Contains(idx[:j], int32(e)) {
				continue
			}
			if best < 0 || x > v[best] {
				best = e
			}
		}
		idx[j] = int32(best)
	}
}
