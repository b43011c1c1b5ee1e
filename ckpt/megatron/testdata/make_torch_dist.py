"""Writes a tiny GPT checkpoint twice with Megatron-LM itself: once in the torch_dist
(PyTorch distributed checkpoint) format and once in the legacy torch format, from the
same model on the same ranks. gomegatron's tests read both and check that every full
tensor agrees, so the torch_dist reader is checked against Megatron's own writer.

Run (CPU only, gloo) with PyTorch >= 2.6 and a Megatron-LM tree on PYTHONPATH:

    python3 make_torch_dist.py OUT_DIR TP PP [EP NUM_EXPERTS] [-- MEGATRON FLAGS...]

It spawns TP*PP*EP processes. Extra Megatron flags after "--" (e.g. --qk-layernorm,
--moe-layer-freq) build the model from Megatron's decoder block spec.

With OPTIM=1 in the environment the checkpoints also hold the optimizer state: the model
is wrapped in Megatron's DistributedDataParallel with the distributed optimizer over DP
data-parallel ranks (DP=2 by default, so TP*PP*EP*DP processes), takes two Adam steps on
seeded gradients, and is saved with its optimizer and scheduler (torch_dist:
fully_sharded_model_space; torch: the optimizer dict and distrib_optim.pt). OPTIM=plain
uses the non-distributed optimizer (Float16OptimizerWithFloat16Params) instead. FP16=1
trains in fp16 with Megatron's dynamic loss scaler instead of bf16.

With LOAD=DIR in the environment it checks a torch_dist checkpoint written elsewhere
(by gomegatron): Megatron's own load_checkpoint reads DIR into the model (strictly, with
--no-load-optim --no-load-rng), and only the torch-format copy is written to OUT_DIR/torch.
With OPTIM=1 too, it loads the optimizer state as well (the distributed optimizer's
fully_sharded_model_space) and writes the state it loaded as OPTIM=1 writes its references. See torch_dist/README.md for the versions used.
"""
import os
import sys
import tempfile

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

# Megatron-Core 0.20 names a torch >= 2.7 dtype at import time (MXFP8 inference code this
# script never runs); an inert placeholder lets it import on torch 2.6.
if not hasattr(torch, "float8_e8m0fnu"):
    torch.float8_e8m0fnu = torch.uint8

# This tree's sharding validation of flattened (distributed optimizer) tensors calls
# numpy.product, which numpy 2 removed; numpy.prod is the same function.
import numpy
if not hasattr(numpy, "product"):
    numpy.product = numpy.prod

ITERATION = 7


def argv(tp, pp, ep, experts, save, extra):
    a = [
        "pretrain_gpt.py",
        "--use-mcore-models", "--transformer-impl", "local",
        "--num-layers", "4", "--hidden-size", "32", "--ffn-hidden-size", "48",
        "--num-attention-heads", "4", "--group-query-attention", "--num-query-groups", "2",
        "--normalization", "RMSNorm", "--swiglu", "--disable-bias-linear",
        "--position-embedding-type", "rope", "--untie-embeddings-and-output-weights",
        "--seq-length", "64", "--max-position-embeddings", "64",
        "--micro-batch-size", "1", "--global-batch-size", "4",
        "--lr", "1e-4", "--train-iters", "10", "--fp16" if os.environ.get("FP16") else "--bf16",
        "--tokenizer-type", "NullTokenizer", "--vocab-size", "120",
        "--tensor-model-parallel-size", str(tp), "--pipeline-model-parallel-size", str(pp),
        "--ckpt-format", "torch_dist", "--save", save, "--save-interval", "7", "--use-cpu-initialization",
        "--no-gradient-accumulation-fusion", "--no-rope-fusion", "--no-masked-softmax-fusion", "--no-bias-swiglu-fusion", "--no-persist-layer-norm", "--no-save-rng",
    ]
    if not os.environ.get("OPTIM"):
        a.append("--no-save-optim")
    else:
        a += ["--weight-decay", "0.1", "--clip-grad", "0", "--lr-decay-style", "cosine", "--min-lr", "1e-5"]
        if os.environ.get("FP16"):  # a scale that grows every step: the scaler's state moves
            a += ["--initial-loss-scale", "1024", "--loss-scale-window", "1"]
        if os.environ["OPTIM"] != "plain":
            a.append("--use-distributed-optimizer")
    if experts:
        a += ["--num-experts", str(experts), "--moe-router-topk", "2",
              "--expert-model-parallel-size", str(ep)]
    def drop(flag, n=1):
        i = a.index(flag)
        del a[i:i + n]

    if "--multi-latent-attention" in extra:  # MLA has no query groups
        drop("--group-query-attention", 3)
    if "--gpt-base" in extra:  # GPT-2's architecture instead of Llama's
        extra = [f for f in extra if f != "--gpt-base"]
        for flag, n in (("--group-query-attention", 3), ("--swiglu", 1), ("--disable-bias-linear", 1),
                        ("--untie-embeddings-and-output-weights", 1)):
            drop(flag, n)
        a[a.index("RMSNorm")] = "LayerNorm"
        a[a.index("rope")] = "learned_absolute"
    return a + extra


