// Package optim holds the optimizer: AdamW with Megatron's parameter groups, gradient-norm
// clipping, data-parallel gradient reduction and the distributed optimizer (ZeRO-1).
package optim

import (
	"fmt"
	"math"

	"github.com/gomegatron/gomegatron/comm"
	"github.com/gomegatron/gomegatron/kernels"
	"github.com/gomegatron/gomegatron/layers"
	"github.com/gomegatron/gomegatron/tensor"
)

// AdamConfig carries Megatron's optimizer flags.
type AdamConfig struct {
	Beta1       float64 `name:"adam-beta1" default:"0.9" help:"Adam β1."`
	Beta2       float64 `name:"adam-beta2" default:"0.999" help:"Adam β2."`
	Eps         float64 `name:"adam-eps" default:"1e-08" help:"Adam ε."`
	WeightDecay float64 `name:"weight-decay" default:"0.01" help:"Decoupled weight decay (not applied to biases and norms)."`
	ClipGrad    float64 `name:"clip-grad" default:"1.0" help:"Clip the global gradient norm to this value (0 disables)."`
}

// DefaultAdam returns Megatron's defaults.
func DefaultAdam() AdamConfig {
	return AdamConfig{Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.01, ClipGrad: 1}
}

// Groups are the communicators the optimizer reduces over; nil entries mean size 1.
type Groups struct {
	DP   comm.Comm // data parallel (× context parallel): grad averaging, optimizer shards
	Norm comm.Comm // where grad-norm partial sums are added: TP×PP, or all ranks with the distributed optimizer
	TP   int       // this rank's TP rank (TP-duplicated params count once, on TP rank 0)
	// Chunks are the parameter counts of the model chunks (virtual pipeline stages), in
	// order; the distributed optimizer gives each its own buffer, as Megatron's. nil: one.
	Chunks []int
	// ExpertDP, with expert parallelism, is the expert-data-parallel group: expert weights
	// (Param.Expert) sit in buckets of their own, averaged over all DP ranks' tokens but
	// summed over this group only (the other DP ranks hold other experts), and sharded over
	// it by the distributed optimizer. EP is the expert-parallel group, over which their
	// squared norms are added when the optimizer is not distributed. nil: no expert
	// parallelism.
	ExpertDP, EP comm.Comm
}

// piece is the part of one parameter this rank updates: elements [lo, hi) of the buffer.
type piece struct {
	p      *layers.Param
	lo, hi int
	local  int // where lo sits in this rank's owned elements (moments, main)
	// Views of the piece in the reduced grads, the Adam moments and the parameter (or its
	// fp32 main copy), made once so that a step allocates nothing.
	grad, m, v, param *tensor.Tensor
}

// views (re)builds every piece's tensor views; called whenever the buffers they point into
// change (construction, SetModelDType).
func (a *Adam) views() {
	lo, hi, all := -1, -1, true
	for i := range a.pieces {
		pc := &a.pieces[i]
		s, e := pc.local, pc.local+pc.hi-pc.lo
		pc.grad, pc.m, pc.v = a.grad(pc), a.m.Slice(s, e), a.v.Slice(s, e)
		pc.param = a.buf.Param.Slice(pc.lo, pc.hi)
		if a.main != nil {
			pc.param = a.main.Slice(s, e)
		}
		all = all && a.countsInNorm(pc.p)
		if lo < 0 || pc.lo < lo {
			lo = pc.lo
		}
		hi = max(hi, pc.hi)
	}
	// When every piece counts, the norm is one sum over their span (per owned bucket shard
	// with the distributed optimizer; the gaps between pieces are alignment padding, always
	// zero): a reduction or a few, and as many waits on a GPU, instead of one per piece.
	a.normSpans = nil
	if all && lo >= 0 && (a.g.ExpertDP == nil || a.Distributed) {
		if a.Distributed {
			for _, o := range a.own {
				a.normSpans = append(a.normSpans, a.buf.Grad.Slice(o.Lo, o.Hi))
			}
		} else {
			a.normSpans = []*tensor.Tensor{a.buf.Grad.Slice(lo, hi)}
		}
	}
}

// countsInNorm: the tied output layer's copy is left out, and TP-replicated parameters
// count on TP rank 0 only (Megatron's grad-norm rule).
func (a *Adam) countsInNorm(p *layers.Param) bool {
	return !p.Shared && (p.TensorParallel() || a.g.TP == 0)
}

