package train

import (
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/gomegatron/gomegatron/ckpt/hf"
	"github.com/gomegatron/gomegatron/ckpt/megatron"
	"github.com/gomegatron/gomegatron/ckpt/torchpickle"
	"github.com/gomegatron/gomegatron/comm"
	"github.com/gomegatron/gomegatron/kernels"
	"github.com/gomegatron/gomegatron/layers"
	"github.com/gomegatron/gomegatron/optim"
	"github.com/gomegatron/gomegatron/tensor"
)

// progress is what a checkpoint records about the run besides weights and optimizer.
type progress struct {
	Iteration                      int
	ConsumedTrain, ConsumedValid   int64
	SchedSteps                     int64
	LossScale                      float64
	ScalerGrowth, ScalerHysteresis int
	FLOPs                          float64 // num_floating_point_operations_so_far
}

// checkpointer saves and loads Megatron torch-format checkpoints for one rank.
type checkpointer struct {
	a      *Args
	world  comm.Comm
	ps     *comm.ParallelState
	model  *layers.GPTModel   // the first chunk
	chunks []*layers.GPTModel // every model chunk of this stage (virtual pipeline stages)
	opt    *optim.Adam
	sched  LRSchedule
	be     kernels.Backend // where the model lives (nil: the host)
	// notes are Megatron's " > using checkpoint value …" lines of the last load.
	notes []string
	// hfModelType is the Hugging Face family the loaded checkpoint came from (its args'
	// hf_model_type, or the --load folder's), written again on save so that converting
	// back gives that family (InternLM2 and Llama, or Qwen and Qwen2, share layers).
	hfModelType string
}

// params lists every chunk's parameters in the optimizer's order.
func (c *checkpointer) params() layers.Params {
	var ps layers.Params
	for _, m := range c.allChunks() {
		ps = append(ps, m.Params...)
	}
	return ps
}

// trainable is params without buffers: the optimizer's parameters, in its order.
func (c *checkpointer) trainable() layers.Params { return c.params().Trainable() }

func (c *checkpointer) allChunks() []*layers.GPTModel {
	if len(c.chunks) == 0 {
		return []*layers.GPTModel{c.model}
	}
	return c.chunks
}

// fp8Key is where chunk v's FP8 scaling state is saved (gomegatron's own key; Transformer
// Engine keeps it in each module's _extra_state).
func fp8Key(v, n int) string {
	if n == 1 {
		return "gomegatron_fp8_meta"
	}
	return fmt.Sprintf("gomegatron_fp8_meta%d", v)
}

// host returns a host copy of t, downloading it when it lives on the backend's device.
func (c *checkpointer) host(t *tensor.Tensor) *tensor.Tensor {
	if c.be == nil || t.Device.Type == tensor.CPU {
		return t.Clone()
	}
	h := tensor.New(t.DType(), t.Shape()...)
	c.be.Download(h, t)
	return h
}

// set writes float32 values into dst, a host or device tensor (rounded to nearest even
// into 16-bit weights).
func (c *checkpointer) set(dst *tensor.Tensor, vals []float32) {
	vals = vals[:dst.Numel()]
	if dst.DType() == tensor.F32 && (c.be == nil || dst.Device.Type == tensor.CPU) {
		copy(dst.F32(), vals)
		return
	}
	h := tensor.FromF32Values(dst.DType(), vals, dst.Shape()...)
	if c.be == nil || dst.Device.Type == tensor.CPU {
		copy(dst.Data, h.Data)
		return
	}
	c.be.Upload(dst, h)
}

// hostAs is host converted to dt (exact for model weights, which hold dt's values): model
// weights are saved in the run's dtype, as Megatron's bf16/fp16 modules hold them, whatever
// dtype this backend keeps them in.
func (c *checkpointer) hostAs(t *tensor.Tensor, dt tensor.DType) *tensor.Tensor {
	h := c.host(t)
	if h.DType() == dt {
		return h
	}
	return tensor.FromF32Values(dt, h.ToF32(), h.Shape()...)
}

func (c *checkpointer) dtype() tensor.DType {
	switch {
	case c.a.BF16:
		return tensor.BF16
	case c.a.FP16:
		return tensor.F16
	}
	return tensor.F32
}

// save writes the checkpoint of iteration it under --save: the DP-rank-0 rank of each
// (TP, PP) shard writes model_optim_rng.pt (and, with the distributed optimizer,
// distrib_optim.pt gathered over DP), each file atomically; after a barrier global rank 0
// writes latest_checkpointed_iteration.txt, so an interrupted save leaves the previous
// checkpoint current.
func (c *checkpointer) save(p progress) error {
	if c.a.CkptFormat == "torch_dist" {
		return c.saveDist(p)
	}
	loc := c.expertShards(megatron.Location{Root: c.a.Save, Iteration: p.Iteration})
	tp, pp := c.ps.Coords.TP, c.ps.Coords.PP
	var dist any
	if c.opt.Distributed && !c.a.NoSaveOptim {
		var err error
		if dist, err = c.gatherDistribOptim(); err != nil {
			return err
		}
	}
	if c.ps.Coords.ExpertDP == 0 && c.ps.Coords.CP == 0 { // DP rank 0, or each expert-parallel rank's first
		state, err := c.stateDict(p)
		if err != nil {
			return err
		}
		if err := megatron.SaveShard(loc, tp, pp, c.ps.PPSize, state); err != nil {
			return err
		}
		if dist != nil {
			if err := megatron.SaveDistribOptim(loc, tp, pp, c.ps.PPSize, dist); err != nil {
				return err
			}
		}
	}
	if err := c.world.Barrier(); err != nil {
		return fmt.Errorf("checkpoint barrier: %w", err)
	}
	if c.world.Rank() == 0 {
		return megatron.WriteTracker(loc)
	}
	return nil
}

// saveDist writes the checkpoint of iteration it in the torch_dist format: the rank that
// holds each model shard's first replica (DP rank 0; TP rank 0 for replicated parameters,
// expert-parallel rank 0 for dense ones) writes its chunks, then global rank 0 writes the
// index, common.pt (args, iteration, scheduler, FLOPs) and, last, the tracker file.
func (c *checkpointer) saveDist(p progress) error {
	loc := megatron.Location{Root: c.a.Save, Iteration: p.Iteration}
	dir := loc.Dir()
	if c.world.Rank() == 0 {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("--save: %w", err)
		}
		if err := megatron.ClearDist(dir); err != nil { // a save of this iteration before, maybe at another layout
			return fmt.Errorf("--save: %w", err)
		}
	}
	if err := c.world.Barrier(); err != nil {
		return fmt.Errorf("checkpoint barrier: %w", err)
	}
	tp := c.ps.Coords.TP
	sh := megatron.DistShard{Cfg: c.model.Cfg, Format: megatron.MCore, TPRank: tp, TPSize: c.ps.TPSize}
	if !c.a.NoSaveOptim {
		sh.States = c.distStates()
	}
	if c.writesWeights() {
		for _, m := range c.allChunks() {
			for _, prm := range m.Params {
				if !megatron.DistWrites(prm, tp, c.ps.Coords.EP) {
					continue // another rank writes this replica
				}
				dt := c.dtype()
				if prm.Buffer {
					dt = tensor.F32
				}
				sh.Params = append(sh.Params, megatron.DistParam{Param: prm, DType: dt,
					Local: func() ([]float32, error) { return c.host(prm.Data).ToF32(), nil }})
			}
		}
	}
	if len(sh.Params)+len(sh.States) > 0 {
		if err := megatron.WriteDistShard(dir, c.world.Rank(), sh); err != nil {
			return err
		}
	}
	if err := c.world.Barrier(); err != nil {
		return fmt.Errorf("checkpoint barrier: %w", err)
	}
	if c.world.Rank() != 0 {
		return nil
	}
	common := c.unshardedState(p, nil)
	common.Set("num_floating_point_operations_so_far", p.FLOPs)
	// Megatron-Core's _build_sharded_state_dict_metadata: its loader builds the optimizer's
	// sharded state dict (and so the keys it reads) from this.
	meta := torchpickle.NewDict(false)
	if c.a.UseDistributedOptimizer {
		meta.Set("distrib_optim_sharding_type", "fully_sharded_model_space")
	}
	common.Set("content_metadata", meta)
	if !c.a.NoSaveOptim {
		common.Set("optimizer", c.distOptimizerCommon(p))
	}
	if err := megatron.FinishDist(dir, common); err != nil {
		return err
	}
	return megatron.WriteTracker(loc)
}

