package train

import (
	"fmt"

	"github.com/gomegatron/gomegatron/comm"
	"github.com/gomegatron/gomegatron/kernels"
	"github.com/gomegatron/gomegatron/layers"
	"github.com/gomegatron/gomegatron/optim"
	"github.com/gomegatron/gomegatron/tensor"
)

// Trainer runs training iterations for one rank of a (TP, PP, DP) layout: the pipeline
// schedule over its microbatches, gradient finalisation and the optimizer step.
type Trainer struct {
	be    kernels.Backend
	Model *layers.GPTModel // the first (only, without virtual stages) model chunk
	// Chunks are this rank's model chunks of the interleaved schedule (just Model without
	// virtual pipeline stages).
	Chunks  []*layers.GPTModel
	vp      *interleaved
	PS      *comm.ParallelState // nil for a single process
	Opt     *optim.Adam
	stashes []*layers.Stash
	dout    *tensor.Tensor // received output grads (non-last stages)
	tokens  []float64      // per microbatch loss tokens (last stage)
	stats   *tensor.Tensor // [2] F64: Σ loss, Σ tokens for the DP reduction of the report
	// PerTokenLoss is --calculate-per-token-loss: the gradient of Σ loss / Σ tokens over the
	// whole global batch, not the mean over microbatches of each one's token mean.
	PerTokenLoss bool
}

// NewTrainer prepares activation stashes for microbatches of mbs sequences of length s:
// one per microbatch a pipeline stage can hold in flight under 1F1B.
func NewTrainer(be kernels.Backend, m *layers.GPTModel, ps *comm.ParallelState, opt *optim.Adam, s, mbs int) *Trainer {
	t := &Trainer{be: be, Model: m, Chunks: []*layers.GPTModel{m}, PS: ps, Opt: opt, stats: tensor.New(tensor.F64, 2)}
	n := 1
	if ps != nil {
		n = ps.PPSize
	}
	for i := 0; i < n; i++ {
		t.stashes = append(t.stashes, m.NewStash(s, mbs))
	}
	if !m.Par.Last() {
		t.dout = be.Alloc(t.stashes[0].Output().DType(), t.stashes[0].Output().Shape()...)
	}
	return t
}

// Iteration trains on the microbatches of one global batch that belong to this DP rank and
// returns the lm loss (Σ loss / Σ tokens over the whole global batch, on last-stage ranks;
// 0 elsewhere) and the grad norm. Megatron's order: zero grads, forward/backward through the
// schedule, finalize grads (tied embeddings, sequence-parallel norms, data parallel), step.
func (t *Trainer) Iteration(micro []layers.Batch, lr float64, seed, iteration uint64) (StepResult, error) {
	var res StepResult
	t.Opt.ZeroGrads()
	var lossSum float64
	var err error
	if t.vp != nil {
		lossSum, err = t.vp.forwardBackward(t, micro, seed, iteration)
	} else {
		lossSum, err = t.forwardBackward(micro, seed, iteration)
	}
	if err != nil {
		return res, err
	}
	if err := t.finalizeGrads(); err != nil {
		return res, err
	}
	var stage comm.Comm // every rank of this pipeline stage: TP × DP × CP
	if t.PS != nil {
		stage = t.PS.Amax
	}
	for _, c := range t.Chunks { // --moe-router-enable-expert-bias, after backward as Megatron
		if err := c.UpdateExpertBias(stage); err != nil {
			return res, err
		}
	}
	if res.Loss, res.Tokens, err = t.reportLoss(lossSum); err != nil {
		return res, err
	}
	if t.PerTokenLoss {
		if err := t.perTokenGradScale(res.Tokens); err != nil {
			return res, err
		}
	}
	norm, ok, err := t.Opt.Step(lr)
	res.GradNorm, res.Skipped = norm, !ok
	if err != nil {
		return res, err
	}
	for _, c := range t.Chunks {
		if err := c.UpdateFP8Scales(stage); err != nil {
			return res, err
		}
	}
	return res, nil
}