// Adam is AdamW over a model's parameters with Megatron's groups (no weight decay for biases
// and norm weights). With Distributed, data-parallel rank r owns shard r of the buffers and
// keeps Adam state only for it (ZeRO-1): grads are reduce-scattered, the shard updated, and
// the parameters all-gathered. Otherwise grads are all-reduced and every rank updates all.
type Adam struct {
	Cfg         AdamConfig
	Distributed bool
	be          kernels.Backend
	g           Groups
	buf         *Buffers
	pieces      []piece
	own         []Span         // the buffer elements this rank updates, bucket by bucket
	m, v        *tensor.Tensor // Adam moments over the owned elements
	main        *tensor.Tensor // fp32 main parameters of the owned elements (bf16/fp16 models)
	modelDType  tensor.DType   // precision the model's weights are held in (F32, BF16, F16)
	// Scaler scales the loss for --fp16 (nil: no scaling, Megatron's bf16/fp32 behaviour).
	Scaler LossScaler
	// GradScale multiplies the reduced gradients in Step, with the loss-scale unscaling and
	// before the norm (the trainer's DP/tokens under --calculate-per-token-loss); 0 is 1.
	GradScale float64
	// DecoupledLR, when > 0, is the learning rate Step gives the word embeddings and the
	// output layer instead of its lr (Megatron-Core's --decoupled-lr group), set before
	// each Step from that group's schedule.
	DecoupledLR float64
	step        int
	numel       int      // model parameters on this rank
	overlap     *overlap // --overlap-grad-reduce (nil: reduce after backward)
	params      layers.Params
	low         *tensor.Tensor // ShadowWeights: the param buffer in modelDType
	// normSpans are the grad spans GradNorm sums when no piece is left out (nil: piece by
	// piece).
	normSpans []*tensor.Tensor
}

// DataParallelSize is the size of the group ReduceGrads averages the gradients over.
func (a *Adam) DataParallelSize() int {
	if a.g.DP == nil {
		return 1
	}
	return a.g.DP.Size()
}

// LossScale is the factor backward must multiply the loss by (1 without a scaler).
func (a *Adam) LossScale() float64 {
	if a.Scaler == nil {
		return 1
	}
	return a.Scaler.Scale()
}

// NewAdam lays the parameters out in contiguous buffers (see Attach) and allocates the Adam
// state this rank owns.
func NewAdam(be kernels.Backend, params layers.Params, cfg AdamConfig, distributed bool, g Groups) *Adam {
	return NewAdamBuckets(be, params, cfg, distributed, g, 0)
}

// NewAdamBuckets is NewAdam with the distributed optimizer's buckets of bucketSize
// elements (--overlap-grad-reduce; 0: one bucket besides the shared embedding's), laid out
// and sharded as Megatron's: DP rank r owns shard r of every bucket.
func NewAdamBuckets(be kernels.Backend, params layers.Params, cfg AdamConfig, distributed bool, g Groups, bucketSize int) *Adam {
	params, g.Chunks = withoutBuffers(params, g.Chunks)
	dp := 1
	if g.DP != nil {
		dp = g.DP.Size()
	}
	a := &Adam{Cfg: cfg, Distributed: distributed, be: be, g: g} // at DP 1 too, as Megatron: distrib_optim.pt
	edp := 0
	if g.ExpertDP != nil {
		edp = g.ExpertDP.Size()
	}
	switch {
	case a.Distributed:
		a.buf = AttachLayout(be, params, NewDistLayout(params, dp, bucketSize, true, g.Chunks, edp))
	case edp > 0:
		// Expert weights in buckets of their own; with --overlap-grad-reduce the dense ones
		// too, the shared embedding apart (reduced after the embedding group's all-reduce).
		a.buf = AttachLayout(be, params, NewDistLayout(params, dp, bucketSize, bucketSize > 0, g.Chunks, edp))
	default:
		a.buf = Attach(be, params, dp)
	}
	a.numel = params.Numel()
	a.params = params
	lay := a.buf.Layout
	if a.Distributed {
		local := 0
		for i, b := range lay.Buckets {
			c := a.BucketGroup(i)
			n := (b.Hi - b.Lo) / c.Size()
			lo := b.Lo + c.Rank()*n
			a.own = append(a.own, Span{Lo: lo, Hi: lo + n, Local: local})
			local += n
		}
	} else {
		a.own = []Span{{Lo: 0, Hi: lay.Numel}}
	}
	for i, p := range params {
		start := lay.Offsets[i]
		o := a.own[0]
		if a.Distributed {
			o = a.own[lay.bucketOf(start)]
		}
		s, e := max(start, o.Lo), min(start+p.Numel(), o.Hi)
		if s < e {
			a.pieces = append(a.pieces, piece{p: p, lo: s, hi: e, local: o.Local + s - o.Lo})
		}
	}
	n := a.owned()
	a.m, a.v = be.Alloc(tensor.F32, n), be.Alloc(tensor.F32, n)
	a.views()
	return a
}