// writesWeights reports whether this rank stores its model shard's weights in torch_dist:
// data-parallel rank 0 (each expert-parallel rank's first), context-parallel rank 0.
func (c *checkpointer) writesWeights() bool { return c.ps.Coords.ExpertDP == 0 && c.ps.Coords.CP == 0 }

// distStates lists the optimizer state this rank stores in torch_dist, read from the packed
// state when written: the distributed optimizer's flat ranges of each parameter this rank
// owns, or, not distributed, the weights' writer's whole states; TP rank 0's for
// parameters TP replicates, none of the tied output layer's copy.
func (c *checkpointer) distStates() []megatron.DistState {
	s := c.opt.State()
	offsets := c.opt.Buffers().Layout.Offsets
	chains := 1
	if c.hasExperts() {
		chains = 2
	}
	var out []megatron.DistState
	for i, prm := range c.trainable() {
		if prm.Shared || (prm.PartitionDim < 0 && prm.Experts == nil && c.ps.Coords.TP != 0) {
			continue
		}
		chain := megatron.Chain(0, chains)
		if prm.Expert {
			chain = megatron.Chain(1, chains)
		}
		off, n := offsets[i], prm.Numel()
		var own [][2]int
		if c.a.UseDistributedOptimizer { // its format even at DP 1, where one rank owns all
			for _, o := range s.Own {
				if lo, hi := max(o.Lo, off), min(o.Hi, off+n); lo < hi {
					own = append(own, [2]int{lo - off, hi - off})
				}
			}
			if len(own) == 0 {
				continue
			}
		} else if !c.writesWeights() || !megatron.DistWrites(prm, c.ps.Coords.TP, c.ps.Coords.EP) {
			continue // every data-parallel rank holds it; the weights' writer stores it
		}
		states := []struct {
			name   string
			packed *tensor.Tensor
		}{{"exp_avg", s.M}, {"exp_avg_sq", s.V}, {"fp32_param", s.Main}}
		if !c.a.UseDistributedOptimizer && s.Main == nil { // Megatron's FP32Optimizer keeps no main copy
			states = states[:2]
		}
		for _, st := range states {
			out = append(out, megatron.DistState{Param: prm, Chain: chain, Name: st.name, Own: own, Local: func() ([]float32, error) {
				if st.packed == nil { // fp32 training: the weights are the main copy
					return c.host(prm.Data).ToF32(), nil
				}
				if own == nil {
					lo := s.Packed(off)
					return c.host(st.packed.Slice(lo, lo+n)).ToF32(), nil
				}
				vals := make([]float32, n)
				for _, o := range own {
					lo := s.Packed(off + o[0])
					copy(vals[o[0]:o[1]], c.host(st.packed.Slice(lo, lo+o[1]-o[0])).ToF32())
				}
				return vals, nil
			}})
		}
	}
	return out
}

// distOptimizerCommon is the optimizer's unsharded state in a torch_dist checkpoint, as
// Megatron-Core's optimizers leave it beside the sharded tensors: each of optimizerParts
// with the sharding type (distributed) or the common step (not), a ChainedOptimizer's as
// {0: dense, 1: experts}.
func (c *checkpointer) distOptimizerCommon(p progress) *torchpickle.Dict {
	parts := c.optimizerParts(p, c.a.UseDistributedOptimizer)
	for _, o := range parts {
		if c.a.UseDistributedOptimizer {
			o.Set("param_state_sharding_type", "fully_sharded_model_space")
			continue
		}
		// The non-distributed optimizers keep the step per parameter; their sharded state
		// dict keeps one, state.common_step, and none in the groups.
		inner, _ := dictGet(o, "optimizer")
		st := torchpickle.NewDict(false)
		st.Set("common_step", tensor.FromF32Values(tensor.F32, []float32{float32(c.opt.State().Step)}))
		inner.Set("state", st)
	}
	if len(parts) == 1 {
		return parts[0]
	}
	chained := torchpickle.NewDict(false)
	for i, o := range parts {
		chained.Set(int64(i), o)
	}
	return chained
}

// hasExperts reports whether this rank trains expert-parallel parameters, for which
// Megatron-Core builds a second optimizer (a ChainedOptimizer of dense and experts).
func (c *checkpointer) hasExperts() bool {
	for _, prm := range c.trainable() {
		if prm.Expert {
			return true
		}
	}
	return false
}

// optimizerParts is the optimizer's state dict without per-parameter tensors, one per
// optimizer Megatron-Core builds on this rank (paramGroups): the param groups and the grad
// scaler; step: with the Adam step in each group (the distributed optimizer's form).
func (c *checkpointer) optimizerParts(p progress, step bool) []*torchpickle.Dict {
	var parts []*torchpickle.Dict
	for _, groups := range c.paramGroups() {
		o := torchpickle.NewDict(false)
		o.Set("optimizer", c.groupsDict(p, groups, false, step))
		if gs := c.gradScalerDict(p); gs != nil {
			o.Set("grad_scaler", gs)
		}
		parts = append(parts, o)
	}
	return parts
}

// paramGroup is one of Megatron's param groups (get_param_groups): its key and its
// parameters (indices into trainable()).
type paramGroup struct {
	wdMult            float64
	expert, decoupled bool
	params            []int
}

// paramGroups lists the param groups of each optimizer Megatron-Core builds on this rank:
// the dense parameters', then the experts' if it has any. A group gathers the parameters
// of one (wd_mult, lr_mult, is_expert_parallel, is_decoupled_lr), in the order the keys
// first appear; torch numbers an optimizer's parameters group after group.
func (c *checkpointer) paramGroups() [][]paramGroup {
	var parts [2][]paramGroup // dense, expert
	for i, prm := range c.trainable() {
		g := paramGroup{wdMult: 1, expert: prm.Expert, decoupled: c.a.DecoupledLR > 0 && optim.EmbeddingOrOutput(prm)}
		if prm.NoWeightDecay {
			g.wdMult = 0
		}
		part := 0
		if g.expert {
			part = 1
		}
		found := false
		for j := range parts[part] {
			if q := &parts[part][j]; q.wdMult == g.wdMult && q.decoupled == g.decoupled {
				q.params, found = append(q.params, i), true
			}
		}
		if !found {
			g.params = []int{i}
			parts[part] = append(parts[part], g)
		}
	}
	if len(parts[1]) == 0 {
		return parts[:1]
	}
	return parts[:]
}

