package layers

import (
	"fmt"
	"math"
	"sort"

	"github.com/gomegatron/gomegatron/kernels"
	"github.com/gomegatron/gomegatron/tensor"
)

// MoE is Megatron-Core's MoELayer (megatron/core/transformer/moe) in a layer's MLP slot:
// a TopKRouter, the dropless token dispatcher and SequentialMLP experts. For token t with
// router logits z_t = Rx_t (R [E, h], replicated over TP) and its k largest logits
// z_{t,e_1} ≥ … ≥ z_{t,e_k} (ties to the lower expert),
//
//	s_{t,j} = softmax_j(z_{t,e_1..e_k})          out_t = Σ_j s_{t,j}·MLP_{e_j}(x_t)
//
// where every expert is an MLP with linear_fc1 and linear_fc2 split over TP as the dense
// one is (so out_t is a partial sum over TP, reduced like linear_fc2's output). With k = 1
// the score is 1 and the router learns only from the auxiliary losses:
//
//	aux = c_aux·E·Σ_e mean_t(p_{t,e})·mean_t(m_{t,e})     (p = softmax over all E, m = 1 if chosen)
//	z   = c_z·mean_t(logsumexp(z_t)²)
//
// whose gradients are scaled by the main loss's scale over the number of microbatches
// (Megatron's MoEAuxLossAutoScaler). The means run over the microbatch's tokens (all TP
// ranks' rows), so every parallel layout computes the same losses and gradients; Megatron
// 240126 takes them per sequence-parallel shard instead, and its router gets no gradient
// through the scores with top-k > 1 under sequence parallelism (the gathered probabilities
// are detached) — both differ from its own TP = 1 run, which this matches.
type MoE struct {
	Router  *Param
	Experts []*Expert
	cfg     *Config
	// auxScale is the model's AuxLossScale: loss scale / microbatches of the step.
	auxScale *float32
}

// Expert is one SequentialMLP expert: linear_fc1 → activation → linear_fc2.
type Expert struct{ FC1, FC2 *Linear }

func newMoE(ps *paramSet, pre string, cfg *Config, auxScale *float32) *MoE {
	h := cfg.HiddenSize
	m := &MoE{cfg: cfg, auxScale: auxScale}
	m.Router = ps.add(pre+"mlp.router.weight", -1, cfg.NumExperts, h)
	m.Router.SequenceParallel = true // grads from this rank's rows, summed over TP
	for e := 0; e < cfg.NumExperts; e++ {
		name := fmt.Sprintf("%smlp.experts.local_experts.%d.", pre, e)
		fc1 := newLinear(ps, name+"linear_fc1", h, cfg.FC1Dim(), false, 0)
		fc1.W.GLU = cfg.SwiGLU
		fc2 := newLinear(ps, name+"linear_fc2", cfg.FFNHiddenSize, h, false, 1)
		m.Experts = append(m.Experts, &Expert{FC1: fc1, FC2: fc2})
	}
	return m
}

// moeStash is one microbatch's routing and expert activations: rows are the N·k
// (token, choice) pairs grouped by expert, in token order within an expert (the
// permutation Megatron's dispatcher makes with its argsort).
type moeStash struct {
	n                  int            // tokens
	logits, probs, lse []float32      // [N, E], [N, E], [N]
	sel                []int32        // [N, k] chosen experts
	score              []float32      // [N, k]
	row                []int32        // [N, k] permuted row of each choice
	tok                *tensor.Tensor // [R] I32 token of each row (host), and on the backend
	tokDev             *tensor.Tensor
	count              []int          // rows per expert
	lg                 *tensor.Tensor // [N, E] F32 logits on the backend
	x, f, g, y         *tensor.Tensor // [R, h], [R, fc1], [R, ffn/TP], [R, h]
	yh                 []float32      // y on the host
	host               hostF32
}