// last is the chunk that ends the model on the last pipeline stage (or would).
func (t *Trainer) last() *layers.GPTModel { return t.Chunks[len(t.Chunks)-1] }

// auxLossScale is what MoE layers scale their auxiliary losses' gradients by: the loss
// scale over the microbatch count (Megatron's MoEAuxLossAutoScaler.set_loss_scale), or
// the loss scale alone per token (the step's 1/tokens then applies to them too; over CP,
// whose ranks each multiply it by CP for the average over DP × CP that per-token grads
// replace by a sum).
func auxLossScale(t *Trainer, microbatches int) float32 {
	if t.PerTokenLoss {
		return float32(t.Opt.LossScale() / float64(t.cpSize()))
	}
	return float32(t.Opt.LossScale() / float64(microbatches))
}

func (t *Trainer) cpSize() int {
	if t.PS == nil {
		return 1
	}
	return max(t.PS.CPSize, 1)
}

// lossGradScale is the last stage's backward scale of microbatch i of M (st its stash,
// after Forward): the loss scale over its tokens and the microbatch count, Megatron's
// default; or, per token, the loss scale on every token, the step's 1/tokens coming after
// the reduction (perTokenGradScale). The model takes the scale relative to this rank's
// tokens and makes it the context-parallel group's, times CP; per token that is undone.
func (t *Trainer) lossGradScale(st *layers.Stash, i, M int) float32 {
	ls, n := t.Opt.LossScale(), max(t.tokens[i], 1)
	if t.PerTokenLoss {
		return float32(ls * max(st.CPTokens(), 1) / (n * float64(t.cpSize())))
	}
	return float32(ls / (n * float64(M)))
}

// perTokenGradScale makes the reduced gradients those of Σ loss / Σ tokens of the global
// batch: they hold the average over data (and context) parallelism of each rank's Σ loss
// summed over microbatches, so they are scaled by the group's size / tokens. Tokens are counted on the last stage
// (tokens, from reportLoss) and broadcast over the pipeline, as Megatron's
// finalize_model_grads does with num_tokens.
func (t *Trainer) perTokenGradScale(tokens float64) error {
	if t.PS != nil && t.PS.PPSize > 1 {
		v := t.stats.F64()
		v[0] = tokens
		if err := t.PS.PP.Broadcast(t.stats, t.PS.PPSize-1); err != nil {
			return fmt.Errorf("pipeline broadcast of the token count: %w", err)
		}
		tokens = v[0]
	}
	t.Opt.GradScale = float64(t.Opt.DataParallelSize()) / max(tokens, 1)
	return nil
}

