package train

import (
	"fmt"

	"github.com/gomegatron/gomegatron/comm"
	"github.com/gomegatron/gomegatron/kernels"
	"github.com/gomegatron/gomegatron/layers"
	"github.com/gomegatron/gomegatron/optim"
	"github.com/gomegatron/gomegatron/tensor"
)

// interleaved is Megatron's interleaved 1F1B schedule
// (forward_backward_pipelining_with_interleaving) over VP model chunks per stage.
type interleaved struct {
	fwd, bwd comm.Comm         // PP group split twice: activations and gradients travel apart
	free     [][]*layers.Stash // per chunk, idle stashes
	s, mbs   int
	dout     []*tensor.Tensor // per chunk, received output gradient
}

// NewInterleavedTrainer runs chunks (chunk v of this stage, v = 0…VP−1) with the
// interleaved schedule. opt must cover every chunk's parameters. Collective over the PP
// group (it splits it into a forward and a backward channel).
func NewInterleavedTrainer(be kernels.Backend, chunks []*layers.GPTModel, ps *comm.ParallelState, opt *optim.Adam, s, mbs int) (*Trainer, error) {
	t := NewTrainer(be, chunks[0], ps, opt, s, mbs)
	t.Chunks = chunks
	if len(chunks) == 1 {
		return t, nil
	}
	vp := &interleaved{s: s, mbs: mbs, free: make([][]*layers.Stash, len(chunks)), dout: make([]*tensor.Tensor, len(chunks))}
	var err error
	if vp.fwd, err = ps.PP.Split(0, ps.PP.Rank()); err != nil {
		return nil, fmt.Errorf("interleaved schedule: %w", err)
	}
	if vp.bwd, err = ps.PP.Split(0, ps.PP.Rank()); err != nil {
		return nil, fmt.Errorf("interleaved schedule: %w", err)
	}
	for v, c := range chunks {
		st := c.NewStash(s, mbs)
		vp.free[v] = append(vp.free[v], st)
		vp.dout[v] = be.Alloc(st.Output().DType(), st.Output().Shape()...)
	}
	t.vp = vp
	return t, nil
}

func (vp *interleaved) get(t *Trainer, v int) *layers.Stash {
	if n := len(vp.free[v]); n > 0 {
		st := vp.free[v][n-1]
		vp.free[v] = vp.free[v][:n-1]
		return st
	}
	return t.Chunks[v].NewStash(vp.s, vp.mbs)
}

// unit maps the k-th forward (or backward) unit of work to its microbatch and chunk:
// groups of PP microbatches go through chunk 0, then chunk 1, …; backward visits the
// chunks in reverse.
func unit(k, pp, vpp int, forward bool) (mb, chunk int) {
	group := k / (pp * vpp)
	in := k % (pp * vpp)
	chunk = in / pp
	mb = group*pp + in%pp
	if !forward {
		chunk = vpp - 1 - chunk
	}
	return mb, chunk
}