def build_model(args, config, experts, extra, pre_process=True, post_process=True):
    """The GPTModel the flags describe (local spec), as pretrain_gpt.py's model_provider."""
    from megatron.core.models.gpt import GPTModel
    from megatron.core.models.gpt.gpt_layer_specs import (get_gpt_decoder_block_spec,
                                                          get_gpt_layer_local_spec)
    if extra:
        spec = get_gpt_decoder_block_spec(config, use_transformer_engine=False, normalization=args.normalization)
    else:
        spec = get_gpt_layer_local_spec(num_experts=experts or None, normalization=args.normalization)
    return GPTModel(config=config, transformer_layer_spec=spec, vocab_size=args.padded_vocab_size,
                    max_sequence_length=args.max_position_embeddings, pre_process=pre_process,
                    post_process=post_process,
                    share_embeddings_and_output_weights=not args.untie_embeddings_and_output_weights,
                    position_embedding_type=args.position_embedding_type,
                    rotary_percent=args.rotary_percent, rotary_base=args.rotary_base,
                    # pretrain_gpt.py of this tree passes rope_scaling alone; the factor and
                    # the interpolation are passed too so that their semantics are Megatron's.
                    rope_scaling=args.use_rope_scaling, rope_scaling_factor=args.rope_scaling_factor,
                    seq_len_interpolation_factor=args.rotary_seq_len_interpolation_factor)


def perturb(model, tp_rank, ep_rank):
    # Megatron initialises norms to ones and zeroes nothing useful to compare; give every
    # parameter distinct values. Replicated parameters get the same values on every TP rank.
    tied = getattr(model, "share_embeddings_and_output_weights", False)
    for name, p in model.named_parameters():
        if tied and name == "output_layer.weight":  # the last stage's copy of the embedding
            name = "embedding.word_embeddings.weight"
        split = getattr(p, "tensor_model_parallel", False)
        expert = not getattr(p, "allreduce", True)
        seed = sum(ord(c) * (i + 1) for i, c in enumerate(name)) % (2**31)
        seed += 1009 * tp_rank * split + 7919 * ep_rank * expert
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            p.copy_(torch.randn(p.shape, generator=g).to(p.dtype))
    for name, b in model.named_buffers():  # DeepSeek-V3's expert bias, zero at the start
        if name.endswith("expert_bias"):
            g = torch.Generator().manual_seed(sum(ord(c) for c in name))
            with torch.no_grad():
                b.copy_(0.1 * torch.randn(b.shape, generator=g).to(b.dtype))


def keep_optimizer_on_cpu():
    """Megatron's optimizer puts its scalars on device="cuda"; keep them on the CPU."""
    def on_cpu(fn):
        def wrapped(*a, **k):
            if str(k.get("device", "")).startswith("cuda"):
                k["device"] = "cpu"
            return fn(*a, **k)
        return wrapped

    for name in ("tensor", "zeros", "ones", "empty", "full"):
        setattr(torch, name, on_cpu(getattr(torch, name)))


def make_optimizer(args, config, model):
    """Wraps model in DistributedDataParallel and builds the distributed optimizer and the
    learning-rate scheduler as pretrain does."""
    from megatron.core.distributed import DistributedDataParallel, DistributedDataParallelConfig
    from megatron.core.optimizer import OptimizerConfig, get_megatron_optimizer
    from megatron.training.training import get_optimizer_param_scheduler
    keep_optimizer_on_cpu()
    # The step quantizes FP8 parameters through Transformer Engine, which is absent; there
    # are none here.
    import megatron.core.optimizer.distrib_optimizer as distrib_optimizer
    distrib_optimizer.quantize_param_shard = lambda *a, **k: None
    ddp = DistributedDataParallel(config, DistributedDataParallelConfig(
        grad_reduce_in_fp32=True, use_distributed_optimizer=args.use_distributed_optimizer), model)
    # The optimizer accepts only torch.cuda tensor types; name the CPU ones so while it
    # sorts the parameters into fp32 and bf16 groups.
    cpu_type = torch.Tensor.type
    torch.Tensor.type = lambda self, *a, **k: (cpu_type(self, *a, **k) if a or k else
                                                 cpu_type(self).replace("torch.", "torch.cuda.", 1))
    try:
        opt = get_megatron_optimizer(OptimizerConfig(
            optimizer="adam", lr=args.lr, min_lr=args.min_lr, weight_decay=args.weight_decay,
            adam_beta1=0.9, adam_beta2=0.95, bf16=args.bf16, fp16=args.fp16, params_dtype=args.params_dtype,
            initial_loss_scale=args.initial_loss_scale, loss_scale_window=args.loss_scale_window,
            hysteresis=args.hysteresis,
            use_distributed_optimizer=args.use_distributed_optimizer, clip_grad=0.0), [ddp])
    finally:
        torch.Tensor.type = cpu_type
    return ddp, opt, get_optimizer_param_scheduler(opt)


