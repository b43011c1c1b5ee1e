package layers

import (
	"fmt"
	"math"

	"github.com/gomegatron/gomegatron/comm"
	"github.com/gomegatron/gomegatron/kernels"
	"github.com/gomegatron/gomegatron/tensor"
)

// FP8Recipe is Transformer Engine's delayed scaling as Megatron configures it
// (--fp8-format, --fp8-margin, --fp8-amax-history-len, --fp8-amax-compute-algo).
type FP8Recipe struct {
	Format      string // "e4m3": every operand E4M3; "hybrid": forward E4M3, gradients E5M2
	Margin      int
	HistoryLen  int
	ComputeAlgo string // "max" or "most_recent"
	// HighPrecisionWGrad keeps the weight-gradient GEMMs in high precision (--no-fp8-wgrad;
	// Megatron's fp8_wgrad defaults to true: FP8 input and output gradient).
	HighPrecisionWGrad bool
}

// Validate checks the recipe's values.
func (r FP8Recipe) Validate() error {
	switch r.Format {
	case "e4m3", "hybrid":
	default:
		return fmt.Errorf("--fp8-format %q: want e4m3 or hybrid", r.Format)
	}
	switch r.ComputeAlgo {
	case "max", "most_recent":
	default:
		return fmt.Errorf("--fp8-amax-compute-algo %q: want max or most_recent", r.ComputeAlgo)
	}
	if r.HistoryLen < 1 {
		return fmt.Errorf("--fp8-amax-history-len must be ≥ 1, got %d", r.HistoryLen)
	}
	return nil
}

// fp8 operand roles of one linear layer: the forward input and weight, the output gradient.
const (
	fp8Input = iota
	fp8Weight
	fp8GradOut
	fp8Roles
)

// fp8Meta is one linear layer's delayed-scaling state: a scale per operand (used this step,
// computed from past amaxes), the running amax of this step (one F32 per role on the
// backend, folded in by CastWithAmaxInto without waiting), and the amax history.
type fp8Meta struct {
	scale [fp8Roles]float32
	amax  *tensor.Tensor
	hist  [fp8Roles][]float32
}

// slot is role r's running amax.
func (f *fp8Meta) slot(r int) *tensor.Tensor { return f.amax.Slice(r, r+1) }

// fp8Scratch holds the quantise–dequantise buffers shared by all linears of a model; they
// grow to the largest operand on first use and are reused after.
type fp8Scratch struct {
	q        map[tensor.DType]*tensor.Tensor // FP8 codes, per format
	x, w, dy *tensor.Tensor
	xt, dyt  *tensor.Tensor // the FP8 weight gradient's transposed operands, and its product
	wg       *tensor.Tensor
	sink     *tensor.Tensor // the amax of casts nobody records (backward weight casts)
	be       kernels.Backend
	native   map[string]*tensor.Tensor // FP8 codes of native GEMM operands, per role
}

// codes returns the role's FP8 operand buffer [rows, cols] of dtype dt (native FP8 GEMMs).
func (sc *fp8Scratch) codes(role string, dt tensor.DType, rows, cols int) *tensor.Tensor {
	if sc.native == nil {
		sc.native = map[string]*tensor.Tensor{}
	}
	t := sc.native[role]
	if t == nil || t.Numel() < rows*cols || t.DType() != dt {
		t = sc.be.Alloc(dt, rows*cols)
		sc.native[role] = t
	}
	return t.Slice(0, rows*cols).View(rows, cols)
}

func (sc *fp8Scratch) buf(t **tensor.Tensor, n int) *tensor.Tensor {
	return sc.bufOf(t, tensor.F32, n)
}

// bufOf is buf in dtype dt (the transposed weight follows the weight's dtype).
func (sc *fp8Scratch) bufOf(t **tensor.Tensor, dt tensor.DType, n int) *tensor.Tensor {
	if *t == nil || (*t).Numel() < n || (*t).DType() != dt {
		*t = sc.be.Alloc(dt, n)
	}
	return (*t).Slice(0, n)
}