func (vp *interleaved) forwardBackward(t *Trainer, micro []layers.Batch, seed, iteration uint64) (float64, error) {
	pp, rank := t.PS.PPSize, t.PS.Coords.PP
	vpp := len(t.Chunks)
	M := len(micro)
	if M%pp != 0 {
		return 0, fmt.Errorf("the interleaved schedule needs the number of microbatches (%d) to be a multiple of the pipeline size %d", M, pp)
	}
	for _, c := range t.Chunks {
		c.AuxLossScale = auxLossScale(t, M)
	}
	total := M * vpp
	warmup := (pp-rank-1)*2 + (vpp-1)*pp
	if M == pp {
		warmup = total
	}
	warmup = min(warmup, total)
	t.tokens = append(t.tokens[:0], make([]float64, M)...)
	inflight := map[[2]int]*layers.Stash{} // (microbatch, chunk) → stash, from its forward to its backward
	inputs := map[int]*layers.Stash{}      // forward unit → stash whose input has arrived
	prev, next := (rank-1+pp)%pp, (rank+1)%pp
	var lossSum float64

	// Transfers go in batches, as Megatron's send_forward_recv_forward,
	// send_forward_backward_recv_forward_backward and send_backward_recv_backward: each
	// batch sends what the units just computed and receives what the next units need, all
	// posted together (one NCCL group on GPUs, where a lone send waits for its receiver).
	var ops []comm.P2POp
	recvInput := func(k int) { // the input of forward unit k, if it comes from another stage
		if k >= total {
			return
		}
		mb, v := unit(k, pp, vpp, true)
		st := vp.get(t, v)
		inflight[[2]int{mb, v}] = st
		inputs[k] = st
		if !t.Chunks[v].Par.First() {
			ops = append(ops, comm.P2POp{Comm: vp.fwd, T: st.Input(), Peer: prev})
		}
	}
	recvGrad := func(k int) { // the output gradient of backward unit k, if it has one
		if k >= total {
			return
		}
		if _, v := unit(k, pp, vpp, false); !t.Chunks[v].Par.Last() {
			ops = append(ops, comm.P2POp{Comm: vp.bwd, T: vp.dout[v], Peer: next})
		}
	}
	flush := func(what string) error {
		err := comm.BatchP2P(ops)
		ops = ops[:0]
		if err != nil {
			return fmt.Errorf("pipeline transfers after %s: %w", what, err)
		}
		return nil
	}
	forward := func(k int) error {
		mb, v := unit(k, pp, vpp, true)
		c, st := t.Chunks[v], inputs[k]
		delete(inputs, k)
		sum, n, err := c.Forward(st, micro[mb], seed, iteration*uint64(M)+uint64(mb))
		if err != nil {
			return fmt.Errorf("microbatch %d chunk %d: %w", mb, v, err)
		}
		if c.Par.Last() {
			lossSum += sum
			t.tokens[mb] = n
		} else {
			ops = append(ops, comm.P2POp{Comm: vp.fwd, T: st.Output(), Peer: next, Send: true})
		}
		return nil
	}
	type chunkStash struct {
		v  int
		st *layers.Stash
	}
	var done []chunkStash // backward stashes whose input gradient is in the pending batch
	backward := func(k int) error {
		mb, v := unit(k, pp, vpp, false)
		c := t.Chunks[v]
		st, ok := inflight[[2]int{mb, v}]
		if !ok {
			return fmt.Errorf("interleaved schedule: backward of microbatch %d chunk %d before its forward", mb, v)
		}
		delete(inflight, [2]int{mb, v})
		var scale float32
		var dout *tensor.Tensor
		if c.Par.Last() {
			scale = t.lossGradScale(st, mb, M)
		} else {
			dout = vp.dout[v]
		}
		if k == total-1 { // the last unit: chunks finished earlier are reduced at WaitGradSync
			c.GradsReady = t.Opt.StartGradSync()
		}
		err := c.Backward(st, scale, dout)
		c.GradsReady = nil
		if err != nil {
			return fmt.Errorf("microbatch %d chunk %d backward: %w", mb, v, err)
		}
		if !c.Par.First() {
			ops = append(ops, comm.P2POp{Comm: vp.bwd, T: st.InputGrad(), Peer: prev, Send: true})
		}
		done = append(done, chunkStash{v, st})
		return nil
	}
	release := func() { // stashes whose gradient has been sent go back to their chunk's pool
		for _, d := range done {
			vp.free[d.v] = append(vp.free[d.v], d.st)
		}
		done = done[:0]
	}

	recvInput(0)
	if warmup == 0 {
		recvGrad(0)
	}
	if err := flush("start"); err != nil {
		return 0, err
	}
	for k := 0; k < warmup; k++ {
		if err := forward(k); err != nil {
			return 0, err
		}
		recvInput(k + 1)
		if k == warmup-1 && warmup < total {
			recvGrad(0) // the first backward's gradient, with the last warm-up transfer
		}
		if err := flush(fmt.Sprintf("warm-up forward %d", k)); err != nil {
			return 0, err
		}
	}
	for i := 0; i < total-warmup; i++ {
		if err := forward(warmup + i); err != nil {
			return 0, err
		}
		if err := backward(i); err != nil {
			return 0, err
		}
		recvInput(warmup + i + 1)
		recvGrad(i + 1)
		if err := flush(fmt.Sprintf("forward %d and backward %d", warmup+i, i)); err != nil {
			return 0, err
		}
		release()
	}
	if warmup == total {
		recvGrad(0)
		if err := flush("warm-up"); err != nil {
			return 0, err
		}
	}
	for i := total - warmup; i < total; i++ {
		if err := backward(i); err != nil {
			return 0, err
		}
		recvGrad(i + 1)
		if err := flush(fmt.Sprintf("backward %d", i)); err != nil {
			return 0, err
		}
		release()
	}
	return lossSum, nil
}

// evaluate runs microbatches forward only through every chunk (this rank's sums).
func (vp *interleaved) evaluate(t *Trainer, micro []layers.Batch, seed, step uint64) (lossSum, tokens float64, err error) {
	pp, rank := t.PS.PPSize, t.PS.Coords.PP
	prev, next := (rank-1+pp)%pp, (rank+1)%pp
	for i, mb := range micro {
		for v, c := range t.Chunks {
			st := vp.get(t, v)
			if !c.Par.First() {
				if err := vp.fwd.Recv(st.Input(), prev); err != nil {
					return 0, 0, fmt.Errorf("evaluation microbatch %d chunk %d: %w", i, v, err)
				}
			}
			sum, n, err := c.Forward(st, mb, seed, step)
			if err != nil {
				return 0, 0, fmt.Errorf("evaluation microbatch %d chunk %d: %w", i, v, err)
			}
			if c.Par.Last() {
				lossSum, tokens = lossSum+sum, tokens+n
			} else if err := vp.fwd.Send(st.Output(), next); err != nil {
				return 0, 0, fmt.Errorf("evaluation microbatch %d chunk %d: %w", i, v, err)
			}
			vp.free[v] = append(vp.free[v], st)
		}
	}
	return lossSum, tokens, nil
}