func (m *MoE) newStash(be kernels.Backend, act tensor.DType, n int) *moeStash {
	c := m.cfg
	k, e := c.MoERouterTopK, c.NumExperts
	r := n * k
	fc1, ffn := m.Experts[0].FC1.Out, m.Experts[0].FC2.In
	return &moeStash{
		logits: make([]float32, n*e), probs: make([]float32, n*e), lse: make([]float32, n),
		sel: make([]int32, n*k), score: make([]float32, n*k), row: make([]int32, n*k),
		tok: tensor.New(tensor.I32, r), tokDev: be.Alloc(tensor.I32, r), count: make([]int, e),
		lg: be.Alloc(tensor.F32, n, e),
		x:  be.Alloc(act, r, c.HiddenSize), f: be.Alloc(act, r, fc1), g: be.Alloc(act, r, ffn),
		y: be.Alloc(act, r, c.HiddenSize), yh: make([]float32, r*c.HiddenSize),
	}
}

// moeGrads is the experts' backward scratch, shared by a model's MoE layers.
type moeGrads struct {
	dy, df, dg, dx *tensor.Tensor // [R, h], [R, fc1], [R, ffn/TP], [R, h]
	dlg            *tensor.Tensor // [Nl, E] F32 router logits' grad (this rank's rows)
	dxr            *tensor.Tensor // [Nl, h] the router's d input
	dscore         *tensor.Tensor // [N·k] F32, summed over TP
	dh, dxh, dl    []float32
	host           hostF32
}

