package train

import (
	"context"
	"fmt"
	"math"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/comm"
	"github.com/gomegatron/gomegatron/comm/tcp"
	"github.com/gomegatron/gomegatron/kernels/cpu"
	"github.com/gomegatron/gomegatron/layers"
	"github.com/gomegatron/gomegatron/optim"
	"github.com/gomegatron/gomegatron/tensor"
)

type layout struct {
	tp, pp, dp int
	sp, dist   bool
	rc         layers.Recompute
	vpp        int  // virtual pipeline stages (interleaved schedule); 0 = 1
	ep         int  // expert parallelism (MoE models); 0 = 1
	cp         int  // context parallelism; 0 = 1
	bucket     int  // --overlap-grad-reduce with this bucket size (elements); 0 = off
	bf16       bool // bf16 weights with fp32 main params; compared with the bf16 single process at 1e-2
	act16      bool // with bf16: BF16 activations and 16-bit weight copies, as on a GPU
	// rendezvous gives the pipeline group NCCL's point-to-point semantics (rendezvousPP);
	// pure pipeline layouts only (tp = dp = 1, so PP ranks are world ranks).
	rendezvous bool
	perToken   bool // --calculate-per-token-loss
	uneven     bool // microbatches with different loss-mask token counts
}

func (l layout) String() string {
	s := fmt.Sprintf("tp%d_pp%d_dp%d_sp%v_dist%v", l.tp, l.pp, l.dp, l.sp, l.dist)
	if l.bf16 {
		s += "_bf16"
	}
	if l.act16 {
		s += "_act16"
	}
	if l.vpp > 1 {
		s += fmt.Sprintf("_vpp%d", l.vpp)
	}
	if l.ep > 1 {
		s += fmt.Sprintf("_ep%d", l.ep)
	}
	if l.cp > 1 {
		s += fmt.Sprintf("_cp%d", l.cp)
	}
	if l.bucket > 0 {
		s += fmt.Sprintf("_overlap%d", l.bucket)
	}
	if l.perToken {
		s += "_pertoken"
	}
	if l.uneven {
		s += "_uneven"
	}
	if l.rc.Granularity != "" {
		s += fmt.Sprintf("_rc-%s%s%d", l.rc.Granularity, l.rc.Method, l.rc.NumLayers)
	}
	if l.rendezvous {
		s += "_rendezvous"
	}
	return s
}

// rendezvousPP gives a pipeline communicator NCCL's point-to-point semantics: a send
// completes only once the receiver has posted its receive (announced on ready), and a
// BatchP2P posts its receives before its sends wait, as an NCCL group does. A schedule in
// which two neighbours both send before receiving blocks here, as it does on GPUs.
type rendezvousPP struct {
	comm.Comm
	ready comm.Comm
}

func (r rendezvousPP) Send(t *tensor.Tensor, peer int) error {
	if err := r.ready.Recv(tensor.New(tensor.U8, 1), peer); err != nil {
		return fmt.Errorf("waiting for stage %d to post its receive: %w", peer, err)
	}
	return r.Comm.Send(t, peer)
}

func (r rendezvousPP) Recv(t *tensor.Tensor, peer int) error {
	if err := r.ready.Send(tensor.New(tensor.U8, 1), peer); err != nil {
		return err
	}
	return r.Comm.Recv(t, peer)
}

// BatchP2P posts every receive of the batch before any send waits, as an NCCL group does.
func (r rendezvousPP) BatchP2P(ops []comm.P2POp) (bool, error) {
	for _, o := range ops {
		if _, ok := o.Comm.(rendezvousPP); !ok {
			return false, nil
		}
	}
	for _, o := range ops {
		if !o.Send {
			if err := o.Comm.(rendezvousPP).ready.Send(tensor.New(tensor.U8, 1), o.Peer); err != nil {
				return true, err
			}
		}
	}
	for _, o := range ops {
		if o.Send {
			if err := o.Comm.Send(o.T, o.Peer); err != nil {
				return true, err
			}
		}
	}
	for _, o := range ops {
		if !o.Send {
			if err := o.Comm.(rendezvousPP).Comm.Recv(o.T, o.Peer); err != nil {
				return true, err
			}
		}
	}
	return true, nil
}

// Split keeps the semantics in sub-groups (the interleaved schedule splits the PP group).
func (r rendezvousPP) Split(color, key int) (comm.Comm, error) {
	c, err := r.Comm.Split(color, key)
	if err != nil || c == nil {
		return nil, err
	}
	ready, err := r.ready.Split(color, key)
	if err != nil {
		return nil, err
	}
	return rendezvousPP{Comm: c, ready: ready}, nil
}

type runResult struct {
	losses, norms []float64
	weights       map[string][]float32 // final full weights by global init key
}

// globalBatch is iteration it's deterministic global batch of gbs samples.
func globalBatch(it, gbs, s, vocab int) [][2][]int64 {
	out := make([][2][]int64, gbs)
	x := uint64(it%2 + 1) // two alternating batches the model can learn
	for i := range out {
		tok, lab := make([]int64, s), make([]int64, s)
		for j := 0; j < s; j++ {
			x = x*6364136223846793005 + 1442695040888963407
			tok[j] = int64(x>>33) % int64(vocab)
		}
		copy(lab, tok[1:])
		lab[s-1] = tok[0]
		out[i] = [2][]int64{tok, lab}
	}
	return out
}

// microbatches gives DP rank r its microbatches of the global batch as Megatron's
// pretraining sampler does: chunk c of mbs·DP samples, rows [r·mbs, (r+1)·mbs).
func microbatches(g [][2][]int64, mbs, dp, r, s int) []layers.Batch {
	return microbatchesMasked(g, mbs, dp, r, s, false)
}