def train_two_steps(ddp, opt, sched, args):
    """Takes two Adam steps on seeded gradients (the same on every data-parallel rank, so
    their mean is the gradient), so that exp_avg, exp_avg_sq and the fp32 main params
    differ from anything derivable from the weights alone."""
    from megatron.core import parallel_state
    tp, ep = parallel_state.get_tensor_model_parallel_rank(), parallel_state.get_expert_model_parallel_rank()
    for step in range(2):
        ddp.zero_grad_buffer()
        for name, p in ddp.module.named_parameters():
            split = getattr(p, "tensor_model_parallel", False)
            expert = not getattr(p, "allreduce", True)
            seed = 1 + step + sum(ord(c) * (i + 3) for i, c in enumerate(name)) % (2**31)
            seed += 1009 * tp * split + 7919 * ep * expert
            g = torch.Generator().manual_seed(seed)
            p.main_grad.copy_(torch.randn(p.shape, generator=g))
        ddp.finish_grad_sync()
        ok, _, _ = opt.step()
        assert ok
        sched.step(increment=args.global_batch_size)


def save_state_references(out, args, model, opt):
    """Writes each optimizer state (exp_avg, exp_avg_sq, fp32_param) of every parameter as
    if it were the model, in the legacy torch format (OUT/<state>/iter_…/mp_rank_…): each
    data-parallel rank's slices of a parameter (the distributed optimizer's own ranges)
    are gathered (over the expert-data-parallel group for experts) and put where the
    parameter's weight would be.
    These references come from the optimizer's live state, not from any checkpoint code."""
    from megatron.core import parallel_state
    from megatron.training import checkpointing
    mine = []  # (name, start, end, {state: values}) for the slices this rank owns
    by_param = {p: n for n, p in model.named_parameters()}
    for o in getattr(opt, "chained_optimizers", [opt]):
        if not hasattr(o, "gbuf_ranges"):  # not distributed: every rank holds all of it
            for models, mains in zip(o.float16_groups, o.fp32_from_float16_groups):
                for p, main in zip(models, mains):
                    t = o.optimizer.state[main]
                    mine.append((by_param[p], 0, p.numel(), {"fp32_param": main.detach().float().view(-1).clone(),
                                                             "exp_avg": t["exp_avg"].float().view(-1).clone(),
                                                             "exp_avg_sq": t["exp_avg_sq"].float().view(-1).clone()}))
            continue
        for gbuf_index, by_dtype in enumerate(o.gbuf_ranges):
            for buckets in by_dtype.values():
                for bucket in buckets:
                    for p, ranges in bucket["param_map"].items():
                        r = ranges["param"]
                        t = o._get_main_param_and_optimizer_states(p)
                        mine.append((by_param[p], r.start, r.end,
                                     {"fp32_param": t["param"].detach().float().clone(),
                                      "exp_avg": t["exp_avg"].float().clone(),
                                      "exp_avg_sq": t["exp_avg_sq"].float().clone()}))
    # Dense parameters are sharded over the data-parallel group, experts over the
    # expert-data-parallel group; each expert-parallel rank writes its own folder.
    expert = {n for n, p in model.named_parameters() if not getattr(p, "allreduce", True)}
    every = []
    for group, part in ((parallel_state.get_data_parallel_group(), [m for m in mine if m[0] not in expert]),
                        (parallel_state.get_expert_data_parallel_group(), [m for m in mine if m[0] in expert])):
        gathered = [None] * dist.get_world_size(group)
        dist.all_gather_object(gathered, part, group=group)
        every += gathered
    writer = parallel_state.get_expert_data_parallel_rank() if expert else parallel_state.get_data_parallel_rank()
    if writer != 0:
        return
    shapes = {n: p.shape for n, p in model.named_parameters()}
    for state in ("exp_avg", "exp_avg_sq", "fp32_param"):
        full = {n: torch.full((s.numel(),), float("nan")) for n, s in shapes.items()}
        for rank_slices in every:
            for name, lo, hi, vals in rank_slices:
                full[name][lo:hi] = vals[state]
        sd = model.state_dict_for_save_checkpoint()
        for name, values in full.items():
            assert not values.isnan().any(), (state, name)
            sd[name] = values.view(shapes[name])
        name = checkpointing.get_checkpoint_name(os.path.join(out, state), ITERATION, release=False)
        os.makedirs(os.path.dirname(name), exist_ok=True)
        torch.save({"args": args, "checkpoint_version": 3.0, "iteration": ITERATION, "model": sd}, name)