// BucketGroup is the group bucket b is reduced (and, distributed, sharded) over: the
// expert-data-parallel group for expert buckets, else the data-parallel group.
func (a *Adam) BucketGroup(b int) comm.Comm {
	if a.buf.Layout.Buckets[b].Expert {
		return a.g.ExpertDP
	}
	return a.g.DP
}

// Span is a range [Lo, Hi) of the buffer this rank owns, stored from Local on in its
// moments and main parameters. With the distributed optimizer it is this rank's chunk of
// its bucket, where the bucket's reduce-scatter and all-gather run in place.
type Span struct{ Lo, Hi, Local int }

// owned is the number of buffer elements this rank updates.
func (a *Adam) owned() int {
	last := a.own[len(a.own)-1]
	return last.Local + last.Hi - last.Lo
}

// copyOwned copies between the owned elements of a buffer (full) and their packed form
// (packed, indexed by Span.Local): toPacked or back, casting (rounding to nearest even)
// where their dtypes differ.
func (a *Adam) copyOwned(full, packed *tensor.Tensor, toPacked bool) {
	for _, o := range a.own {
		f, p := full.Slice(o.Lo, o.Hi), packed.Slice(o.Local, o.Local+o.Hi-o.Lo)
		if !toPacked {
			f, p = p, f
		}
		if f.DType() == p.DType() {
			a.be.Copy(p, f)
		} else {
			a.be.Cast(p, f)
		}
	}
}

// roundWeights rounds the owned weights to the model dtype when the param buffer is F32
// holding 16-bit values (without ShadowWeights; a 16-bit buffer was rounded by its cast).
func (a *Adam) roundWeights() {
	if a.buf.Param.DType() != tensor.F32 {
		return
	}
	for _, o := range a.own {
		a.be.Round(a.buf.Param.Slice(o.Lo, o.Hi), a.modelDType)
	}
}

// SetModelDType makes the model's weights dt (BF16 or F16) while the optimizer keeps fp32
// main parameters, as Megatron's Float16Optimizer and distributed optimizer do: the update
// is applied to the main copy and the model weights are its rounding. On the CPU the model
// weights stay F32 tensors holding exactly the rounded values, so every GEMM sees
// bf16/fp16 weights (activations are not rounded).
func (a *Adam) SetModelDType(dt tensor.DType) {
	if dt == tensor.F32 || dt == a.modelDType {
		return
	}
	a.modelDType = dt
	a.main = a.be.Alloc(tensor.F32, a.m.Numel())
	a.copyOwned(a.buf.Param, a.main, true)
	a.be.Round(a.buf.Param, dt)
	a.views()
}

// Buffers returns the parameter and gradient buffers.
func (a *Adam) Buffers() *Buffers { return a.buf }

// Steps is the number of updates taken.
func (a *Adam) Steps() int { return a.step }

// ZeroGrads clears the gradient buffer.
func (a *Adam) ZeroGrads() { a.be.Fill(a.buf.Grad, 0) }

// ReduceGrads averages the gradients over data parallelism: scale by 1/DP, then all-reduce
// (or reduce-scatter into this rank's shard with the distributed optimizer). With fp16
// weights the gradients are first rounded to fp16, as Megatron's fp16 grad buffers hold
// them: a scaled gradient past 65504 becomes inf and the loss scaler backs off.
func (a *Adam) ReduceGrads() error {
	if a.overlap != nil {
		return a.overlap.finish()
	}
	if a.modelDType == tensor.F16 {
		a.be.Round(a.buf.Grad, tensor.F16)
	}
	if a.g.DP == nil || a.g.DP.Size() == 1 {
		return nil
	}
	a.be.Scale(a.buf.Grad, float32(1/float64(a.g.DP.Size())))
	if a.Distributed {
		for b := range a.own {
			if err := a.reduceScatter(a.BucketGroup(b), b); err != nil {
				return err
			}
		}
		return nil
	}
	if a.g.ExpertDP == nil {
		if err := a.g.DP.AllReduce(a.buf.Grad, comm.Sum); err != nil {
			return fmt.Errorf("data-parallel all-reduce of the gradients: %w", err)
		}
		return nil
	}
	for b, k := range a.buf.Layout.Buckets {
		if err := a.BucketGroup(b).AllReduce(a.buf.Grad.Slice(k.Lo, k.Hi), comm.Sum); err != nil {
			return fmt.Errorf("data-parallel all-reduce of gradient bucket %d: %w", b, err)
		}
	}
	return nil
}