// fakeQuant rounds src·scale to FP8 dt (saturating, nearest even) and writes the dequantised
// values (÷ scale) into dst, so a float32 GEMM on dst computes what an FP8 GEMM with fp32
// accumulation computes. max|src|, the amax Transformer Engine records, is folded into
// amax. Every step is a backend op, so it runs where the model lives, without waiting.
func (sc *fp8Scratch) fakeQuant(dst, src *tensor.Tensor, dt tensor.DType, scale float32, amax *tensor.Tensor) {
	n := src.Numel()
	if sc.q == nil {
		sc.q = map[tensor.DType]*tensor.Tensor{}
	}
	if q := sc.q[dt]; q == nil || q.Numel() < n {
		sc.q[dt] = sc.be.Alloc(dt, n)
	}
	q := sc.q[dt].Slice(0, n)
	sc.be.CastWithAmaxInto(q, src.View(n), scale, amax)
	sc.be.Cast(dst.View(n), q)
	sc.be.Scale(dst, 1/scale)
}

// SetFP8 turns on FP8 for the GEMMs of every transformer layer's linear_qkv (or multi-latent
// attention's projections), linear_proj, linear_fc1 and linear_fc2 (the embedding, output layer, norms and softmax stay high
// precision, as under Transformer Engine's fp8_autocast). Forward GEMMs take E4M3 inputs
// and weights; the input-gradient GEMM takes E4M3 (e4m3) or E5M2 (hybrid) output grads and
// the FP8 weight, the weight-gradient GEMM those output grads and the FP8 input (unless
// HighPrecisionWGrad, Megatron's --no-fp8-wgrad). Scales start at 1 and follow the amax
// history after each optimizer step (UpdateFP8Scales).
func (m *GPTModel) SetFP8(r FP8Recipe) error {
	if err := r.Validate(); err != nil {
		return err
	}
	if m.act != tensor.F32 {
		return fmt.Errorf("FP8 GEMMs need F32 activations (their outputs are F32), not %v", m.act)
	}
	if m.Cfg.NumExperts > 0 {
		return fmt.Errorf("FP8 with mixture-of-experts layers is not supported yet")
	}
	m.fp8 = &r
	sc := &fp8Scratch{be: m.be, sink: m.be.Alloc(tensor.F32, 1)}
	m.fp8Amax = m.be.Alloc(tensor.F32, len(m.fp8Linears())*fp8Roles)
	for i, lin := range m.fp8Linears() {
		lin.fp8 = &fp8Meta{amax: m.fp8Amax.Slice(i*fp8Roles, (i+1)*fp8Roles)}
		for r := range lin.fp8.scale {
			lin.fp8.scale[r] = 1
			lin.fp8.hist[r] = make([]float32, m.fp8.HistoryLen)
		}
		lin.fp8Fwd, lin.fp8Bwd = tensor.F8E4M3, tensor.F8E4M3
		if m.fp8.Format == "hybrid" {
			lin.fp8Bwd = tensor.F8E5M2
		}
		lin.sc, lin.fp8WGrad = sc, !r.HighPrecisionWGrad
	}
	return nil
}

// fp8Linears lists the linears that run in FP8.
func (m *GPTModel) fp8Linears() []*Linear {
	var out []*Linear
	for _, l := range m.Layers {
		if l.MLA != nil {
			out = append(out, l.MLA.linears()...)
		} else {
			out = append(out, l.QKV)
		}
		out = append(out, l.Proj, l.FC1, l.FC2)
	}
	return out
}