// groupsDict is a torch optimizer's state dict without its state: the param groups'
// hyperparameters (with step, the Adam step; with indices, their parameters' numbers).
func (c *checkpointer) groupsDict(p progress, groups []paramGroup, indices, step bool) *torchpickle.Dict {
	var out []any
	at := 0
	for _, k := range groups {
		// lr is informational: the scheduler sets every group's rate before each step.
		maxLR, minLR, lr := c.sched.MaxLR, c.sched.MinLR, c.sched.At(p.SchedSteps)
		if k.decoupled {
			maxLR, minLR, lr = c.a.DecoupledLR, c.a.MinLR, c.a.DecoupledLR
			if c.a.DecoupledMinLR != nil {
				minLR = *c.a.DecoupledMinLR
			}
		}
		g := torchpickle.NewDict(false)
		for _, kv := range []struct {
			k string
			v any
		}{{"wd_mult", k.wdMult}, {"lr_mult", 1.0}, {"is_expert_parallel", k.expert}, {"is_decoupled_lr", k.decoupled},
			{"max_lr", maxLR}, {"min_lr", minLR}, {"lr", lr},
			{"betas", torchpickle.Tuple{c.opt.Cfg.Beta1, c.opt.Cfg.Beta2}}, {"eps", c.opt.Cfg.Eps},
			{"weight_decay", c.sched.WD(p.SchedSteps) * k.wdMult}, {"amsgrad", false}, {"foreach", nil},
			{"maximize", false}, {"capturable", false}, {"differentiable", false}, {"fused", nil}} {
			g.Set(kv.k, kv.v)
		}
		if step {
			g.Set("step", float64(c.opt.State().Step))
		}
		if indices {
			var ids []any
			for range k.params {
				ids = append(ids, int64(at))
				at++
			}
			g.Set("params", ids)
		}
		out = append(out, g)
	}
	d := torchpickle.NewDict(false)
	d.Set("param_groups", out)
	return d
}

// stateDict builds this shard's top-level dict with Megatron's keys.
func (c *checkpointer) stateDict(p progress) (*torchpickle.Dict, error) {
	chunks := c.allChunks()
	var models []*torchpickle.Dict
	for _, m := range chunks {
		tensors := map[string]*tensor.Tensor{}
		for _, prm := range m.Params {
			dt := c.dtype()
			if prm.Buffer { // Megatron keeps buffers (the expert bias) in fp32
				dt = tensor.F32
			}
			tensors[prm.Name] = c.hostAs(prm.Data, dt)
		}
		model, err := megatron.ModelDict(megatron.MCore, m.Params, tensors)
		if err != nil {
			return nil, err
		}
		models = append(models, model)
	}
	st := c.unshardedState(p, models)
	switch {
	case c.a.NoSaveOptim:
	case c.opt.Distributed: // the tensors go to distrib_optim.pt
		parts := c.optimizerParts(p, true)
		var o any = parts[0]
		if len(parts) > 1 { // a ChainedOptimizer's state dict is its optimizers' list
			o = toAny(parts)
		}
		st.Set("optimizer", o)
	default:
		st.Set("optimizer", c.optimizerDict(p))
	}
	if !c.a.NoSaveRNG {
		// Dropout masks are functions of (seed, step): the seed is the whole RNG state.
		rng := torchpickle.NewDict(false)
		rng.Set("random_rng_state", nil)
		rng.Set("np_rng_state", nil)
		rng.Set("torch_rng_state", tensor.New(tensor.U8, 0))
		rng.Set("cuda_rng_state", tensor.New(tensor.U8, 0))
		rng.Set("rng_tracker_states", torchpickle.NewDict(false))
		rng.Set("gomegatron_seed", c.a.Seed)
		st.Set("rng_state", []any{rng})
	}
	st.Set("num_floating_point_operations_so_far", p.FLOPs)
	for v, m := range chunks {
		if meta := m.FP8Meta(); meta != nil {
			st.Set(fp8Key(v, len(chunks)), meta)
		}
	}
	return st, nil
}

// unshardedState is the state dict's args, checkpoint_version, iteration, the given model
// chunks' dicts (none for torch_dist) and opt_param_scheduler.
func (c *checkpointer) unshardedState(p progress, models []*torchpickle.Dict) *torchpickle.Dict {
	args := megatron.Args(c.model.Cfg, c.ps.TPSize, c.ps.PPSize, c.dtype(), megatron.MCore, c.hfModelType)
	if n := len(c.allChunks()); n > 1 {
		args.Set("virtual_pipeline_model_parallel_size", n)
		args.Set("num_layers_per_virtual_pipeline_stage", c.a.LayersPerVirtualStage)
	}
	args.Set("data_parallel_size", c.ps.DPSize)
	args.Set("expert_model_parallel_size", c.ps.EPSize)
	args.Set("context_parallel_size", c.ps.CPSize)
	args.Set("consumed_train_samples", p.ConsumedTrain)
	args.Set("consumed_valid_samples", p.ConsumedValid)
	args.Set("iteration", p.Iteration)
	args.Set("micro_batch_size", c.a.MicroBatchSize)
	args.Set("global_batch_size", c.a.GlobalBatchSize)
	args.Set("seed", c.a.Seed)
	args.Set("use_distributed_optimizer", c.opt.Distributed)
	args.Set("lr", c.a.LR)
	args.Set("min_lr", c.a.MinLR)
	args.Set("ckpt_format", c.a.CkptFormat)
	args.Set("ckpt_fully_parallel_save", true) // the distributed optimizer's state by model tensor (torch_dist)
	args.Set("add_position_embedding", !c.a.NoPositionEmbedding)
	st := megatron.StateDictChunks(args, p.Iteration, models)
	sched := torchpickle.NewDict(false)
	for _, kv := range []struct {
		k string
		v any
	}{{"max_lr", c.sched.MaxLR}, {"lr_warmup_steps", c.sched.WarmupSteps}, {"num_steps", p.SchedSteps},
		{"lr_decay_style", c.sched.Style}, {"lr_decay_steps", c.sched.DecaySteps}, {"min_lr", c.sched.MinLR},
		{"start_wd", c.sched.StartWD}, {"end_wd", c.sched.EndWD}, {"wd_incr_style", c.sched.WDIncrStyle},
		{"wd_incr_steps", c.sched.WDIncrSteps}} {
		sched.Set(kv.k, kv.v)
	}
	st.Set("opt_param_scheduler", sched)
	return st
}

// optimizerDict is the non-distributed optimizer's "optimizer" entry, as Megatron's
// Float16OptimizerWithFloat16Params (or FP32Optimizer) saves it: the torch optimizer's
// state dict (Adam's moments numbered group after group, the param groups with their
// numbers), the fp32 main parameters per group, the grad scaler; on a rank with experts a
// ChainedOptimizer's list of two.
func (c *checkpointer) optimizerDict(p progress) any {
	s := c.opt.State()
	lay := c.opt.Buffers().Layout
	trainable := c.trainable()
	var parts []any
	for _, groups := range c.paramGroups() {
		inner := c.groupsDict(p, groups, true, false)
		state := torchpickle.NewDict(false)
		var mains []any
		for _, g := range groups {
			var group []any
			for _, i := range g.params {
				prm := trainable[i]
				lo := s.Packed(lay.Offsets[i])
				hi := lo + prm.Numel()
				e := torchpickle.NewDict(false)
				e.Set("step", tensor.FromF32Values(tensor.F32, []float32{float32(s.Step)}))
				e.Set("exp_avg", c.host(s.M.Slice(lo, hi).View(prm.Shape...)))
				e.Set("exp_avg_sq", c.host(s.V.Slice(lo, hi).View(prm.Shape...)))
				state.Set(state.Len(), e)
				if s.Main != nil {
					group = append(group, c.host(s.Main.Slice(lo, hi).View(prm.Shape...)))
				}
			}
			mains = append(mains, group)
		}
		inner.Set("state", state)
		out := torchpickle.NewDict(false)
		out.Set("optimizer", inner)
		if gs := c.gradScalerDict(p); gs != nil {
			out.Set("grad_scaler", gs)
		}
		if s.Main != nil {
			out.Set("fp32_from_fp16_params", mains)
		}
		parts = append(parts, out)
	}
	if len(parts) == 1 {
		return parts[0]
	}
	return parts
}