// reduceScatter sums bucket b over DP into this rank's shard of it, in place in the grad
// buffer as Megatron's (the shard is the bucket's chunk DP-rank: comm.Comm's in-place
// form), so the tensor-parallel and embedding all-reduces that may follow act on the
// reduced values. The rest of the bucket keeps this rank's unreduced grads.
func (a *Adam) reduceScatter(dp comm.Comm, b int) error {
	k, o := a.buf.Layout.Buckets[b], a.own[b]
	if err := dp.ReduceScatter(a.buf.Grad.Slice(o.Lo, o.Hi), a.buf.Grad.Slice(k.Lo, k.Hi), comm.Sum); err != nil {
		return fmt.Errorf("data-parallel reduce-scatter of gradient bucket %d: %w", b, err)
	}
	return nil
}

// grad returns the reduced gradient of a piece.
func (a *Adam) grad(pc *piece) *tensor.Tensor { return a.buf.Grad.Slice(pc.lo, pc.hi) }

// GradNorm is Megatron's global L2 norm of the reduced gradients: params marked Shared
// (the tied output layer's copy) are left out, and TP-replicated params count only on TP
// rank 0; partial sums are added over the Norm group.
func (a *Adam) GradNorm() (float64, error) {
	if a.normSpans != nil { // every piece counts: a few sums over the owned spans
		var ss float64
		for _, t := range a.normSpans {
			ss += a.be.SumSquares(t)
		}
		return sqrtOf(a.sumOverModel(ss, 0, "grad norm"))
	}
	return sqrtOf(a.sumOverPieces(a.be.SumSquares, "grad norm"))
}

func sqrtOf(v float64, err error) (float64, error) { return math.Sqrt(v), err }

// CountZeros is Megatron's count_zeros_fp32 (--log-num-zeros-in-grad): the zero elements
// of the reduced gradients, counted as GradNorm's sum is (the tied output copy left out,
// TP-replicated parameters once) over the whole model. The grads are read on the host.
// Megatron's distributed optimizer counts only each DP rank's shard; this counts the model.
func (a *Adam) CountZeros() (float64, error) {
	host := tensor.New(tensor.F32, 0)
	return a.sumOverPieces(func(g *tensor.Tensor) float64 {
		if host.Numel() < g.Numel() {
			host = tensor.New(tensor.F32, g.Numel())
		}
		h := host.Slice(0, g.Numel())
		a.be.Download(h, g)
		zeros := 0
		for _, v := range h.F32() {
			if v == 0 {
				zeros++
			}
		}
		return float64(zeros)
	}, "count of zero grads")
}

// sumOverPieces adds f over the pieces that count in the norm, over the whole model.
func (a *Adam) sumOverPieces(f func(*tensor.Tensor) float64, what string) (float64, error) {
	var dense, experts float64
	for _, pc := range a.pieces {
		if !a.countsInNorm(pc.p) {
			continue
		}
		if pc.p.Expert && a.g.ExpertDP != nil && !a.Distributed {
			experts += f(pc.grad)
		} else {
			dense += f(pc.grad)
		}
	}
	return a.sumOverModel(dense, experts, what)
}

// sumOverModel adds this rank's partial sums over the Norm group; experts (replicated
// pieces of expert parallelism without the distributed optimizer) are first added over EP,
// whose ranks hold other experts.
func (a *Adam) sumOverModel(dense, experts float64, what string) (float64, error) {
	sum := func(c comm.Comm, v float64, over string) (float64, error) {
		if c == nil || c.Size() == 1 {
			return v, nil
		}
		t := tensor.FromF64([]float64{v}, 1)
		if err := c.AllReduce(t, comm.Sum); err != nil {
			return 0, fmt.Errorf("%s all-reduce of the %s: %w", over, what, err)
		}
		return t.F64()[0], nil
	}
	if a.g.ExpertDP != nil && !a.Distributed {
		e, err := sum(a.g.EP, experts, "expert-parallel")
		if err != nil {
			return 0, err
		}
		dense += e
	}
	return sum(a.g.Norm, dense, "model-parallel")
}