// forwardBackward is Megatron's non-interleaved 1F1B schedule: warm-up forwards
// (pp − rank − 1 of them), then one forward and one backward alternately, then the
// remaining backwards. Activations move between stages by send/recv over the PP group.
func (t *Trainer) forwardBackward(micro []layers.Batch, seed, iteration uint64) (float64, error) {
	m := t.Model
	M := len(micro)
	m.AuxLossScale = auxLossScale(t, M)
	t.tokens = append(t.tokens[:0], make([]float64, M)...)
	pp, rank := 1, 0
	var pipe comm.Comm
	if t.PS != nil {
		pp, rank, pipe = t.PS.PPSize, t.PS.Coords.PP, t.PS.PP
	}
	var lossSum float64
	io := &p2p{c: pipe}
	stash := func(i int) *layers.Stash { return t.stashes[i%len(t.stashes)] }
	// pair: the next transfer is a receive from the same neighbour (the steady 1F1B state),
	// so the send waits and goes with it.
	forward := func(i int, pair bool) error {
		st := stash(i)
		if !m.Par.First() {
			if err := io.recv(st.Input(), rank-1); err != nil {
				return fmt.Errorf("microbatch %d: receiving activations from stage %d: %w", i, rank-1, err)
			}
		}
		sum, n, err := m.Forward(st, micro[i], seed, iteration*uint64(M)+uint64(i))
		if err != nil {
			return fmt.Errorf("microbatch %d: %w", i, err)
		}
		lossSum += sum
		t.tokens[i] = n
		if !m.Par.Last() {
			if err := io.send(st.Output(), rank+1, pair); err != nil {
				return fmt.Errorf("microbatch %d: sending activations to stage %d: %w", i, rank+1, err)
			}
		}
		return nil
	}
	backward := func(i int, pair bool) error {
		st := stash(i)
		var scale float32
		if m.Par.Last() {
			scale = t.lossGradScale(st, i, M)
		} else if err := io.recv(t.dout, rank+1); err != nil {
			return fmt.Errorf("microbatch %d: receiving gradients from stage %d: %w", i, rank+1, err)
		}
		if i == M-1 { // Megatron enables grad sync for the last microbatch only
			m.GradsReady = t.Opt.StartGradSync()
		}
		err := m.Backward(st, scale, t.dout)
		m.GradsReady = nil
		if err != nil {
			return fmt.Errorf("microbatch %d backward: %w", i, err)
		}
		if !m.Par.First() {
			if err := io.send(st.InputGrad(), rank-1, pair); err != nil {
				return fmt.Errorf("microbatch %d: sending gradients to stage %d: %w", i, rank-1, err)
			}
		}
		return nil
	}
	warmup := min(pp-rank-1, M)
	for i := 0; i < warmup; i++ {
		if err := forward(i, false); err != nil {
			return 0, err
		}
	}
	steady := M - warmup
	for i := 0; i < steady; i++ {
		if err := forward(warmup+i, true); err != nil {
			return 0, err
		}
		if err := backward(i, i+1 < steady); err != nil {
			return 0, err
		}
	}
	for i := steady; i < M; i++ {
		if err := backward(i, false); err != nil {
			return 0, err
		}
	}
	if io.pending != nil {
		return 0, fmt.Errorf("pipeline schedule: a send to stage %d was never paired", io.to)
	}
	return lossSum, nil
}

// p2p pairs a pipeline send with the stage's next receive from the same neighbour as one
// comm.BatchP2P (Megatron's send_forward_recv_backward and send_backward_recv_forward),
// which NCCL needs when both neighbours send first. A paired send waits for that receive;
// the tensor is not written in between (its stash is not reused before it).
type p2p struct {
	c       comm.Comm
	pending *tensor.Tensor
	to      int
}

func (p *p2p) send(t *tensor.Tensor, to int, pair bool) error {
	if !pair {
		return p.c.Send(t, to)
	}
	p.pending, p.to = t, to
	return nil
}

func (p *p2p) recv(t *tensor.Tensor, from int) error {
	if s := p.pending; s != nil {
		p.pending = nil
		if from != p.to {
			return fmt.Errorf("pipeline schedule: a send to stage %d paired with a receive from stage %d", p.to, from)
		}
		return comm.BatchP2P([]comm.P2POp{{Comm: p.c, T: s, Peer: p.to, Send: true}, {Comm: p.c, T: t, Peer: from}})
	}
	return p.c.Recv(t, from)
}

// finalizeGrads sums the tied embedding grads over the embedding group (first and last
// stage), all-reduces sequence-parallel grads over TP and averages over data parallelism.
func (t *Trainer) finalizeGrads() error {
	if err := t.Opt.WaitGradSync(); err != nil {
		return err
	}
	m := t.Model
	if t.PS != nil && t.PS.PPSize > 1 && t.PS.Embedding != nil && !m.Cfg.UntieEmbeddingsAndOutputWeights {
		w := m.WordEmb
		if t.last().Par.Last() {
			w = t.last().Output
		}
		if err := t.PS.Embedding.AllReduce(w.Grad, comm.Sum); err != nil {
			return fmt.Errorf("embedding-group all-reduce of %s's grad: %w", w.Name, err)
		}
	}
	for _, c := range t.Chunks {
		if err := c.ReduceSequenceParallelGrads(); err != nil {
			return err
		}
	}
	return t.Opt.ReduceGrads()
}