func toAny[T any](v []T) []any {
	out := make([]any, len(v))
	for i, x := range v {
		out[i] = x
	}
	return out
}

// gradScalerDict is the loss scaler's state (nil without one).
func (c *checkpointer) gradScalerDict(p progress) *torchpickle.Dict {
	if c.opt.Scaler == nil {
		return nil
	}
	gs := torchpickle.NewDict(false)
	// Megatron's DynamicGradScaler keeps (and loads with .cuda()) a one-element tensor.
	gs.Set("scale", tensor.FromF32Values(tensor.F32, []float32{float32(p.LossScale)}, 1))
	gs.Set("growth_tracker", p.ScalerGrowth)
	gs.Set("hysteresis_tracker", p.ScalerHysteresis)
	return gs
}

// gatherDistribOptim collects every DP rank's optimizer shards into the whole buffer, as
// get_parameter_state_dp_zero does: {"buckets_coalesced": True, i: {torch.float32:
// {"param", "exp_avg", "exp_avg_sq": fp32[numel_unpadded], "numel_unpadded"}}} for each
// model chunk's buffer i, each array the buffer's buckets in order without their end padding.
func (c *checkpointer) gatherDistribOptim() (any, error) {
	s := c.opt.State()
	lay := c.opt.Buffers().Layout
	full := map[string]*tensor.Tensor{}
	for _, kv := range []struct {
		k string
		t *tensor.Tensor
	}{{"param", s.Main}, {"exp_avg", s.M}, {"exp_avg_sq", s.V}} {
		var packed *tensor.Tensor
		if kv.t != nil {
			packed = c.host(kv.t)
		} else { // fp32 training: the param buffer's owned elements are the main copy
			packed = tensor.New(tensor.F32, s.M.Numel())
			for _, o := range s.Own {
				copy(packed.F32()[o.Local:], c.host(c.opt.Buffers().Param.Slice(o.Lo, o.Hi)).F32())
			}
		}
		f := tensor.New(tensor.F32, lay.Numel)
		for b, k := range lay.Buckets {
			o := s.Own[b]
			if err := c.opt.BucketGroup(b).AllGather(f.Slice(k.Lo, k.Hi), packed.Slice(o.Local, o.Local+o.Hi-o.Lo)); err != nil {
				return nil, fmt.Errorf("gathering the distributed optimizer's %s (bucket %d): %w", kv.k, b, err)
			}
		}
		full[kv.k] = f
	}
	var parts []any
	for _, buffers := range c.distribOptimBuffers() {
		d := torchpickle.NewDict(false)
		d.Set("buckets_coalesced", true)
		for i, buckets := range buffers {
			unpadded := c.unpadded(buckets)
			byName := torchpickle.NewDict(false)
			for _, name := range []string{"param", "exp_avg", "exp_avg_sq"} {
				out := tensor.New(tensor.F32, unpadded)
				at := 0
				for _, b := range buckets {
					k := lay.Buckets[b]
					at += copy(out.F32()[at:], full[name].F32()[k.Lo:k.End])
				}
				byName.Set(name, out)
			}
			byName.Set("numel_unpadded", unpadded)
			byDType := torchpickle.NewDict(false)
			byDType.Set(c.distribOptimKey(), byName)
			d.Set(i, byDType)
		}
		parts = append(parts, d)
	}
	if len(parts) == 1 {
		return parts[0], nil
	}
	return parts, nil // a ChainedOptimizer saves its optimizers' list
}

// distribOptimBuffers lists the buckets (indices into the layout's) of each buffer
// distrib_optim.pt holds, by optimizer: one optimizer (its buffers are the model chunks'),
// or, on a rank with experts, Megatron-Core's two (the chunks' dense buckets, then their
// expert buckets).
func (c *checkpointer) distribOptimBuffers() [][][]int {
	lay := c.opt.Buffers().Layout
	kinds := []bool{false}
	if c.hasExperts() {
		kinds = []bool{false, true}
	}
	var out [][][]int
	for _, expert := range kinds {
		var buffers [][]int
		for _, ch := range lay.Chunks {
			var buckets []int
			for b := ch[0]; b < ch[1]; b++ {
				if len(kinds) == 1 || lay.Buckets[b].Expert == expert {
					buckets = append(buckets, b)
				}
			}
			if len(buckets) > 0 {
				buffers = append(buffers, buckets)
			}
		}
		out = append(out, buffers)
	}
	return out
}

// unpadded is the number of parameter elements in buckets, their end padding left out, as
// distrib_optim.pt stores a buffer.
func (c *checkpointer) unpadded(buckets []int) int {
	n := 0
	for _, b := range buckets {
		k := c.opt.Buffers().Layout.Buckets[b]
		n += k.End - k.Lo
	}
	return n
}

// distribOptimKey keys a buffer's state in distrib_optim.pt as Megatron-Core keys its
// buffers since 2024 (core 0.6): (param dtype, grad dtype); gomegatron's grads are fp32.
func (c *checkpointer) distribOptimKey() torchpickle.Tuple {
	return torchpickle.Tuple{c.dtype(), tensor.F32}
}

// distribOptimBuffer finds a buffer's state in one entry of distrib_optim.pt: under
// distribOptimKey, or under the grad dtype alone as Megatron keyed it before (240126).
func (c *checkpointer) distribOptimBuffer(byDType any) (any, bool) {
	if v, ok := dictGetAny(byDType, c.distribOptimKey()); ok {
		return v, true
	}
	return dictGetAny(byDType, tensor.F32)
}

// expertShards points loc at this rank's expert-parallel shards.
func (c *checkpointer) expertShards(loc megatron.Location) megatron.Location {
	if c.ps.EPSize > 1 {
		loc.ExpertRank, loc.ExpertSize = c.ps.Coords.EP, c.ps.EPSize
	}
	return loc
}