// Step takes the (already reduced) gradients, clips them to Cfg.ClipGrad (coefficient
// clip/(norm+1e-6), applied only below 1), applies AdamW with learning rate lr and, for the
// distributed optimizer, all-gathers the updated parameters. It returns the pre-clip norm
// (0 when clipping is off, as Megatron logs) and whether the update ran: a non-finite norm
// skips it, so a NaN never reaches the weights.
func (a *Adam) Step(lr float64) (gradNorm float64, ok bool, err error) {
	f := 1 / a.LossScale()
	if a.GradScale != 0 {
		f *= a.GradScale
	}
	if f != 1 {
		for _, pc := range a.pieces {
			a.be.Scale(pc.grad, float32(f))
		}
	}
	norm, err := a.GradNorm()
	if err != nil {
		return 0, false, err
	}
	found := math.IsNaN(norm) || math.IsInf(norm, 0)
	if a.Scaler != nil {
		a.Scaler.Update(found)
	}
	if found {
		return norm, false, nil
	}
	if c := a.Cfg.ClipGrad / (norm + 1e-6); a.Cfg.ClipGrad > 0 && c < 1 {
		for _, pc := range a.pieces {
			a.be.Scale(pc.grad, float32(c))
		}
	}
	a.step++
	for _, pc := range a.pieces {
		wd := a.Cfg.WeightDecay
		if pc.p.NoWeightDecay {
			wd = 0
		}
		plr := lr
		if a.DecoupledLR > 0 && EmbeddingOrOutput(pc.p) {
			plr = a.DecoupledLR
		}
		a.be.AdamW(pc.param, pc.grad, pc.m, pc.v, kernels.AdamParams{
			LR: float32(plr), Beta1: float32(a.Cfg.Beta1), Beta2: float32(a.Cfg.Beta2),
			Eps: float32(a.Cfg.Eps), WeightDecay: float32(wd), Step: a.step,
		})
	}
	if a.main != nil {
		a.copyOwned(a.buf.Param, a.main, false)
		a.roundWeights()
	}
	if a.Distributed {
		// The updated shard is already in place in the param buffer (its bucket's chunk
		// DP-rank): gather each bucket around it.
		for b, k := range a.buf.Layout.Buckets {
			o := a.own[b]
			if err := a.BucketGroup(b).AllGather(a.buf.Param.Slice(k.Lo, k.Hi), a.buf.Param.Slice(o.Lo, o.Hi)); err != nil {
				return norm, true, fmt.Errorf("data-parallel all-gather of parameter bucket %d: %w", b, err)
			}
		}
	}
	a.refreshShadow()
	if a.Cfg.ClipGrad == 0 {
		norm = 0
	}
	return norm, true, nil
}

// ShadowWeights stores the model's weights in their model dtype (BF16 or F16, after
// SetModelDType), as Megatron's bf16 parameters are: the param buffer becomes 16-bit
// (half the bytes, and half the distributed optimizer's all-gather), every Param's Data a
// view into it and its Low the same view, which the layers' GEMMs read on 16-bit tensor
// cores, and the embedding lookups read BF16 tables directly; the fp32 main parameters
// keep the precise values. Parameters read by ops that take F32 weights (Param.NonGEMM:
// norms, biases; F16 embedding tables) get an F32 Wide copy,
// recast whenever the weights change (Step, SyncMainFromWeights). The GPU path uses it; a
// no-op for F32 models.
func (a *Adam) ShadowWeights() {
	if a.main == nil || a.low != nil { // F32 model (no SetModelDType), or done
		return
	}
	a.low = a.be.Alloc(a.modelDType, a.buf.Layout.Numel)
	a.be.Cast(a.low, a.buf.Param) // exact: the F32 buffer holds rounded values
	for i, p := range a.params {
		off := a.buf.Layout.Offsets[i]
		p.Data = a.low.Slice(off, off+p.Numel()).View(p.Shape...)
		p.Low = p.Data
		if p.NonGEMM || p.Lookup && a.modelDType != tensor.BF16 {
			p.Wide = a.be.Alloc(tensor.F32, p.Shape...)
		}
	}
	free(a.be, a.buf.Param)
	a.buf.Param = a.low
	a.views()
	a.refreshShadow()
}