// microbatchesMasked is microbatches; uneven masks the first 3·(i mod 4) tokens of each
// sequence of the global batch's microbatch i (of mbs samples) too, so microbatches hold
// different numbers of loss tokens, the same in every layout.
func microbatchesMasked(g [][2][]int64, mbs, dp, r, s int, uneven bool) []layers.Batch {
	var out []layers.Batch
	for c := 0; c*mbs*dp < len(g); c++ {
		bt := layers.Batch{}
		for k := 0; k < mbs; k++ {
			smp := g[c*mbs*dp+r*mbs+k]
			bt.Tokens = append(bt.Tokens, smp[0]...)
			bt.Labels = append(bt.Labels, smp[1]...)
			for j := 0; j < s; j++ {
				m := float32((j+k)%5/4 ^ 1) // some masked tokens
				if uneven && j < 3*((c*mbs*dp+r*mbs+k)/mbs%4) {
					m = 0
				}
				bt.LossMask = append(bt.LossMask, m)
			}
		}
		out = append(out, bt)
	}
	return out
}

func runLayout(t *testing.T, cfg layers.Config, l layout, iters int) runResult {
	t.Helper()
	const s, mbs, gbs = 16, 2, 8
	world := l.tp * l.pp * l.dp * max(l.cp, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var comms, ready []comm.Comm
	if world > 1 {
		var err error
		timeout := time.Minute
		if l.rendezvous {
			timeout = 10 * time.Second // a schedule deadlock fails fast
			ready, err = tcp.LocalWorld(ctx, world, tcp.Options{Timeout: timeout})
			require.NoError(t, err)
			defer func() {
				for _, c := range ready {
					c.Close()
				}
			}()
		}
		comms, err = tcp.LocalWorld(ctx, world, tcp.Options{Timeout: timeout})
		require.NoError(t, err)
		defer func() {
			for _, c := range comms {
				c.Close()
			}
		}()
	}
	type rankOut struct {
		res    runResult
		last   bool
		models []*layers.GPTModel
		tpr    int
		err    error
	}
	outs := make([]rankOut, world)
	var wg sync.WaitGroup
	for r := 0; r < world; r++ {
		wg.Add(1)
		go func(r int) {
			defer wg.Done()
			o := &outs[r]
			be := cpu.New()
			var ps *comm.ParallelState
			par := layers.Parallel{SequenceParallel: l.sp}
			groups := optim.Groups{}
			dpRank := 0
			if world > 1 {
				var err error
				ps, err = comm.NewParallelState(comms[r], comm.ParallelConfig{TP: l.tp, PP: l.pp, CP: max(l.cp, 1), EP: max(l.ep, 1), Order: comm.DefaultOrder})
				if err != nil {
					o.err = err
					return
				}
				if l.rendezvous {
					ps.PP = rendezvousPP{Comm: ps.PP, ready: ready[r]}
				}
				par.TP, par.PPRank, par.PPSize = ps.TP, ps.Coords.PP, ps.PPSize
				groups = optim.Groups{DP: ps.DPCP, Norm: ps.MP, TP: ps.Coords.TP}
				if l.dist {
					groups.Norm = comms[r]
				}
				if l.ep > 1 {
					par.EP, groups.ExpertDP, groups.EP = ps.EP, ps.ExpertDP, ps.EP
				}
				if l.cp > 1 {
					par.CP = ps.CP
				}
				dpRank = ps.Coords.DP
				o.tpr = ps.Coords.TP
			}
			var chunks []*layers.GPTModel
			var params layers.Params
			for v := 0; v < max(l.vpp, 1); v++ {
				par.VPRank, par.VPSize = v, max(l.vpp, 1)
				m, err := layers.NewParallelGPTModel(be, cfg, par, 7)
				if err != nil {
					o.err = err
					return
				}
				if err := m.SetRecompute(l.rc); err != nil {
					o.err = err
					return
				}
				if l.act16 {
					if err := m.SetActivationDType(tensor.BF16); err != nil {
						o.err = err
						return
					}
				}
				chunks = append(chunks, m)
				params = append(params, m.Params...)
			}
			if len(chunks) > 1 {
				for _, m := range chunks {
					groups.Chunks = append(groups.Chunks, len(m.Params))
				}
			}
			opt := optim.NewAdamBuckets(be, params, optim.DefaultAdam(), l.dist, groups, l.bucket)
			if l.bf16 {
				opt.SetModelDType(tensor.BF16)
			}
			if l.act16 {
				opt.ShadowWeights()
			}
			if l.bucket > 0 {
				if err := opt.EnableOverlap(params, l.bucket, lateForOverlap); err != nil {
					o.err = err
					return
				}
			}
			tr, err := NewInterleavedTrainer(be, chunks, ps, opt, s, mbs)
			if err != nil {
				o.err = err
				return
			}
			tr.PerTokenLoss = l.perToken
			for it := 0; it < iters; it++ {
				micro := microbatchesMasked(globalBatch(it, gbs, s, cfg.VocabSize), mbs, l.dp, dpRank, s, l.uneven)
				res, err := tr.Iteration(micro, 1e-3, 7, uint64(it))
				if err != nil {
					o.err = fmt.Errorf("rank %d iteration %d: %w", r, it, err)
					return
				}
				o.res.losses = append(o.res.losses, res.Loss)
				o.res.norms = append(o.res.norms, res.GradNorm)
			}
			if experts := 0; l.ep > 1 && l.bucket > 0 {
				for _, k := range opt.Buffers().Layout.Buckets {
					if k.Expert {
						experts++
					}
				}
				if experts < 2 {
					o.err = fmt.Errorf("rank %d: %d expert buckets of %d elements; the test wants several", r, experts, l.bucket)
					return
				}
			}
			if l.bucket > 0 && len(opt.Buckets()) > 2 && opt.EarlyReductions() == 0 {
				o.err = fmt.Errorf("rank %d: %d buckets but none reduced while backward ran", r, len(opt.Buckets()))
				return
			}
			o.last, o.models = chunks[len(chunks)-1].Par.Last(), chunks
		}(r)
	}
	wg.Wait()
	for _, o := range outs {
		require.NoError(t, o.err)
	}
	var res runResult
	for _, o := range outs {
		if o.last {
			if res.losses == nil {
				res.losses = o.res.losses
			} else {
				require.Equal(t, res.losses, o.res.losses, "last-stage ranks agree on the loss")
			}
		}
	}
	res.norms = outs[0].res.norms
	for _, o := range outs {
		require.Equal(t, res.norms, o.res.norms, "every rank reports the same grad norm")
	}
	// Collect final weights: for each param, the TP shards of expert-DP rank 0 (DP rank 0
	// without expert parallelism; with it, the DP ranks holding each set of experts).
	res.weights = map[string][]float32{}
	shards := map[string][][]float32{}
	meta := map[string]*layers.Param{}
	for r, o := range outs {
		dp := 0
		if world > 1 {
			c, _ := comm.RankCoordinates(r, comm.ParallelConfig{TP: l.tp, PP: l.pp, CP: max(l.cp, 1), EP: max(l.ep, 1), Order: comm.DefaultOrder}, world)
			dp = c.ExpertDP
		}
		if dp != 0 {
			continue
		}
		for _, p := range modelParams(o.models) {
			if p.Shared {
				continue
			}
			for i, q := range p.Logical() { // a GroupedMLP weight's experts each
				if shards[q.InitKey] == nil {
					shards[q.InitKey] = make([][]float32, l.tp)
				}
				if p.Experts != nil {
					shards[q.InitKey][o.tpr] = p.ExpertShard(p.ExpertBlock(p.Data, i).ToF32(), i)
				} else {
					shards[q.InitKey][o.tpr] = p.Data.ToF32()
				}
				meta[q.InitKey] = q
			}
		}
	}
	for k, sh := range shards {
		p := meta[k]
		res.weights[k] = layers.Unshard(sh, p.FullShape, p.PartitionDim, p.GLU)
	}
	return res
}

func relDiff(a, b float64) float64 {
	if a == b {
		return 0
	}
	return math.Abs(a-b) / math.Max(math.Abs(b), 1e-12)
}

func compareRuns(t *testing.T, name string, ref, got runResult, tol float64) {
	t.Helper()
	require.Len(t, got.losses, len(ref.losses))
	for i := range ref.losses {
		require.LessOrEqual(t, relDiff(got.losses[i], ref.losses[i]), tol, "%s: iteration %d lm loss %v vs %v", name, i, got.losses[i], ref.losses[i])
		require.LessOrEqual(t, relDiff(got.norms[i], ref.norms[i]), tol, "%s: iteration %d grad norm %v vs %v", name, i, got.norms[i], ref.norms[i])
	}
	if tol > 1e-5 {
		return // bf16 rounding of diverging weights: compare the curves only
	}
	require.Len(t, got.weights, len(ref.weights))
	for k, w := range ref.weights {
		g := got.weights[k]
		var num, den float64
		for i := range w {
			d := float64(g[i] - w[i])
			num += d * d
			den += float64(w[i]) * float64(w[i])
		}
		// 1e-3, not 1e-5: Adam turns round-off in directions whose exact gradient is zero
		// (the key bias: softmax is shift-invariant) into full-size ±lr steps.
		require.LessOrEqual(t, math.Sqrt(num), 1e-3*math.Sqrt(den)+1e-9, "%s: final weights of %s", name, k)
	}
}

func equivalenceModels() map[string]layers.Config {
	llama, _ := layers.Preset("tiny-llama")
	llama.NumLayers, llama.GroupQueryAttention, llama.NumQueryGroups = 4, false, 4
	gpt2, _ := layers.Preset("tiny-gpt2")
	gpt2.NumLayers = 4
	for _, c := range []*layers.Config{&llama, &gpt2} {
		c.MakeVocabSizeDivisibleBy = 1
	}
	return map[string]layers.Config{"llama": llama, "gpt2": gpt2}
}

// TestParallelLayoutsMatchSingleProcess trains from the same weights and data in several
// layouts and requires Megatron's promise: the same per-iteration loss and grad norm as one
// process, and the same final weights. `make test-matrix` runs every combination.
func TestParallelLayoutsMatchSingleProcess(t *testing.T) {
	iters := 6
	full1 := layers.Recompute{Granularity: "full", Method: "uniform", NumLayers: 1}
	block1 := layers.Recompute{Granularity: "full", Method: "block", NumLayers: 1}
	layouts := []layout{
		{tp: 2, pp: 1, dp: 1, sp: true},
		{tp: 1, pp: 2, dp: 1, rc: full1},
		{tp: 1, pp: 1, dp: 2, dist: true, rc: block1},
		{tp: 2, pp: 2, dp: 2, sp: true, dist: true},
		{tp: 1, pp: 1, dp: 1, rc: layers.Recompute{Granularity: "full", Method: "uniform", NumLayers: 3}},
		{tp: 2, pp: 2, dp: 2, sp: true, dist: true, bf16: true},
		{tp: 1, pp: 2, dp: 1, vpp: 2},
		{tp: 1, pp: 2, dp: 2, bucket: 5000},
		{tp: 2, pp: 1, dp: 2, sp: true, dist: true, bucket: 3000, rc: full1},
		{tp: 2, pp: 2, dp: 1, sp: true, vpp: 2, rc: full1},
		{tp: 1, pp: 4, dp: 1, rendezvous: true},
		{tp: 1, pp: 2, dp: 1, vpp: 2, rendezvous: true},
	}
	if os.Getenv("GOMEGATRON_TEST_MATRIX") != "" {
		iters = 20
		layouts = nil
		for _, tp := range []int{1, 2, 4} {
			for _, pp := range []int{1, 2, 4} {
				for _, dp := range []int{1, 2} {
					for _, sp := range []bool{false, true} {
						for _, dist := range []bool{false, true} {
							for _, rc := range []layers.Recompute{{}, {Granularity: "selective"}, full1} {
								if sp && tp == 1 || dist && dp == 1 {
									continue
								}
								layouts = append(layouts, layout{tp: tp, pp: pp, dp: dp, sp: sp, dist: dist, rc: rc})
							}
						}
					}
				}
			}
		}
	}
	models := equivalenceModels()
	if os.Getenv("GOMEGATRON_TEST_MATRIX") != "" {
		// The mixture-of-experts Llama in every layout, and with expert parallelism; Qwen3.
		moe := models["llama"]
		moe.NumExperts, moe.MoERouterTopK, moe.MoEAuxLossCoeff, moe.MoEZLossCoeff, moe.FFNHiddenSize = 4, 2, 0.01, 0.001, 96
		models["moe"] = moe
		// Qwen3's head norms (weights whole on every TP rank, grads summed over TP).
		qwen3 := models["llama"]
		qwen3.QKLayernorm = true
		models["qwen3"] = qwen3
		// Qwen2-MoE's router and gated shared experts, a dense first layer (DeepSeek-MoE's
		// shape) and ChatGLM's interleaved half RoPE.
		q2 := moe
		q2.MoERouterPreSoftmax, q2.MoESharedExpertIntermediateSize, q2.MoESharedExpertGate, q2.AddQKVBias = true, 64, true, true
		q2.MoELayerFreq, q2.FFNHiddenSize, q2.MoEFFNHiddenSize, q2.RotaryInterleaved, q2.RotaryPercent = "([0]+[1]*3)", 64, 96, true, 0.5
		models["qwen2moe-mixed"] = q2
		models["deepseek-v2"] = deepseekV2Model() // multi-latent attention over MoE layers
	}
	for name, cfg := range models {
		ref := runLayout(t, cfg, layout{tp: 1, pp: 1, dp: 1}, iters)
		refBF16 := runLayout(t, cfg, layout{tp: 1, pp: 1, dp: 1, bf16: true}, iters)
		require.Less(t, ref.losses[iters-1], ref.losses[0], "%s: the reference run learns", name)
		ls := layouts
		if cfg.NumExperts > 0 {
			for _, l := range layouts {
				if l.dp == 2 && !l.bf16 {
					l.ep = 2
					ls = append(ls, l)
				}
			}
		}
		for _, l := range ls {
			t.Run(name+"/"+l.String(), func(t *testing.T) {
				if l.bf16 {
					compareRuns(t, name+" "+l.String(), refBF16, runLayout(t, cfg, l, iters), 1e-2)
					return
				}
				compareRuns(t, name+" "+l.String(), ref, runLayout(t, cfg, l, iters), 1e-5)
			})
		}
	}
}

func modelParams(ms []*layers.GPTModel) layers.Params {
	var ps layers.Params
	for _, m := range ms {
		ps = append(ps, m.Params...)
	}
	return ps
}

// TestBF16ActivationLayouts trains with BF16 activations (the GPU's --bf16): stage
// inputs, outputs and gradients cross pipeline stages in BF16 unchanged, so pipeline and
// data-parallel layouts (interleaved, recomputed, distributed optimizer) match the single
// process as closely as F32 layouts do; tensor parallelism sums partial BF16 products in
// another order, so it matches within bf16 tolerance; and the run learns.
func TestBF16ActivationLayouts(t *testing.T) {
	cfg := equivalenceModels()["llama"]
	const iters = 4
	ref := runLayout(t, cfg, layout{tp: 1, pp: 1, dp: 1, bf16: true, act16: true}, iters)
	require.Less(t, ref.losses[iters-1], ref.losses[0], "the run learns")
	full1 := layers.Recompute{Granularity: "full", Method: "uniform", NumLayers: 1}
	for _, l := range []layout{
		{tp: 1, pp: 2, dp: 1, rc: full1},
		{tp: 1, pp: 2, dp: 2, dist: true, vpp: 2},
		{tp: 2, pp: 1, dp: 1, sp: true},
		{tp: 2, pp: 2, dp: 1},
	} {
		l.bf16, l.act16 = true, true
		t.Run(l.String(), func(t *testing.T) {
			tol := 1e-5
			if l.tp > 1 {
				tol = 1e-2
			}
			compareRuns(t, l.String(), ref, runLayout(t, cfg, l, iters), tol)
		})
	}
}

// TestDropoutLayouts: with --attention-dropout and --hidden-dropout every tensor- and
// pipeline-parallel layout (sequence parallelism, recompute and the interleaved schedule
// included) draws the single process's masks — heads are numbered globally, each layer
// has its own stream, sequence-parallel rows keep their global counters — so losses, grad
// norms and final weights match it; and each dropout is on (it changes the losses).
func TestDropoutLayouts(t *testing.T) {
	cfg := equivalenceModels()["llama"]
	cfg.AttentionDropout, cfg.HiddenDropout = 0.2, 0.2
	const iters = 4
	ref := runLayout(t, cfg, layout{tp: 1, pp: 1, dp: 1}, iters)
	for _, off := range []func(*layers.Config){
		func(c *layers.Config) { c.AttentionDropout = 0 },
		func(c *layers.Config) { c.HiddenDropout = 0 },
	} {
		plain := cfg
		off(&plain)
		require.NotEqual(t, runLayout(t, plain, layout{tp: 1, pp: 1, dp: 1}, iters).losses, ref.losses, "each dropout changes the losses")
	}
	full1 := layers.Recompute{Granularity: "full", Method: "uniform", NumLayers: 1}
	for _, l := range []layout{
		{tp: 2, pp: 1, dp: 1, sp: true},
		{tp: 1, pp: 2, dp: 1, rc: full1},
		{tp: 2, pp: 2, dp: 1},
		{tp: 1, pp: 2, dp: 1, vpp: 2},
	} {
		t.Run(l.String(), func(t *testing.T) {
			compareRuns(t, l.String(), ref, runLayout(t, cfg, l, iters), 1e-5)
		})
	}
}

// TestMoELayouts trains a mixture-of-experts Llama (4 experts, top-2, with the aux and z
// losses) in tensor-, sequence-, pipeline- and data-parallel layouts: routing sees every
// token of the microbatch and the auxiliary losses' statistics are the microbatch's
// whatever the layout, so each matches the single process as the dense model does; and
// the run learns, with the router weights trained.
func TestMoELayouts(t *testing.T) {
	cfg := equivalenceModels()["llama"]
	cfg.NumExperts, cfg.MoERouterTopK, cfg.MoEAuxLossCoeff, cfg.MoEZLossCoeff = 4, 2, 0.01, 0.001
	cfg.FFNHiddenSize = 96
	const iters = 5
	ref := runLayout(t, cfg, layout{tp: 1, pp: 1, dp: 1}, iters)
	require.Less(t, ref.losses[iters-1], ref.losses[0], "the run learns")
	require.Contains(t, ref.weights, "decoder.layers.3.mlp.experts.local_experts.3.linear_fc2.weight")
	noAux := cfg
	noAux.MoEAuxLossCoeff, noAux.MoEZLossCoeff = 0, 0
	require.NotEqual(t, runLayout(t, noAux, layout{tp: 1, pp: 1, dp: 1}, iters).norms, ref.norms, "the auxiliary losses count")
	full1 := layers.Recompute{Granularity: "full", Method: "uniform", NumLayers: 1}
	for _, l := range []layout{
		{tp: 2, pp: 1, dp: 1, sp: true},
		{tp: 2, pp: 1, dp: 1},
		{tp: 1, pp: 2, dp: 2, dist: true, rc: full1},
		{tp: 2, pp: 2, dp: 1, sp: true, vpp: 2},
		{tp: 1, pp: 1, dp: 2, ep: 2},
		{tp: 1, pp: 1, dp: 4, ep: 2, dist: true},
		{tp: 2, pp: 1, dp: 2, ep: 2, sp: true, dist: true, rc: full1},
		{tp: 1, pp: 2, dp: 4, ep: 4},
		{tp: 1, pp: 2, dp: 2, ep: 2, vpp: 2, dist: true},
		{tp: 1, pp: 2, dp: 4, ep: 2, bucket: 4000},
		{tp: 2, pp: 1, dp: 2, ep: 2, sp: true, dist: true, bucket: 3000},
		{tp: 1, pp: 2, dp: 2, ep: 2, vpp: 2, dist: true, bucket: 3000},
		{tp: 1, pp: 1, dp: 1, cp: 2},
		{tp: 2, pp: 1, dp: 2, cp: 2, sp: true, dist: true},
	} {
		t.Run(l.String(), func(t *testing.T) {
			compareRuns(t, l.String(), ref, runLayout(t, cfg, l, iters), 1e-5)
		})
	}
	// GroupedMLP experts (--moe-grouped-gemm) are the same maps in Megatron's packed
	// weights: from the same seed they give the SequentialMLP run, in every layout.
	grouped := cfg
	grouped.MoEGroupedGemm = true
	for _, l := range []layout{
		{tp: 1, pp: 1, dp: 1},
		{tp: 2, pp: 1, dp: 2, ep: 2, sp: true, dist: true, rc: full1},
		{tp: 1, pp: 2, dp: 2, ep: 2, vpp: 2, dist: true, bucket: 3000},
	} {
		t.Run("grouped/"+l.String(), func(t *testing.T) {
			compareRuns(t, "grouped "+l.String(), ref, runLayout(t, grouped, l, iters), 1e-5)
		})
	}
	// Sinkhorn routing balances each microbatch's tokens: every layout sees them all.
	sk := cfg
	sk.MoERouterLoadBalancingType, sk.MoEAuxLossCoeff = "sinkhorn", 0
	skRef := runLayout(t, sk, layout{tp: 1, pp: 1, dp: 1}, iters)
	require.NotEqual(t, ref.losses, skRef.losses, "the routing changes")
	for _, l := range []layout{{tp: 2, pp: 1, dp: 1, sp: true}, {tp: 1, pp: 2, dp: 4, ep: 2, dist: true}} {
		t.Run("sinkhorn/"+l.String(), func(t *testing.T) {
			compareRuns(t, "sinkhorn "+l.String(), skRef, runLayout(t, sk, l, iters), 1e-5)
		})
	}
	// Qwen1.5/Qwen2-MoE: pre-softmax scores and gated shared experts (a dense MLP split over
	// TP, replicated over EP; the gate's weight whole on every rank, its grads from this
	// rank's rows under SP).
	qm := cfg
	qm.MoERouterPreSoftmax, qm.MoESharedExpertIntermediateSize, qm.MoESharedExpertGate, qm.AddQKVBias = true, 64, true, true
	qmRef := runLayout(t, qm, layout{tp: 1, pp: 1, dp: 1}, iters)
	require.Less(t, qmRef.losses[iters-1], qmRef.losses[0], "the shared-expert run learns")
	require.Contains(t, qmRef.weights, "decoder.layers.3.mlp.shared_experts.gate_weight")
	for _, l := range []layout{
		{tp: 2, pp: 1, dp: 1},
		{tp: 2, pp: 1, dp: 1, sp: true},
		{tp: 2, pp: 1, dp: 2, ep: 2, sp: true, dist: true, rc: full1},
		{tp: 1, pp: 2, dp: 2, ep: 2, vpp: 2, dist: true},
		{tp: 1, pp: 1, dp: 1, cp: 2},
	} {
		t.Run("qwen2-moe/"+l.String(), func(t *testing.T) {
			compareRuns(t, "qwen2-moe "+l.String(), qmRef, runLayout(t, qm, l, iters), 1e-5)
		})
	}
	// --moe-layer-freq: dense layers (their own FFN size) among MoE layers (the experts'
	// --moe-ffn-hidden-size); with PP 2 one stage holds no experts at all.
	for _, freq := range []string{"2", "([0]*2+[1]*2)"} {
		mixed := cfg
		mixed.MoELayerFreq, mixed.FFNHiddenSize, mixed.MoEFFNHiddenSize = freq, 64, 96
		mixedRef := runLayout(t, mixed, layout{tp: 1, pp: 1, dp: 1}, iters)
		require.Less(t, mixedRef.losses[iters-1], mixedRef.losses[0], "the mixed run learns")
		for _, k := range []string{"decoder.layers.2.mlp.experts.local_experts.3.linear_fc2.weight", "decoder.layers.1.mlp.linear_fc1.weight"} {
			_, ok := mixedRef.weights[k]
			require.True(t, ok, "%s: %s", freq, k) // layer 2 has experts, layer 1 a dense MLP
		}
		for _, l := range []layout{
			{tp: 2, pp: 1, dp: 1, sp: true},
			{tp: 1, pp: 2, dp: 2, ep: 2, dist: true, rc: full1},
			{tp: 2, pp: 2, dp: 1, sp: true, vpp: 2},
			{tp: 1, pp: 1, dp: 2, ep: 2, bucket: 3000},
			{tp: 1, pp: 1, dp: 1, cp: 2},
		} {
			t.Run("mixed"+freq+"/"+l.String(), func(t *testing.T) {
				compareRuns(t, "mixed "+l.String(), mixedRef, runLayout(t, mixed, l, iters), 1e-5)
			})
		}
	}
	// DeepSeek-V3's router: sigmoid scores renormalised over the top k, scaled, chosen
	// within the best 2 of 4 groups, with the per-sequence aux loss.
	v3 := cfg
	v3.NumExperts, v3.MoERouterTopK, v3.MoERouterScoreFunction, v3.MoERouterTopKScaling = 8, 4, "sigmoid", 2.5
	v3.MoERouterNumGroups, v3.MoERouterGroupTopK, v3.MoERouterLoadBalancingType = 4, 2, "seq_aux_loss"
	// The expert bias, moved after every step by the stage's token counts (a large rate, so
	// that it changes the choices within 5 steps): every layout must count the same tokens.
	v3.MoERouterEnableExpertBias, v3.MoERouterBiasUpdateRate = true, 0.05
	v3Ref := runLayout(t, v3, layout{tp: 1, pp: 1, dp: 1}, iters)
	require.Less(t, v3Ref.losses[iters-1], v3Ref.losses[0], "the sigmoid-router run learns")
	bias := v3Ref.weights["decoder.layers.3.mlp.router.expert_bias"]
	require.Len(t, bias, 8)
	for _, b := range bias { // iters steps of ±rate (or 0) from 0
		n := math.Round(float64(b) / 0.05)
		require.InDelta(t, n*0.05, b, 1e-6)
		require.LessOrEqual(t, math.Abs(n), float64(iters))
	}
	require.NotEqual(t, make([]float32, 8), bias, "the bias moved")
	noBias := v3
	noBias.MoERouterEnableExpertBias = false
	require.NotEqual(t, v3Ref.losses, runLayout(t, noBias, layout{tp: 1, pp: 1, dp: 1}, iters).losses, "the bias changes the routing")
	for _, l := range []layout{
		{tp: 2, pp: 1, dp: 1, sp: true},
		{tp: 2, pp: 1, dp: 2, ep: 2, sp: true, dist: true, rc: full1},
		{tp: 1, pp: 2, dp: 2, ep: 2, vpp: 2, dist: true},
		{tp: 1, pp: 1, dp: 1, cp: 2},
	} {
		t.Run("v3-router/"+l.String(), func(t *testing.T) {
			compareRuns(t, "v3-router "+l.String(), v3Ref, runLayout(t, v3, l, iters), 1e-5)
		})
	}
	// Router jitter draws per (step, layer, token, expert), like dropout: the same masks
	// under TP, SP and PP (data parallelism numbers its microbatches per rank, as dropout).
	jit := cfg
	jit.MoEInputJitterEps = 0.3
	jitRef := runLayout(t, jit, layout{tp: 1, pp: 1, dp: 1}, iters)
	require.NotEqual(t, ref.losses, jitRef.losses, "the jitter changes the routing")
	for _, l := range []layout{{tp: 2, pp: 1, dp: 1, sp: true}, {tp: 1, pp: 2, dp: 1, rc: full1}} {
		t.Run("jitter/"+l.String(), func(t *testing.T) {
			compareRuns(t, "jitter "+l.String(), jitRef, runLayout(t, jit, l, iters), 1e-5)
		})
	}
}

// TestContextParallelLayouts trains with context parallelism (each rank 2 of 2·CP chunks of
// every sequence, keys and values all-gathered): every layout, with TP, SP, PP, DP, the
// distributed optimizer and recompute beside it, gives the single process's losses, grad
// norms and weights; for Llama (RoPE, GQA) and GPT-2 (learned positions).
func TestContextParallelLayouts(t *testing.T) {
	const iters = 4
	full1 := layers.Recompute{Granularity: "full", Method: "uniform", NumLayers: 1}
	for name, cfg := range equivalenceModels() {
		cfg.AttentionDropout = 0
		ref := runLayout(t, cfg, layout{tp: 1, pp: 1, dp: 1}, iters)
		for _, l := range []layout{
			{tp: 1, pp: 1, dp: 1, cp: 2},
			{tp: 1, pp: 1, dp: 1, cp: 4},
			{tp: 2, pp: 1, dp: 1, cp: 2, sp: true},
			{tp: 1, pp: 2, dp: 2, cp: 2, dist: true, rc: full1},
			{tp: 1, pp: 2, dp: 1, cp: 2, vpp: 2},
		} {
			t.Run(name+"/"+l.String(), func(t *testing.T) {
				compareRuns(t, name+" "+l.String(), ref, runLayout(t, cfg, l, iters), 1e-5)
			})
		}
	}
	// Dropout: each chunk's queries draw the whole sequence's attention masks, each run of
	// a rank's rows the whole sequence's hidden-dropout masks (a shard straddling both
	// chunks: layers.TestDropoutSegments).
	cfg := equivalenceModels()["llama"]
	cfg.AttentionDropout, cfg.HiddenDropout = 0.2, 0.2
	ref := runLayout(t, cfg, layout{tp: 1, pp: 1, dp: 1}, iters)
	for _, l := range []layout{{tp: 1, pp: 1, dp: 1, cp: 2}, {tp: 2, pp: 1, dp: 1, cp: 2, sp: true},
		{tp: 4, pp: 1, dp: 1, cp: 2, sp: true}, {tp: 1, pp: 2, dp: 1, cp: 2}} {
		t.Run("dropout/"+l.String(), func(t *testing.T) {
			compareRuns(t, l.String(), ref, runLayout(t, cfg, l, iters), 1e-5)
		})
	}
}

// TestNormAndActivationVariantsLayouts: --squared-relu and --apply-layernorm-1p (GPT-2's
// LayerNorm model) train the same at TP 2 with sequence parallelism and with PP 2 as on
// one process.
func TestNormAndActivationVariantsLayouts(t *testing.T) {
	cfg := equivalenceModels()["gpt2"]
	cfg.SquaredReLU, cfg.ApplyLayernorm1p = true, true
	const iters = 4
	ref := runLayout(t, cfg, layout{tp: 1, pp: 1, dp: 1}, iters)
	require.Less(t, ref.losses[iters-1], ref.losses[0], "the run learns")
	for _, l := range []layout{{tp: 2, pp: 1, dp: 1, sp: true}, {tp: 1, pp: 2, dp: 2, dist: true}} {
		t.Run(l.String(), func(t *testing.T) {
			compareRuns(t, l.String(), ref, runLayout(t, cfg, l, iters), 1e-5)
		})
	}
}

// TestPerTokenLossLayouts (--calculate-per-token-loss): with microbatches of equal token
// counts the per-token gradient is the default one, in every layout (so the 1/tokens and
// the data-parallel sum are right); with uneven counts it differs, and every layout —
// TP, SP, PP, VPP, DP with the distributed optimizer and overlapped reduction, CP, and MoE
// with EP and CP — gives the single process's losses, grad norms and weights.
func TestPerTokenLossLayouts(t *testing.T) {
	const iters = 4
	full1 := layers.Recompute{Granularity: "full", Method: "uniform", NumLayers: 1}
	dense := equivalenceModels()["llama"]
	moe := dense
	moe.NumExperts, moe.MoERouterTopK, moe.MoEAuxLossCoeff, moe.MoEZLossCoeff, moe.FFNHiddenSize = 4, 2, 0.01, 0.001, 96
	layouts := []layout{
		{tp: 2, pp: 1, dp: 1, sp: true},
		{tp: 1, pp: 2, dp: 2, dist: true, rc: full1},
		{tp: 1, pp: 2, dp: 1, vpp: 2},
		{tp: 1, pp: 1, dp: 4, bucket: 3000},
		{tp: 1, pp: 1, dp: 1, cp: 2},
		{tp: 1, pp: 1, dp: 2, cp: 2, dist: true},
	}
	for name, cfg := range map[string]layers.Config{"llama": dense, "moe": moe} {
		// The auxiliary losses weigh 1/tokens per token instead of 1/microbatches (as in
		// Megatron), so the equal-count check leaves them out.
		noAux := cfg
		noAux.MoEAuxLossCoeff, noAux.MoEZLossCoeff = 0, 0
		even := runLayout(t, noAux, layout{tp: 1, pp: 1, dp: 1}, iters)
		compareRuns(t, name+" per-token with equal token counts", even, runLayout(t, noAux, layout{tp: 1, pp: 1, dp: 1, perToken: true}, iters), 1e-5)
		evenPer := runLayout(t, cfg, layout{tp: 1, pp: 1, dp: 1, perToken: true}, iters)
		ref := runLayout(t, cfg, layout{tp: 1, pp: 1, dp: 1, perToken: true, uneven: true}, iters)
		require.NotEqual(t, runLayout(t, cfg, layout{tp: 1, pp: 1, dp: 1, uneven: true}, iters).norms, ref.norms, "%s: uneven counts change the gradient", name)
		ls := layouts
		if cfg.NumExperts > 0 {
			ls = append(ls[:len(ls):len(ls)], layout{tp: 2, pp: 1, dp: 2, ep: 2, sp: true, dist: true}, layout{tp: 1, pp: 2, dp: 2, ep: 2, vpp: 2})
		}
		for _, l := range ls {
			l.perToken = true
			t.Run(name+"/"+l.String(), func(t *testing.T) {
				compareRuns(t, name+" "+l.String(), evenPer, runLayout(t, cfg, l, iters), 1e-5)
				l.uneven = true
				compareRuns(t, name+" "+l.String(), ref, runLayout(t, cfg, l, iters), 1e-5)
			})
		}
	}
}

// TestMLALayouts trains a DeepSeek-V2-shaped model: multi-latent attention (a query latent,
// latent norms, YaRN, values narrower than the heads) over a dense first layer and MoE
// layers with pre-softmax routing and shared experts. Every tensor-, sequence-, pipeline-,
// data-, expert- and context-parallel layout, with recompute and the distributed optimizer
// beside them, gives the single process's losses, grad norms and weights; and the run learns.
func TestMLALayouts(t *testing.T) {
	cfg := deepseekV2Model()
	const iters = 5
	ref := runLayout(t, cfg, layout{tp: 1, pp: 1, dp: 1}, iters)
	require.Less(t, ref.losses[iters-1], ref.losses[0], "the run learns")
	require.Contains(t, ref.weights, "decoder.layers.3.self_attention.linear_kv_down_proj.weight")
	perBatch := cfg
	perBatch.MoERouterLoadBalancingType = "aux_loss"
	require.NotEqual(t, ref.norms, runLayout(t, perBatch, layout{tp: 1, pp: 1, dp: 1}, iters).norms, "the per-sequence aux loss differs")
	full1 := layers.Recompute{Granularity: "full", Method: "uniform", NumLayers: 1}
	for _, l := range []layout{
		{tp: 2, pp: 1, dp: 1},
		{tp: 2, pp: 1, dp: 1, sp: true},
		{tp: 4, pp: 1, dp: 1, sp: true},
		{tp: 1, pp: 2, dp: 2, dist: true, rc: full1},
		{tp: 2, pp: 2, dp: 1, sp: true, vpp: 2},
		{tp: 2, pp: 1, dp: 2, ep: 2, sp: true, dist: true, rc: full1},
		{tp: 1, pp: 1, dp: 1, cp: 2},
		{tp: 2, pp: 1, dp: 1, cp: 2, sp: true},
	} {
		t.Run(l.String(), func(t *testing.T) {
			compareRuns(t, l.String(), ref, runLayout(t, cfg, l, iters), 1e-5)
		})
	}
	// DeepSeek-V2-Lite's direct query projection with plain RoPE and no latent norms.
	lite := cfg
	lite.QLoRARank, lite.QKLayernorm, lite.RopeType, lite.VHeadDim = 0, false, "rope", 12
	liteRef := runLayout(t, lite, layout{tp: 1, pp: 1, dp: 1}, iters)
	require.NotEqual(t, ref.losses, liteRef.losses)
	for _, l := range []layout{{tp: 2, pp: 2, dp: 1, sp: true}, {tp: 1, pp: 1, dp: 2, cp: 2, dist: true}} {
		t.Run("lite/"+l.String(), func(t *testing.T) {
			compareRuns(t, "lite "+l.String(), liteRef, runLayout(t, lite, l, iters), 1e-5)
		})
	}
}

// deepseekV2Model is the 4-layer test Llama made DeepSeek-V2-shaped: multi-latent attention
// (a query latent, latent norms, YaRN, values narrower than the heads), a dense first layer
// and MoE layers with pre-softmax routing, the per-sequence aux loss and shared experts.
func deepseekV2Model() layers.Config {
	cfg := equivalenceModels()["llama"]
	cfg.MultiLatentAttention, cfg.QKLayernorm, cfg.QLoRARank, cfg.KVLoRARank = true, true, 16, 12
	cfg.QKHeadDim, cfg.QKPosEmbHeadDim, cfg.VHeadDim = 8, 4, 6
	cfg.YarnScalingFactor, cfg.YarnOrigMaxPositions, cfg.YarnMScale, cfg.YarnMScaleAllDim = 4, 8, 0.9, 0.6
	cfg.NumExperts, cfg.MoERouterTopK, cfg.MoEAuxLossCoeff, cfg.MoERouterPreSoftmax = 4, 2, 0.05, true
	cfg.MoELayerFreq, cfg.FFNHiddenSize, cfg.MoEFFNHiddenSize, cfg.MoESharedExpertIntermediateSize = "([0]+[1]*3)", 64, 32, 64
	cfg.MoERouterLoadBalancingType = "seq_aux_loss"
	return cfg
}