func (m *MoE) newGrads(be kernels.Backend, act tensor.DType, n, nl int) *moeGrads {
	c := m.cfg
	r := n * c.MoERouterTopK
	return &moeGrads{
		dy: be.Alloc(act, r, c.HiddenSize), df: be.Alloc(act, r, m.Experts[0].FC1.Out),
		dg: be.Alloc(act, r, m.Experts[0].FC2.In), dx: be.Alloc(act, r, c.HiddenSize),
		dlg: be.Alloc(tensor.F32, nl, c.NumExperts), dxr: be.Alloc(act, nl, c.HiddenSize),
		dscore: be.Alloc(tensor.F32, r),
		dh:     make([]float32, n*c.HiddenSize), dxh: make([]float32, r*c.HiddenSize),
		dl: make([]float32, n*c.NumExperts),
	}
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

// route computes the logits of x [N, h] and chooses each token's experts, filling ms's
// routing and permutation.
func (m *MoE) route(be kernels.Backend, cast *castScratch, ms *moeStash, x *tensor.Tensor) {
	c := m.cfg
	E, k := c.NumExperts, c.MoERouterTopK
	n := x.Numel() / c.HiddenSize
	ms.n = n
	lg := ms.lg.Slice(0, n)
	cast.forward(be, lg, x, m.Router)
	ms.host.get(be, ms.logits[:n*E], lg)
	order := make([]int32, E)
	for t := 0; t < n; t++ {
		z := ms.logits[t*E : (t+1)*E]
		// Softmax over all experts (the aux loss's p) and its log-sum-exp (the z-loss's).
		mx := z[0]
		for _, v := range z {
			mx = max(mx, v)
		}
		var sum float64
		for _, v := range z {
			sum += math.Exp(float64(v - mx))
		}
		ms.lse[t] = mx + float32(math.Log(sum))
		for e, v := range z {
			ms.probs[t*E+e] = float32(math.Exp(float64(v-mx)) / sum)
		}
		for e := range order {
			order[e] = int32(e)
		}
		sort.SliceStable(order, func(a, b int) bool { return z[order[a]] > z[order[b]] })
		sel, sc := ms.sel[t*k:(t+1)*k], ms.score[t*k:(t+1)*k]
		copy(sel, order[:k])
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
	// Group the (token, choice) rows by expert, tokens in order within each.
	clear(ms.count)
	for _, e := range ms.sel[:n*k] {
		ms.count[e]++
	}
	next := make([]int, E)
	for e := 1; e < E; e++ {
		next[e] = next[e-1] + ms.count[e-1]
	}
	tok := ms.tok.I32()
	for i, e := range ms.sel[:n*k] {
		r := next[e]
		next[e]++
		ms.row[i] = int32(r)
		tok[r] = int32(i / k)
	}
	be.Upload(ms.tokDev.Slice(0, n*k), ms.tok.Slice(0, n*k))
}

// expertRows calls f with each expert that received tokens and its row range.
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
// into out [N, h] the experts' score-weighted outputs, partial over TP.
func (m *MoE) Forward(be kernels.Backend, cast *castScratch, ms *moeStash, out, x *tensor.Tensor) {
	c := m.cfg
	h, k := c.HiddenSize, c.MoERouterTopK
	m.route(be, cast, ms, x)
	n := ms.n
	R := n * k
	be.Embedding(ms.x.Slice(0, R), x.View(n, h), ms.tokDev.Slice(0, R), 0) // gather rows
	m.expertRows(ms, func(e *Expert, lo, hi int) {
		f, g := ms.f.Slice(lo, hi), ms.g.Slice(lo, hi)
		e.FC1.Forward(be, f, ms.x.Slice(lo, hi))
		if c.SwiGLU {
			be.SwiGLU(g, f)
		} else {
			be.GeLU(g, f, c.OpenAIGeLU)
		}
		e.FC2.Matmul(be, ms.y.Slice(lo, hi), g)
	})
	ms.host.get(be, ms.yh[:R*h], ms.y.Slice(0, R))
	o := make([]float32, n*h)
	for t := 0; t < n; t++ {
		ot := o[t*h : (t+1)*h]
		for j := 0; j < k; j++ {
			s, yr := ms.score[t*k+j], ms.yh[int(ms.row[t*k+j])*h:]
			for i := range ot {
				ot[i] += s * yr[i]
			}
		}
	}
	ms.host.put(be, out.View(n, h), o)
}

// Backward takes d out [N, h] (gathered over TP) and writes the experts' partial d x into
// dx [N, h]; it accumulates the experts' and the router's weight grads and leaves the
// router's d x for this rank's rows xl [Nl, h] (rows lo…lo+Nl of x) in g.dxr, to be added
// after the TP reduction. tpSum sums a vector over TP.
func (m *MoE) Backward(be kernels.Backend, cast *castScratch, ms *moeStash, g *moeGrads, dx, dout, xl *tensor.Tensor, lo int, tpSum func(*tensor.Tensor) error) error {
	c := m.cfg
	h, k, E := c.HiddenSize, c.MoERouterTopK, c.NumExperts
	n := ms.n
	R := n * k
	dh := g.dh[:n*h]
	g.host.get(be, dh, dout.View(n, h))
	// d y_r = s·d out_t; d s_{t,j} = ⟨d out_t, y_r⟩ (partial over TP: y is).
	dyh := g.dxh[:R*h]
	ds := make([]float32, R)
	for t := 0; t < n; t++ {
		dt := dh[t*h : (t+1)*h]
		for j := 0; j < k; j++ {
			r := int(ms.row[t*k+j])
			s, yr, dyr := ms.score[t*k+j], ms.yh[r*h:(r+1)*h], dyh[r*h:(r+1)*h]
			var dot float64
			for i, v := range dt {
				dyr[i] = s * v
				dot += float64(v) * float64(yr[i])
			}
			ds[t*k+j] = float32(dot)
		}
	}
	g.host.put(be, g.dy.Slice(0, R), dyh)
	if k > 1 { // with k = 1 the score is constant
		g.host.put(be, g.dscore.Slice(0, R), ds)
		if err := tpSum(g.dscore.Slice(0, R)); err != nil {
			return err
		}
		g.host.get(be, ds, g.dscore.Slice(0, R))
	}
	m.expertRows(ms, func(e *Expert, lo, hi int) {
		dg, df := g.dg.Slice(lo, hi), g.df.Slice(lo, hi)
		e.FC2.WeightBackward(be, dg, g.dy.Slice(lo, hi), ms.g.Slice(lo, hi))
		if c.SwiGLU {
			be.SwiGLUBackward(df, dg, ms.f.Slice(lo, hi))
		} else {
			be.GeLUBackward(df, dg, ms.f.Slice(lo, hi), c.OpenAIGeLU)
		}
		e.FC1.WeightBackward(be, g.dx.Slice(lo, hi), df, ms.x.Slice(lo, hi))
	})
	// Scatter the rows' d x back to their tokens.
	dxh := g.dxh[:R*h]
	g.host.get(be, dxh, g.dx.Slice(0, R))
	clear(dh)
	for t := 0; t < n; t++ {
		dt := dh[t*h : (t+1)*h]
		for j := 0; j < k; j++ {
			r := int(ms.row[t*k+j])
			for i, v := range dxh[r*h : (r+1)*h] {
				dt[i] += v
			}
		}
	}
	g.host.put(be, dx.View(n, h), dh)
	// The router: d logits of this rank's rows, then its weight grad and d x.
	nl := xl.Numel() / h
	dl := g.dl[:nl*E]
	m.logitGrads(ms, dl, ds, lo, nl)
	g.host.put(be, g.dlg.Slice(0, nl), dl)
	cast.backward(be, g.dxr.Slice(0, nl), g.dlg.Slice(0, nl), xl.View(nl, h), m.Router)
	return nil
}

// logitGrads writes d loss/d logits for tokens lo…lo+nl into dl: through the top-k
// softmax from the score grads ds [N·k], plus the auxiliary losses' terms.
func (m *MoE) logitGrads(ms *moeStash, dl, ds []float32, lo, nl int) {
	c := m.cfg
	k, E, n := c.MoERouterTopK, c.NumExperts, ms.n
	clear(dl)
	// Aux loss: d aux/d p_{t,e} = c·E·mean_t(m_{t,e})/N, through the full softmax.
	var dp []float64
	scale := float64(*m.auxScale)
	if c.MoEAuxLossCoeff != 0 {
		dp = make([]float64, E)
		for _, e := range ms.sel[:n*k] {
			dp[e]++
		}
		for e := range dp {
			dp[e] *= c.MoEAuxLossCoeff * float64(E) / float64(n) / float64(n) * scale
		}
	}
	for t := lo; t < lo+nl; t++ {
		d := dl[(t-lo)*E : (t-lo+1)*E]
		sc, dst := ms.score[t*k:(t+1)*k], ds[t*k:(t+1)*k]
		var dot float64
		for j := range sc {
			dot += float64(sc[j]) * float64(dst[j])
		}
		for j, e := range ms.sel[t*k : (t+1)*k] {
			d[e] += float32(float64(sc[j]) * (float64(dst[j]) - dot))
		}
		p := ms.probs[t*E : (t+1)*E]
		if dp != nil {
			var pd float64
			for e := range p {
				pd += float64(p[e]) * dp[e]
			}
			for e := range p {
				d[e] += float32(float64(p[e]) * (dp[e] - pd))
			}
		}
		if cz := c.MoEZLossCoeff; cz != 0 {
			zs := cz * 2 * float64(ms.lse[t]) / float64(n) * scale
			for e := range p {
				d[e] += float32(zs * float64(p[e]))
			}
		}
	}
}

// AuxLosses returns the microbatch's load-balancing and z losses (unscaled by the main
// loss scale), for logging and tests.
func (m *MoE) auxLosses(ms *moeStash) (aux, z float64) {
	c := m.cfg
	k, E, n := c.MoERouterTopK, c.NumExperts, ms.n
	pm, mm := make([]float64, E), make([]float64, E)
	for t := 0; t < n; t++ {
		for e := 0; e < E; e++ {
			pm[e] += float64(ms.probs[t*E+e])
		}
		for _, e := range ms.sel[t*k : (t+1)*k] {
			mm[e]++
		}
		z += float64(ms.lse[t]) * float64(ms.lse[t])
	}
	for e := range pm {
		aux += pm[e] / float64(n) * mm[e] / float64(n)
	}
	return c.MoEAuxLossCoeff * float64(E) * aux, c.MoEZLossCoeff * z / float64(n)
}