// reportLoss sums (Σ loss, Σ tokens) over data parallelism on last-stage ranks.
func (t *Trainer) reportLoss(lossSum float64) (loss, tokens float64, err error) {
	if !t.last().Par.Last() {
		return 0, 0, nil
	}
	for _, n := range t.tokens {
		tokens += n
	}
	if t.PS != nil && t.PS.DPCP.Size() > 1 {
		v := t.stats.F64()
		v[0], v[1] = lossSum, tokens
		if err := t.PS.DPCP.AllReduce(t.stats, comm.Sum); err != nil {
			return 0, 0, fmt.Errorf("data-parallel all-reduce of the loss: %w", err)
		}
		lossSum, tokens = v[0], v[1]
	}
	if tokens == 0 {
		return 0, 0, fmt.Errorf("no token of the global batch has a non-zero loss mask")
	}
	return lossSum / tokens, tokens, nil
}

// Evaluate runs microbatches forward only through the pipeline and returns Σ loss and
// Σ tokens over the data-parallel group (valid on last-stage ranks; zeros elsewhere).
func (t *Trainer) Evaluate(micro []layers.Batch, seed, step uint64) (lossSum, tokens float64, err error) {
	if lossSum, tokens, err = t.EvaluateLocal(micro, seed, step); err != nil {
		return 0, 0, err
	}
	return t.reduceEval(lossSum, tokens)
}

// EvaluateLocal is Evaluate without the data-parallel sum: this rank's microbatches only.
// Dropout is off, as under Megatron's model.eval().
func (t *Trainer) EvaluateLocal(micro []layers.Batch, seed, step uint64) (lossSum, tokens float64, err error) {
	for _, c := range t.Chunks {
		defer c.Eval()()
	}
	if t.vp != nil {
		return t.vp.evaluate(t, micro, seed, step)
	}
	m := t.Model
	var pipe comm.Comm
	rank := 0
	if t.PS != nil {
		pipe, rank = t.PS.PP, t.PS.Coords.PP
	}
	st := t.stashes[0]
	for i, mb := range micro {
		if !m.Par.First() {
			if err := pipe.Recv(st.Input(), rank-1); err != nil {
				return 0, 0, fmt.Errorf("evaluation microbatch %d: receiving activations: %w", i, err)
			}
		}
		sum, n, err := m.Forward(st, mb, seed, step)
		if err != nil {
			return 0, 0, fmt.Errorf("evaluation microbatch %d: %w", i, err)
		}
		lossSum += sum
		tokens += n
		if !m.Par.Last() {
			if err := pipe.Send(st.Output(), rank+1); err != nil {
				return 0, 0, fmt.Errorf("evaluation microbatch %d: sending activations: %w", i, err)
			}
		}
	}
	return lossSum, tokens, nil
}

// reduceEval sums a validation loss over data parallelism on last-stage ranks.
func (t *Trainer) reduceEval(lossSum, tokens float64) (float64, float64, error) {
	if t.last().Par.Last() && t.PS != nil && t.PS.DPCP.Size() > 1 {
		v := t.stats.F64()
		v[0], v[1] = lossSum, tokens
		if err := t.PS.DPCP.AllReduce(t.stats, comm.Sum); err != nil {
			return 0, 0, fmt.Errorf("data-parallel all-reduce of the validation loss: %w", err)
		}
		lossSum, tokens = v[0], v[1]
	}
	return lossSum, tokens, nil
}

// lateForOverlap marks the parameters --overlap-grad-reduce must not reduce before the
// embedding-group all-reduce: the word embeddings tied across pipeline stages.
func lateForOverlap(p *layers.Param) bool { return p.SharedEmbedding }