def worker(rank, world, out, tp, pp, ep, experts, extra, port):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world),
                      RANK=str(rank), LOCAL_RANK=str(rank), USE_LIBUV="0", CUDA_DEVICE_MAX_CONNECTIONS="1")
    dist.init_process_group("gloo", rank=rank, world_size=world)
    # The checkpoint writer syncs a GPU and places its flags there; run it on the CPU.
    torch.cuda.synchronize = lambda *a, **k: None
    torch.cuda.current_device = lambda: "cpu"
    torch.Tensor.cuda = lambda self, *a, **k: self  # the tied embedding's first all-reduce
    from megatron.core import dist_checkpointing, parallel_state
    from megatron.core.dist_checkpointing.serialization import get_default_save_sharded_strategy
    from megatron.training.arguments import (core_transformer_config_from_args, parse_args,
                                             validate_args)
    from megatron.training import checkpointing
    from megatron.training.global_vars import set_args
    import megatron.training.arguments as arguments

    arguments.get_device_arch_version = lambda: 9  # no GPU here; answer as an H100 would

    dist_dir = os.path.join(out, "torch_dist")
    sys.argv = argv(tp, pp, ep, experts, dist_dir, extra)
    args = parse_args()
    validate_args(args)
    try:  # the padded vocabulary, as build_tokenizer sets it
        from megatron.training.tokenizer.tokenizer import _vocab_size_with_padding as pad_vocab
    except ImportError:  # Megatron-Core >= 0.15
        from megatron.core.tokenizers.utils.build_tokenizer import vocab_size_with_padding as pad_vocab
    args.padded_vocab_size = pad_vocab(args.vocab_size, args)
    set_args(args)
    parallel_state.initialize_model_parallel(tp, pp, expert_model_parallel_size=ep)
    torch.manual_seed(1234)
    config = core_transformer_config_from_args(args)
    model = build_model(args, config, experts, [f for f in extra if f != "--gpt-base"],
                        parallel_state.is_pipeline_first_stage(), parallel_state.is_pipeline_last_stage())
    model = model.to(args.params_dtype)
    load, optim = os.environ.get("LOAD"), os.environ.get("OPTIM")
    ddp = opt = sched = None
    if load:
        if optim:  # its main params are copies of the weights; the load overwrites both
            ddp, opt, sched = make_optimizer(args, config, model)
        args.load, args.no_load_optim, args.no_load_rng, args.finetune = load, not optim, True, False

        def read_metadata(tracker):  # Megatron's all-reduces the iteration on the GPU
            with open(tracker) as f:
                return int(f.read().strip()), False

        checkpointing.read_metadata = read_metadata
        from megatron.core.num_microbatches_calculator import init_num_microbatches_calculator
        init_num_microbatches_calculator(rank, args.rampup_batch_size, args.global_batch_size,
                                         args.micro_batch_size, args.data_parallel_size)
        if optim:
            # Without Apex or Transformer Engine this tree's DistributedOptimizer.state_dict
            # reads torch Adam's per-parameter step, which exists only after a first step:
            # one on zero gradients creates it; the load then overwrites the weights, the
            # main params, the moments and the step.
            ddp.zero_grad_buffer()
            assert opt.step()[0]
            # That step is also per-parameter state the checkpoint (rightly) lacks, which
            # the fully_sharded_model_space loader would copy; Apex's and TE's Adam have none.
            from megatron.core.optimizer.distrib_optimizer import DistributedOptimizer
            states = DistributedOptimizer._get_main_param_and_optimizer_states
            DistributedOptimizer._get_main_param_and_optimizer_states = lambda self, p: {
                k: v for k, v in states(self, p).items() if k != "step"}
            set_states = DistributedOptimizer._set_main_param_and_optimizer_states

            def set_but_step(self, p, tensors):
                group, order = self.model_param_group_index_map[p]
                state = self.optimizer.state[self.optimizer.param_groups[group]["params"][order]]
                step = state.pop("step", None)
                try:
                    set_states(self, p, tensors)
                finally:
                    if step is not None:
                        state["step"] = step

            DistributedOptimizer._set_main_param_and_optimizer_states = set_but_step
        it, _ = checkpointing.load_checkpoint([ddp or model], opt, sched, strict=True)
        if optim and rank == 0:
            inner = opt.chained_optimizers[0].optimizer
            steps = sorted({float(s["step"]) for s in inner.state.values()})
            scaler = opt.chained_optimizers[0].grad_scaler
            print(f"loaded Adam step {steps}, scheduler num_steps {sched.num_steps}, "
                  f"param groups {[(g['wd_mult'], g['weight_decay']) for g in inner.param_groups]}"
                  + (f", loss scaler {scaler.state_dict()}" if scaler else ""))
        with open(os.path.join(load, "latest_checkpointed_iteration.txt")) as f:
            assert it == int(f.read()), it
    else:
        perturb(model, parallel_state.get_tensor_model_parallel_rank(),
                parallel_state.get_expert_model_parallel_rank())
        if optim:  # built after perturb: the main params copy the weights
            ddp, opt, sched = make_optimizer(args, config, model)
            train_two_steps(ddp, opt, sched, args)

    if not load:
        # torch_dist, as save_checkpoint writes it.
        meta = checkpointing._build_sharded_state_dict_metadata(args)
        from megatron.core.rerun_state_machine import get_rerun_state_machine
        rerun = get_rerun_state_machine().state_dict(data_iterator=None, ckpt_format=args.ckpt_format)
        sd = checkpointing.generate_state_dict(args, [model], opt, sched, None, iteration=ITERATION,
                                               optim_sd_kwargs=dict(metadata=meta),
                                               model_sd_kwargs=dict(metadata=meta), rerun_state=rerun)
        sd["num_floating_point_operations_so_far"] = 0
        ckpt = os.path.join(dist_dir, f"iter_{ITERATION:07d}")
        if rank == 0:
            os.makedirs(ckpt, exist_ok=True)
        dist.barrier()
        try:  # Megatron-Core >= 0.14 puts a process group in the metadata; save_checkpoint drops it
            from megatron.core.dist_checkpointing.utils import _clean_metadata_for_serialization
        except ImportError:
            _clean_metadata_for_serialization = lambda m: m
        dist_checkpointing.save(sd, ckpt, get_default_save_sharded_strategy("torch_dist"),
                                content_metadata=_clean_metadata_for_serialization(meta))
    # The same model in the legacy torch format (get_checkpoint_name's folders).
    args.ckpt_format = "torch"
    legacy = os.path.join(out, "torch")
    name = checkpointing.get_checkpoint_name(legacy, ITERATION, release=False)
    # Each expert-parallel rank writes its own folder (mp_rank_TT_PPP_EEE), as save_checkpoint does.
    writer = parallel_state.get_expert_data_parallel_rank() if experts else parallel_state.get_data_parallel_rank()
    if writer == 0:
        os.makedirs(os.path.dirname(name), exist_ok=True)
        torch.save(checkpointing.generate_state_dict(args, [model], opt, sched, None, iteration=ITERATION), name)
    if opt is not None:
        if args.use_distributed_optimizer:  # distrib_optim.pt, gathered to data-parallel rank 0
            opt.save_parameter_state(checkpointing.get_distributed_optimizer_checkpoint_name(name))
        save_state_references(out, args, model, opt)
    dist.barrier()
    if rank == 0:
        roots = [legacy] if load else [dist_dir, legacy]
        if opt is not None:
            roots += [os.path.join(out, s) for s in ("exp_avg", "exp_avg_sq", "fp32_param")]
        for root in roots:
            with open(os.path.join(root, "latest_checkpointed_iteration.txt"), "w") as f:
                f.write(str(ITERATION))
    dist.destroy_process_group()


def main():
    pos, extra = sys.argv[1:], []
    if "--" in pos:
        pos, extra = pos[:pos.index("--")], pos[pos.index("--") + 1:]
    out, tp, pp = pos[0], int(pos[1]), int(pos[2])
    ep = int(pos[3]) if len(pos) > 3 else 1
    experts = int(pos[4]) if len(pos) > 4 else 0
    world = tp * pp * ep * (int(os.environ.get("DP", "2")) if os.environ.get("OPTIM") else 1)
    port = 29500 + os.getpid() % 1000
    mp.spawn(worker, args=(world, out, tp, pp, ep, experts, extra, port), nprocs=world)


if __name__ == "__main__":
    main()