// load restores --load: weights (resharded when the checkpoint's TP/PP differ), and unless
// --finetune / --no-load-optim the optimizer state and the run's progress.
func (c *checkpointer) load() (progress, error) {
	var p progress
	if c.a.hfModel { // a Hugging Face folder: its weights, nothing else
		r, err := hf.Open(c.a.Load)
		if err != nil {
			return p, err
		}
		defer r.Close()
		if m, err := hf.ReadConfig(c.a.Load); err == nil {
			c.hfModelType = string(m.Family)
		}
		if err := c.loadFull(r.Full); err != nil {
			return p, err
		}
		c.opt.SyncMainFromWeights()
		return p, nil
	}
	loc, err := megatron.Resolve(c.a.Load)
	if c.a.CkptStep > 0 {
		loc, err = megatron.Location{Root: c.a.Load, Iteration: c.a.CkptStep}, nil
	}
	if err != nil {
		return p, fmt.Errorf("--load: %w", err)
	}
	if megatron.IsTorchDist(loc.Dir()) {
		return c.loadDist(loc)
	}
	ep, err := megatron.ExpertSize(loc)
	if err != nil {
		return p, fmt.Errorf("--load: %w", err)
	}
	if ep == c.ps.EPSize {
		loc = c.expertShards(loc)
	} else if ep > 1 {
		loc.ExpertSize = ep // read expert-parallel rank 0's files for the progress
	}
	tp, pp, err := megatron.Shards(loc)
	if err != nil {
		return p, fmt.Errorf("--load: %w", err)
	}
	if err := c.checkSavedArgs(loc, pp); err != nil {
		return p, err
	}
	same := tp == c.ps.TPSize && pp == c.ps.PPSize && ep == c.ps.EPSize
	vp, grouped := 1, false
	if same {
		if vp, grouped, err = c.savedChunks(loc, pp); err != nil {
			return p, err
		}
		// GroupedMLP and SequentialMLP experts hold the same maps in other tensors: the
		// weights are repacked as for a resharding.
		same = vp == len(c.allChunks()) && grouped == c.groupedExperts()
	}
	if same {
		err = c.loadShardWeights(loc)
	} else {
		err = c.loadResharded(loc)
	}
	if err != nil {
		return p, err
	}
	c.opt.SyncMainFromWeights()
	if c.a.Finetune || loc.Release {
		return p, nil
	}
	// The progress is in every shard; resharded, this rank's own may not exist.
	tpr, ppr := c.ps.Coords.TP, c.ps.Coords.PP
	if !same {
		tpr, ppr = 0, 0
	}
	sf, err := megatron.LoadShard(loc, tpr, ppr, pp)
	if err != nil {
		return p, err
	}
	defer sf.Close()
	args, err := sf.Args()
	if err != nil {
		return p, err
	}
	root, _ := sf.Value.(*torchpickle.Dict)
	c.readProgress(root, args, &p)
	for v, m := range c.allChunks() {
		if x, ok := dictGetAny(root, fp8Key(v, vp)); ok && same {
			if t, ok := x.(*tensor.Tensor); ok && c.a.FP8() != nil {
				if err := m.SetFP8Meta(t.Clone()); err != nil {
					return p, fmt.Errorf("--load %s: %w", c.a.Load, err)
				}
			}
		}
	}
	if c.a.NoLoadOptim {
		return p, nil
	}
	if sch, ok := dictGet(root, "opt_param_scheduler"); ok {
		if err := c.schedulerFromCheckpoint(sch); err != nil {
			return p, err
		}
	}
	if !same {
		saved, now := fmt.Sprintf("TP=%d PP=%d EP=%d", tp, pp, ep), fmt.Sprintf("TP=%d PP=%d EP=%d", c.ps.TPSize, c.ps.PPSize, c.ps.EPSize)
		if saved == now && grouped != c.groupedExperts() {
			saved, now = fmt.Sprintf("moe_grouped_gemm %v", grouped), fmt.Sprintf("--moe-grouped-gemm %v", c.groupedExperts())
		} else if saved == now {
			saved, now = fmt.Sprintf("%d virtual pipeline stages", vp), fmt.Sprintf("%d", len(c.allChunks()))
		}
		return p, fmt.Errorf("--load: %s was saved with %s, this run has %s: the optimizer state cannot follow a resharding; pass --no-load-optim (or --finetune) to load the weights only",
			c.a.Load, saved, now)
	}
	return p, c.loadOptimizer(loc, root, &p)
}