// refreshShadow recasts the Wide copies from the 16-bit weights.
func (a *Adam) refreshShadow() {
	for _, p := range a.params {
		if p.Wide != nil {
			a.be.Cast(p.Wide, p.Data)
		}
	}
}

// free releases t on backends that manage device memory (kernels/cuda's arena).
func free(be kernels.Backend, t *tensor.Tensor) {
	if f, ok := be.(interface{ Free(*tensor.Tensor) error }); ok {
		_ = f.Free(t)
	}
}

// Memory is what the optimizer and its buffers hold, in bytes, by role.
type Memory struct {
	Weights   int64 // model parameters (the param buffer)
	Wide      int64 // F32 copies of 16-bit weights for non-GEMM ops (ShadowWeights)
	Grads     int64 // gradient buffer
	Optimizer int64 // Adam moments and fp32 main parameters of the owned elements
	// Staging is what the distributed optimizer holds beside the buffers for its
	// reduce-scatters and all-gathers: 0, as Megatron's, since both run in place in the grad
	// and param buffers (comm.Comm's in-place form; shards used to be staged, 4/DP + 4/DP
	// bytes per parameter, 4/DP + 2/DP with 16-bit weights).
	Staging int64
	Params  int64 // number of model parameters on this rank (unpadded)
}

// Memory reports the bytes held by role, read from the tensors actually allocated.
func (a *Adam) Memory() Memory {
	b := func(t *tensor.Tensor) int64 {
		if t == nil {
			return 0
		}
		return int64(t.Bytes())
	}
	var wide int64
	for _, p := range a.params {
		wide += b(p.Wide)
	}
	return Memory{Weights: b(a.buf.Param), Wide: wide, Grads: b(a.buf.Grad), Optimizer: b(a.m) + b(a.v) + b(a.main),
		Params: int64(a.numel)}
}

// State is the optimizer state this rank owns, for checkpoints: the Adam step, and the
// moments and fp32 main parameters (nil without SetModelDType) of the buffer elements in
// Own, packed (Span.Local).
type State struct {
	Step       int
	Own        []Span
	M, V, Main *tensor.Tensor
}

// Packed is where buffer element i sits in the packed state, or −1 if this rank does not
// own it.
func (s State) Packed(i int) int {
	for _, o := range s.Own {
		if i >= o.Lo && i < o.Hi {
			return o.Local + i - o.Lo
		}
	}
	return -1
}

// State returns views of the owned state (changes to them change the optimizer).
func (a *Adam) State() State { return State{Step: a.step, Own: a.own, M: a.m, V: a.v, Main: a.main} }

// SetStep sets the Adam step count (bias correction) when resuming.
func (a *Adam) SetStep(n int) { a.step = n }

// SyncMainFromWeights takes freshly loaded weights as the fp32 main parameters and rounds
// the model's copy to its dtype (bf16/fp16), as after SetModelDType.
func (a *Adam) SyncMainFromWeights() {
	if a.main == nil {
		return
	}
	a.copyOwned(a.buf.Param, a.main, true)
	if a.buf.Param.DType() == tensor.F32 {
		a.be.Round(a.buf.Param, a.modelDType)
	}
	a.refreshShadow()
}

// withoutBuffers drops the buffers (Param.Buffer: the router's expert bias), which the
// optimizer never updates, from params and from the per-chunk counts.
func withoutBuffers(params layers.Params, chunks []int) (layers.Params, []int) {
	if len(chunks) == 0 {
		return params.Trainable(), nil
	}
	var keep layers.Params
	out := make([]int, len(chunks))
	i := 0
	for c, n := range chunks {
		for _, p := range params[i : i+n] {
			if !p.Buffer {
				keep = append(keep, p)
				out[c]++
			}
		}
		i += n
	}
	return keep, out
}

// EmbeddingOrOutput reports whether p is the word embeddings or the output layer (a tied
// copy too): Megatron-Core's is_embedding_or_output_parameter, the --decoupled-lr group.
func EmbeddingOrOutput(p *layers.Param) bool {
	return p.Name == "embedding.word_embeddings.weight" || p.Name == "output_layer.weight"
}