// UpdateFP8Scales ends an FP8 step: this step's amaxes are reduced (max) over the amax group
// (every rank of the pipeline stage: TP × DP × CP), pushed into the histories, and the next
// step's scales computed: amax = max(history) or history[0], scale = fp8_max/amax/2^margin,
// unchanged when amax is 0 or not finite.
func (m *GPTModel) UpdateFP8Scales(amaxGroup comm.Comm) error {
	if m.fp8 == nil {
		return nil
	}
	lins := m.fp8Linears()
	cur := tensor.New(tensor.F32, len(lins)*fp8Roles)
	cv := cur.F32()
	m.be.Download(cur, m.fp8Amax) // the step's amaxes, in one transfer
	m.be.Fill(m.fp8Amax, 0)
	if amaxGroup != nil && amaxGroup.Size() > 1 {
		if err := amaxGroup.AllReduce(cur, comm.Max); err != nil {
			return fmt.Errorf("FP8 amax all-reduce: %w", err)
		}
	}
	for i, lin := range lins {
		f := lin.fp8
		for r := 0; r < fp8Roles; r++ {
			h := f.hist[r]
			h[0] = cv[i*fp8Roles+r]
			amax := h[0]
			if m.fp8.ComputeAlgo == "max" {
				for _, v := range h {
					amax = max(amax, v)
				}
			}
			dt := lin.fp8Fwd
			if r == fp8GradOut {
				dt = lin.fp8Bwd
			}
			if amax > 0 && !math.IsInf(float64(amax), 0) && !math.IsNaN(float64(amax)) {
				f.scale[r] = float32(tensor.MaxFinite(dt) / float64(amax) / math.Pow(2, float64(m.fp8.Margin)))
			}
			// Transformer Engine: torch.roll(history, −1) then history[0] = 0.
			first := h[0]
			copy(h, h[1:])
			h[len(h)-1] = first
			h[0] = 0
		}
		lin.wReady = false // new weights (the step just taken) and new scales
	}
	return nil
}

// FP8Scales returns each FP8 linear's [input, weight, grad-output] scales (for checkpoints
// and tests).
func (m *GPTModel) FP8Scales() [][3]float32 {
	var out [][3]float32
	for _, lin := range m.fp8Linears() {
		if lin.fp8 != nil {
			out = append(out, lin.fp8.scale)
		}
	}
	return out
}

// FP8Meta returns the delayed-scaling state of every FP8 linear as one tensor
// [linears, roles, 1 + history]: each role's current scale followed by its amax history
// (nil without FP8). Checkpoints store it so that resuming an FP8 run is exact.
func (m *GPTModel) FP8Meta() *tensor.Tensor {
	if m.fp8 == nil {
		return nil
	}
	lins := m.fp8Linears()
	L := m.fp8.HistoryLen
	t := tensor.New(tensor.F32, len(lins), fp8Roles, 1+L)
	v := t.F32()
	for i, lin := range lins {
		for r := 0; r < fp8Roles; r++ {
			row := v[(i*fp8Roles+r)*(1+L):][:1+L]
			row[0] = lin.fp8.scale[r]
			copy(row[1:], lin.fp8.hist[r])
		}
	}
	return t
}

// SetFP8Meta restores what FP8Meta returned.
func (m *GPTModel) SetFP8Meta(t *tensor.Tensor) error {
	if m.fp8 == nil {
		return fmt.Errorf("the checkpoint has FP8 scaling state but the run has no --fp8-format")
	}
	lins := m.fp8Linears()
	L := m.fp8.HistoryLen
	if !tensor.SameShape(t.Shape(), []int{len(lins), fp8Roles, 1 + L}) {
		return fmt.Errorf("FP8 scaling state has shape %v, this run needs %v (linears × roles × 1+--fp8-amax-history-len)", t.Shape(), []int{len(lins), fp8Roles, 1 + L})
	}
	v := t.ToF32()
	for i, lin := range lins {
		for r := 0; r < fp8Roles; r++ {
			row := v[(i*fp8Roles+r)*(1+L):][:1+L]
			lin.fp8.scale[r] = row[0]
			copy(lin.fp8.hist[r], row[1:])
		}
		lin.wReady = false
	}
	return nil
}