// schedulerFromCheckpoint reconciles the flags' learning-rate and weight-decay schedule
// with a checkpoint's opt_param_scheduler as Megatron's OptimizerParamScheduler
// load_state_dict does (older key names too): --override-opt_param-scheduler keeps the
// flags', --use-checkpoint-opt_param-scheduler takes the checkpoint's, and otherwise
// the two must agree.
func (c *checkpointer) schedulerFromCheckpoint(sd *torchpickle.Dict) error {
	what := "--load " + c.a.Load + ": opt_param_scheduler"
	first := func(keys ...string) (any, string, error) {
		for _, k := range keys {
			if v, ok := sd.Get(k); ok {
				return v, k, nil
			}
		}
		return nil, "", fmt.Errorf("%s lacks %s", what, keys[len(keys)-1])
	}
	// checkAndSet is Megatron's _check_and_set: the value the run goes on with.
	checkAndSet := func(name string, flag, saved any, equal bool) (use bool, err error) {
		if c.a.OverrideOptParamSched {
			c.notes = append(c.notes, fmt.Sprintf(" > overriding %s value to %v", name, flag))
			return false, nil
		}
		if !c.a.UseCheckpointOptSched && !equal {
			return false, fmt.Errorf("%s: OptimizerParamScheduler: class input value %v and checkpointvalue %v for %s do not match "+
				"(pass --override-opt_param-scheduler to keep the flags' value, or --use-checkpoint-opt_param-scheduler to take the checkpoint's)",
				what, flag, saved, name)
		}
		c.notes = append(c.notes, fmt.Sprintf(" > using checkpoint value %v for %s", saved, name))
		return true, nil
	}
	num := func(name string, flag float64, keys ...string) (float64, error) {
		v, k, err := first(keys...)
		if err != nil {
			return 0, err
		}
		x, ok := torchpickle.AsFloat64(v)
		if !ok {
			return 0, fmt.Errorf("%s %s is %T, not a number", what, k, v)
		}
		use, err := checkAndSet(name, flag, v, x == flag)
		if !use {
			x = flag
		}
		return x, err
	}
	str := func(name, flag string, keys ...string) (string, error) {
		v, k, err := first(keys...)
		if err != nil {
			return "", err
		}
		x, ok := v.(string)
		if !ok {
			return "", fmt.Errorf("%s %s is %T, not a string", what, k, v)
		}
		use, err := checkAndSet(name, flag, x, x == flag)
		if !use {
			x = flag
		}
		return x, err
	}
	s := c.sched
	var err error
	if s.MaxLR, err = num("learning rate", s.MaxLR, "start_lr", "max_lr"); err != nil {
		return err
	}
	if s.MinLR, err = num("minimum learning rate", s.MinLR, "min_lr"); err != nil {
		return err
	}
	w, err := num("warmup iterations", float64(s.WarmupSteps), "warmup_iter", "warmup_steps", "lr_warmup_steps")
	if err != nil {
		return err
	}
	d, err := num("total number of iterations", float64(s.DecaySteps), "end_iter", "decay_steps", "lr_decay_steps")
	if err != nil {
		return err
	}
	s.WarmupSteps, s.DecaySteps = int64(w), int64(d)
	if s.Style, err = str("learning rate decay style", s.Style, "decay_style", "lr_decay_style"); err != nil {
		return err
	}
	if err := s.Validate(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if _, ok := sd.Get("start_wd"); ok {
		if s.StartWD, err = num("start weight decay", s.StartWD, "start_wd"); err != nil {
			return err
		}
		if s.EndWD, err = num("end weight decay", s.EndWD, "end_wd"); err != nil {
			return err
		}
		n, err := num("total number of weight decay iterations", float64(s.WDIncrSteps), "wd_incr_steps")
		if err != nil {
			return err
		}
		s.WDIncrSteps = int64(n)
		if s.WDIncrStyle, err = str("weight decay incr style", s.WDIncrStyle, "wd_incr_style"); err != nil {
			return err
		}
		if err := s.Validate(); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
	}
	c.sched = s
	return nil
}

// vocabHint explains a word embedding or output layer whose rows differ from the
// checkpoint's when a Pai tokenizer type sizes the vocabulary (the tokenizer's plus
// --extra-vocab-size, unpadded): the --extra-vocab-size that fits. have and want are shards
// of shards tensor-parallel pieces.
func (c *checkpointer) vocabHint(name string, have, want []int, shards int) string {
	if !c.a.paiTokenizer() || len(have) != 2 || len(want) != 2 || have[1] != want[1] ||
		!strings.Contains(name, "word_embeddings") && !strings.Contains(name, "output_layer") {
		return ""
	}
	extra := c.a.ExtraVocabSize + (have[0]-want[0])*shards
	if extra < 0 {
		return ""
	}
	return fmt.Sprintf(" (Pai's tokenizer types size the vocabulary as the tokenizer's plus --extra-vocab-size: the checkpoint's rows need --extra-vocab-size %d)", extra)
}

// loadShardWeights copies this rank's shard of a checkpoint with the same layout.
func (c *checkpointer) loadShardWeights(loc megatron.Location) error {
	_, pp, _ := megatron.Shards(loc)
	sf, err := megatron.LoadShard(loc, c.ps.Coords.TP, c.ps.Coords.PP, pp)
	if err != nil {
		return err
	}
	defer sf.Close()
	for v, m := range c.allChunks() {
		tensors, _, err := sf.ModelChunk(v)
		if err != nil {
			return err
		}
		for _, prm := range m.Params {
			t, ok := tensors[prm.Name]
			if !ok {
				return fmt.Errorf("%s: model chunk %d has no tensor %s", sf.Path, v, prm.Name)
			}
			if !tensor.SameShape(t.Shape(), prm.Shape) {
				return fmt.Errorf("%s: %s has shape %v, the model (from the flags) wants %v%s", sf.Path, prm.Name, t.Shape(), prm.Shape,
					c.vocabHint(prm.Name, t.Shape(), prm.Shape, c.ps.TPSize))
			}
			c.set(prm.Data, t.ToF32())
			delete(tensors, prm.Name)
		}
		// Megatron loads strictly: a parameter the flags' model lacks is an error, not dropped.
		var extra []string
		for name := range tensors {
			if !strings.HasPrefix(name, "?") { // "?": no module of ours, as Pai's extra copies
				extra = append(extra, name)
			}
		}
		if len(extra) > 0 {
			sort.Strings(extra)
			return fmt.Errorf("%s: unexpected key(s) in model chunk %d: %s, which the model built from the flags lacks (a flag such as --add-qkv-bias, --disable-bias-linear or --untie-embeddings-and-output-weights differs from the checkpoint's)",
				sf.Path, v, strings.Join(extra[:min(len(extra), 3)], ", "))
		}
	}
	return nil
}

// readProgress takes the iteration, the consumed samples, the FLOPs so far and (unless
// --no-load-optim) the scheduler's steps from a checkpoint's state dict.
func (c *checkpointer) readProgress(root *torchpickle.Dict, args *torchpickle.Namespace, p *progress) {
	if v, ok := dictGetAny(root, "iteration"); ok {
		n, _ := torchpickle.AsInt64(v)
		p.Iteration = int(n)
	}
	p.ConsumedTrain = nsInt(args, "consumed_train_samples")
	p.ConsumedValid = nsInt(args, "consumed_valid_samples")
	if v, ok := dictGetAny(root, "num_floating_point_operations_so_far"); ok { // 0 when absent
		p.FLOPs, _ = torchpickle.AsFloat64(v)
	}
	// Megatron loads the scheduler with the optimizer only: with --no-load-optim the
	// learning-rate schedule starts again from step 0 while the iterations go on.
	if sch, ok := dictGet(root, "opt_param_scheduler"); ok && !c.a.NoLoadOptim {
		if v, ok := dictGetAny(sch, "num_steps"); ok {
			n, _ := torchpickle.AsInt64(v)
			p.SchedSteps = n
		}
	}
}

// loadDist loads a torch_dist checkpoint (Megatron-Core's default format) at any layout:
// the weights, and unless --finetune the progress and (unless --no-load-optim) the
// optimizer state.
func (c *checkpointer) loadDist(loc megatron.Location) (progress, error) {
	var p progress
	ck, err := megatron.Open(loc.Dir())
	if err != nil {
		return p, fmt.Errorf("--load: %w", err)
	}
	defer ck.Close()
	if err := c.checkArgs(ck.Args); err != nil {
		return p, err
	}
	if err := c.loadFull(ck.Full); err != nil {
		return p, err
	}
	c.opt.SyncMainFromWeights()
	if c.a.Finetune || loc.Release {
		return p, nil
	}
	c.readProgress(ck.Common, ck.Args, &p)
	if c.a.NoLoadOptim {
		return p, nil
	}
	return p, c.loadDistOptimizer(ck, &p)
}

// loadDistOptimizer restores the optimizer state of a torch_dist checkpoint: Adam's
// moments and the fp32 main parameters are stored per parameter in the model's global
// shapes (optimizer.state.<name>.<key>), so any TP/PP/DP layout, with or without the
// distributed optimizer, takes its own shards of them.
func (c *checkpointer) loadDistOptimizer(ck *megatron.Checkpoint, p *progress) error {
	o, ok := dictGet(ck.Common, "optimizer")
	if !ok || !ck.HasOptimizerState("exp_avg") {
		return fmt.Errorf("--load %s has no optimizer state (saved with --no-save-optim?); pass --no-load-optim to resume with fresh optimizer state, or --finetune to load the weights only", ck.Dir())
	}
	if v, ok := o.Get("param_state_sharding_type"); ok && v != "fully_sharded_model_space" {
		return fmt.Errorf("--load %s: the distributed optimizer's state is sharded as %v, which depends on the saving run's data-parallel layout; gomegatron reads fully_sharded_model_space (Megatron's default, --ckpt-fully-parallel-save); pass --no-load-optim", ck.Dir(), v)
	}
	if sch, ok := dictGet(ck.Common, "opt_param_scheduler"); ok {
		if err := c.schedulerFromCheckpoint(sch); err != nil {
			return err
		}
	}
	// A ChainedOptimizer (dense and expert-parallel parameters) saves {0: …, 1: …}.
	if first, ok := dictGetAny(o, int64(0)); ok {
		if d, ok := first.(*torchpickle.Dict); ok {
			o = d
		}
	}
	c.optimizerScalars(o, p)
	s := c.opt.State()
	offsets := c.opt.Buffers().Layout.Offsets
	states := []struct {
		name string
		dst  *tensor.Tensor
	}{{"exp_avg", s.M}, {"exp_avg_sq", s.V}}
	if s.Main != nil && ck.HasOptimizerState("fp32_param") { // else the main copy stays the weights'
		states = append(states, struct {
			name string
			dst  *tensor.Tensor
		}{"fp32_param", s.Main})
	}
	for _, st := range states {
		err := c.eachLocal(c.trainable(), func(key string) ([]float32, []int, error) {
			return ck.OptimizerFull(st.name, key)
		}, func(i int, _ *layers.Param, local []float32) {
			c.setOwned(st.dst, s, offsets[i], local)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// setOwned writes the values of the buffer elements [off, off+len(vals)) that this rank
// owns into dst, packed optimizer state (optim.State).
func (c *checkpointer) setOwned(dst *tensor.Tensor, s optim.State, off int, vals []float32) {
	for _, o := range s.Own {
		if lo, hi := max(o.Lo, off), min(o.Hi, off+len(vals)); lo < hi {
			c.set(dst.Slice(o.Local+lo-o.Lo, o.Local+hi-o.Lo), vals[lo-off:hi-off])
		}
	}
}

// checkSavedArgs notes the checkpoint's hf_model_type, and refuses a checkpoint whose
// output layer is Baichuan 2's NormHead (Pai's args use_normhead) in a run without
// --use-normhead, and the reverse: the weights would load, and the output layer compute
// another function.
func (c *checkpointer) checkSavedArgs(loc megatron.Location, pp int) error {
	sf, err := megatron.LoadShard(loc, 0, 0, pp)
	if err != nil {
		return err
	}
	defer sf.Close()
	args, err := sf.Args()
	if err != nil {
		return nil // no args to compare (the load reports what it lacks)
	}
	return c.checkArgs(args)
}

// checkArgs is checkSavedArgs on the checkpoint's args.
func (c *checkpointer) checkArgs(args *torchpickle.Namespace) error {
	if v, ok := args.Get("hf_model_type"); ok {
		c.hfModelType, _ = v.(string)
	}
	v, _ := args.Get("use_normhead")
	if saved, _ := v.(bool); saved != c.a.UseNormHead {
		want := "--use-normhead"
		if !saved {
			want = "no --use-normhead"
		}
		return fmt.Errorf("--load %s: the checkpoint's args say use_normhead %v (Baichuan 2's NormHead output layer), this run has --use-normhead %v: pass %s", c.a.Load, saved, c.a.UseNormHead, want)
	}
	return nil
}

// groupedExperts: this run's experts are GroupedMLP's.
func (c *checkpointer) groupedExperts() bool { return c.a.MoEGroupedGemm && c.a.NumExperts > 0 }

// savedChunks is the number of model chunks this rank's shard of loc holds, and whether
// its experts are GroupedMLP's (args moe_grouped_gemm).
func (c *checkpointer) savedChunks(loc megatron.Location, pp int) (vp int, grouped bool, err error) {
	sf, err := megatron.LoadShard(loc, c.ps.Coords.TP, c.ps.Coords.PP, pp)
	if err != nil {
		return 0, false, err
	}
	defer sf.Close()
	if args, err := sf.Args(); err == nil {
		v, _ := args.Get("moe_grouped_gemm")
		grouped, _ = v.(bool)
	}
	return sf.VirtualStages(), grouped, nil
}

// loadResharded reads full tensors from a checkpoint of another TP/PP and takes this rank's shard.
func (c *checkpointer) loadResharded(loc megatron.Location) error {
	ck, err := megatron.Open(c.a.Load)
	if err != nil {
		return err
	}
	defer ck.Close()
	return c.loadFull(ck.Full)
}

// loadFull fills this rank's shard of every parameter from the full tensors full returns
// (a Megatron checkpoint at any layout, or a Hugging Face folder's).
func (c *checkpointer) loadFull(full func(key string) ([]float32, []int, error)) error {
	return c.eachLocal(c.params(), full, func(_ int, prm *layers.Param, local []float32) { c.set(prm.Data, local) })
}

// eachLocal calls use with every parameter of params (by index) and this rank's shard of
// it, cut from the full tensors full returns, whose shapes it checks.
func (c *checkpointer) eachLocal(params layers.Params, full func(key string) ([]float32, []int, error), use func(i int, prm *layers.Param, local []float32)) error {
	for i, prm := range params {
		local, err := prm.LocalFrom(func(q *layers.Param) ([]float32, error) {
			vals, shape, err := full(q.InitKey)
			if err != nil {
				return nil, fmt.Errorf("--load %s: %s: %w", c.a.Load, q.InitKey, err)
			}
			if !tensor.SameShape(shape, q.FullShape) {
				return nil, fmt.Errorf("--load %s: %s has shape %v, the model (from the flags) wants %v%s", c.a.Load, q.InitKey, shape, q.FullShape,
					c.vocabHint(q.InitKey, shape, q.FullShape, 1))
			}
			return vals, nil
		}, c.ps.Coords.TP, c.ps.TPSize)
		if err != nil {
			return err
		}
		use(i, prm, local)
	}
	return nil
}

// loadOptimizer restores Adam's state (and fp32 main params, loss scaler) from a checkpoint
// with this run's layout.
func (c *checkpointer) loadOptimizer(loc megatron.Location, root *torchpickle.Dict, p *progress) error {
	entry, _ := dictGetAny(root, "optimizer")
	first := entry
	if l, ok := entry.([]any); ok && len(l) > 0 { // a ChainedOptimizer's list: dense first
		first = l[0]
	}
	o, ok := first.(*torchpickle.Dict)
	if !ok {
		return fmt.Errorf("--load %s has no optimizer state; pass --no-load-optim", c.a.Load)
	}
	s := c.opt.State()
	c.optimizerScalars(o, p)
	lay := c.opt.Buffers().Layout
	if c.opt.Distributed {
		_, pp, _ := megatron.Shards(loc)
		d, err := megatron.LoadDistribOptim(loc, c.ps.Coords.TP, c.ps.Coords.PP, pp)
		if err != nil {
			return fmt.Errorf("--load: %w (saved without --use-distributed-optimizer? pass --no-load-optim)", err)
		}
		// Each buffer holds its buckets in order without their end padding; a
		// ChainedOptimizer (a rank with experts) saved a list: dense buffers, expert buffers.
		packed := map[string][]float32{"exp_avg": make([]float32, s.M.Numel()), "exp_avg_sq": make([]float32, s.M.Numel()),
			"param": make([]float32, s.M.Numel())}
		parts := []any{d}
		if l, ok := d.([]any); ok {
			parts = l
		}
		if len(parts) == 2 && parts[0] == nil && loc.ExpertRank > 0 {
			// Megatron gathers the dense state onto data-parallel rank 0, whose files are
			// expert-parallel rank 0's; the other expert-parallel ranks' hold None.
			loc0 := loc
			loc0.ExpertRank = 0
			d0, err := megatron.LoadDistribOptim(loc0, c.ps.Coords.TP, c.ps.Coords.PP, pp)
			if err != nil {
				return fmt.Errorf("--load: the dense optimizer state: %w", err)
			}
			if l, ok := d0.([]any); ok && len(l) == 2 {
				parts[0] = l[0]
			}
		}
		byOptimizer := c.distribOptimBuffers()
		if len(parts) != len(byOptimizer) {
			return fmt.Errorf("--load: distrib_optim.pt holds the state of %d optimizers, this rank has %d (dense and expert parameters are optimized apart)", len(parts), len(byOptimizer))
		}
		for opt, buffers := range byOptimizer {
			for i, buckets := range buffers {
				byDType, _ := dictGetAny(parts[opt], int64(i))
				byName, ok := c.distribOptimBuffer(byDType)
				if !ok {
					return fmt.Errorf("--load: distrib_optim.pt has no buffer %d of %v params and float32 grads (optimizer %d)", i, c.dtype(), opt)
				}
				if v, ok := dictGetAny(byName, "numel_unpadded"); ok {
					if n, _ := torchpickle.AsInt64(v); int(n) != c.unpadded(buckets) {
						return fmt.Errorf("--load: distrib_optim.pt buffer %d (optimizer %d) holds %d elements, this run lays out %d (saved with another model, layout or bucket size?)", i, opt, n, c.unpadded(buckets))
					}
				}
				for name, dv := range packed {
					v, ok := dictGetAny(byName, name)
					t, isT := v.(*tensor.Tensor)
					if !ok || !isT {
						return fmt.Errorf("--load: distrib_optim.pt buffer %d lacks %s", i, name)
					}
					src := t.ToF32()
					base := 0
					for _, b := range buckets {
						k, o := lay.Buckets[b], s.Own[b]
						for g := o.Lo; g < min(o.Hi, k.End); g++ {
							if j := base + g - k.Lo; j < len(src) {
								dv[o.Local+g-o.Lo] = src[j]
							}
						}
						base += k.End - k.Lo
					}
				}
			}
		}
		c.set(s.M, packed["exp_avg"])
		c.set(s.V, packed["exp_avg_sq"])
		if s.Main != nil {
			c.set(s.Main, packed["param"])
		} else {
			for _, o := range s.Own { // fp32 training: the param buffer is the main copy
				c.set(c.opt.Buffers().Param.Slice(o.Lo, o.Hi), packed["param"][o.Local:o.Local+o.Hi-o.Lo])
			}
		}
		return nil
	}
	parts := []any{entry}
	if l, ok := entry.([]any); ok {
		parts = l
	}
	byOptimizer := c.paramGroups()
	if len(parts) != len(byOptimizer) {
		return fmt.Errorf("--load %s holds the state of %d optimizers, this rank has %d (dense and expert parameters are optimized apart)", c.a.Load, len(parts), len(byOptimizer))
	}
	trainable := c.trainable()
	for n, groups := range byOptimizer {
		if err := c.loadPlainOptimizer(parts[n], groups, trainable); err != nil {
			return fmt.Errorf("--load %s: optimizer %d: %w", c.a.Load, n, err)
		}
	}
	return nil
}

// loadPlainOptimizer restores one non-distributed optimizer's state (optimizerDict's form)
// into the parameters of groups. Its state is numbered over the param groups; a file with
// one group for every parameter (gomegatron before 2026-11-27) numbers them in order.
func (c *checkpointer) loadPlainOptimizer(part any, groups []paramGroup, trainable layers.Params) error {
	s := c.opt.State()
	lay := c.opt.Buffers().Layout
	inner, _ := dictGet(part, "optimizer")
	state, ok := dictGet(inner, "state")
	if !ok {
		return fmt.Errorf("its state is missing (saved with the distributed optimizer? pass --use-distributed-optimizer or --no-load-optim)")
	}
	saved, _ := dictGetAny(inner, "param_groups")
	savedGroups, _ := saved.([]any)
	var mains [][]any
	if f, ok := dictGetAny(part, "fp32_from_fp16_params"); ok {
		l, _ := f.([]any)
		for _, g := range l {
			m, _ := g.([]any)
			mains = append(mains, m)
		}
	}
	order := groups
	if len(savedGroups) == 1 && len(groups) > 1 { // one group of every parameter
		all := paramGroup{}
		for _, g := range groups {
			all.params = append(all.params, g.params...)
		}
		sort.Ints(all.params)
		order = []paramGroup{all}
	}
	if len(savedGroups) != len(order) {
		return fmt.Errorf("%d param groups saved, this run has %d (weight decay, expert and --decoupled-lr groups)", len(savedGroups), len(order))
	}
	k := 0
	for gi, g := range order {
		if ids, ok := dictGetAny(savedGroups[gi], "params"); ok {
			if l, _ := ids.([]any); len(l) != len(g.params) {
				return fmt.Errorf("param group %d holds %d parameters, this run's %d", gi, len(l), len(g.params))
			}
		}
		for j, i := range g.params {
			prm := trainable[i]
			e, ok := dictGetAny(state, k)
			if !ok {
				return fmt.Errorf("no state for parameter %d (%s)", k, prm.Name)
			}
			k++
			lo := s.Packed(lay.Offsets[i])
			for _, kv := range []struct {
				k   string
				dst *tensor.Tensor
			}{{"exp_avg", s.M}, {"exp_avg_sq", s.V}} {
				v, _ := dictGetAny(e, kv.k)
				t, ok := v.(*tensor.Tensor)
				if !ok || t.Numel() != prm.Numel() {
					return fmt.Errorf("%s of %s is missing or has the wrong size", kv.k, prm.Name)
				}
				c.set(kv.dst.Slice(lo, lo+prm.Numel()), t.ToF32())
			}
			if s.Main != nil && gi < len(mains) && j < len(mains[gi]) {
				t, ok := mains[gi][j].(*tensor.Tensor)
				if !ok || t.Numel() != prm.Numel() {
					return fmt.Errorf("fp32_from_fp16_params of %s is missing or has the wrong size", prm.Name)
				}
				c.set(s.Main.Slice(lo, lo+prm.Numel()), t.ToF32())
			}
		}
	}
	return nil
}

// optimizerScalars restores from an "optimizer" dict the Adam step, Adam's betas and eps,
// and the loss scaler's state.
func (c *checkpointer) optimizerScalars(o *torchpickle.Dict, p *progress) {
	inner, _ := dictGet(o, "optimizer")
	var group0 any
	if groups, ok := dictGetAny(inner, "param_groups"); ok {
		if l, ok := groups.([]any); ok && len(l) > 0 {
			group0 = l[0]
		}
	}
	// torch's load_state_dict takes every hyperparameter of the saved groups; Megatron's
	// scheduler then sets lr and weight_decay, so Adam's betas and eps stay the checkpoint's.
	if b, ok := dictGetAny(group0, "betas"); ok {
		if b, ok := b.(torchpickle.Tuple); ok && len(b) == 2 {
			b1, ok1 := number(b[0])
			b2, ok2 := number(b[1])
			if ok1 && ok2 && (b1 != c.opt.Cfg.Beta1 || b2 != c.opt.Cfg.Beta2) {
				c.notes = append(c.notes, fmt.Sprintf(" > using checkpoint value (%v, %v) for Adam betas (--adam-beta1 %v --adam-beta2 %v), as Megatron's optimizer load does",
					b1, b2, c.opt.Cfg.Beta1, c.opt.Cfg.Beta2))
				c.opt.Cfg.Beta1, c.opt.Cfg.Beta2 = b1, b2
			}
		}
	}
	if eps, ok := dictGetAny(group0, "eps"); ok {
		if e, ok := number(eps); ok && e != c.opt.Cfg.Eps {
			c.notes = append(c.notes, fmt.Sprintf(" > using checkpoint value %v for Adam eps (--adam-eps %v), as Megatron's optimizer load does", e, c.opt.Cfg.Eps))
			c.opt.Cfg.Eps = e
		}
	}
	// Megatron keeps the step in the param groups with the distributed optimizer; without,
	// as torch's Adam does, per parameter (state[0].step, a tensor), which its torch_dist
	// form keeps once as state.common_step.
	state, _ := dictGet(inner, "state")
	first, _ := dictGetAny(state, 0)
	for _, at := range []struct {
		d   any
		key string
	}{{group0, "step"}, {first, "step"}, {state, "common_step"}} {
		v, ok := dictGetAny(at.d, at.key)
		if f, isNum := number(v); ok && isNum {
			c.opt.SetStep(int(f))
			break
		}
	}
	if gs, ok := dictGet(o, "grad_scaler"); ok {
		if v, ok := dictGetAny(gs, "scale"); ok {
			p.LossScale, _ = number(v)
		}
		if v, ok := dictGetAny(gs, "growth_tracker"); ok {
			n, _ := torchpickle.AsInt64(v)
			p.ScalerGrowth = int(n)
		}
		if v, ok := dictGetAny(gs, "hysteresis_tracker"); ok {
			n, _ := torchpickle.AsInt64(v)
			p.ScalerHysteresis = int(n)
		}
	}
}

// number reads a Python int or float, or a one-element tensor.
func number(v any) (float64, bool) {
	if t, ok := v.(*tensor.Tensor); ok {
		if t.Numel() != 1 {
			return 0, false
		}
		return float64(t.ToF32()[0]), true
	}
	return torchpickle.AsFloat64(v)
}

func dictGet(v any, k string) (*torchpickle.Dict, bool) {
	x, ok := dictGetAny(v, k)
	d, isD := x.(*torchpickle.Dict)
	return d, ok && isD
}

// dictGetAny is v[k] for a dict or namespace v; a missing one (also a nil *Dict, as
// dictGet returns for an absent key) has no k.
func dictGetAny(v any, k any) (any, bool) {
	switch d := v.(type) {
	case *torchpickle.Dict:
		if d == nil {
			return nil, false
		}
		return d.Get(k)
	case *torchpickle.Namespace:
		if s, ok := k.(string); ok {
			return d.Get(s)
		}
	}
	return nil, false
}

func nsInt(ns *torchpickle.Namespace, k string) int64 {
	v, _ := ns.Get(k)
	n, _ := torchpickle.AsInt64(v)
	return n
}
