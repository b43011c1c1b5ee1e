"""Writes a tiny GPT checkpoint twice with Megatron-LM itself: once in the torch_dist
(PyTorch distributed checkpoint) format and once in the legacy torch format, from the
same model on the same ranks. gomegatron's tests read both and check that every full
tensor agrees, so the torch_dist reader is checked against Megatron's own writer.

Run (CPU only, gloo) with PyTorch >= 2.6 and a Megatron-LM tree on PYTHONPATH:

    python3 make_torch_dist.py OUT_DIR TP PP [EP NUM_EXPERTS] [-- MEGATRON FLAGS...]

It spawns TP*PP*EP processes. Extra Megatron flags after "--" (e.g. --qk-layernorm,
--moe-layer-freq) build the model from Megatron's decoder block spec.

With LOAD=DIR in the environment it checks a torch_dist checkpoint written elsewhere
(by gomegatron): Megatron's own load_checkpoint reads DIR into the model (strictly, with
--no-load-optim --no-load-rng), and only the torch-format copy is written to OUT_DIR/torch. See torch_dist/README.md for the versions used.
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
        "--lr", "1e-4", "--train-iters", "10", "--bf16",
        "--tokenizer-type", "NullTokenizer", "--vocab-size", "120",
        "--tensor-model-parallel-size", str(tp), "--pipeline-model-parallel-size", str(pp),
        "--ckpt-format", "torch_dist", "--save", save, "--save-interval", "7", "--use-cpu-initialization",
        "--no-gradient-accumulation-fusion", "--no-rope-fusion", "--no-masked-softmax-fusion", "--no-bias-swiglu-fusion", "--no-persist-layer-norm", "--no-save-optim", "--no-save-rng",
    ]
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
    model = model.to(torch.bfloat16)
    load = os.environ.get("LOAD")
    if load:
        args.load, args.no_load_optim, args.no_load_rng, args.finetune = load, True, True, False

        def read_metadata(tracker):  # Megatron's all-reduces the iteration on the GPU
            with open(tracker) as f:
                return int(f.read().strip()), False

        checkpointing.read_metadata = read_metadata
        from megatron.core.num_microbatches_calculator import init_num_microbatches_calculator
        init_num_microbatches_calculator(rank, args.rampup_batch_size, args.global_batch_size,
                                         args.micro_batch_size, args.data_parallel_size)
        it, _ = checkpointing.load_checkpoint([model], None, None, strict=True)
        assert it == ITERATION, it
    else:
        perturb(model, parallel_state.get_tensor_model_parallel_rank(),
                parallel_state.get_expert_model_parallel_rank())

    if not load:
        # torch_dist, as save_checkpoint writes it.
        meta = checkpointing._build_sharded_state_dict_metadata(args)
        from megatron.core.rerun_state_machine import get_rerun_state_machine
        rerun = get_rerun_state_machine().state_dict(data_iterator=None, ckpt_format=args.ckpt_format)
        sd = checkpointing.generate_state_dict(args, [model], None, None, None, iteration=ITERATION,
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
        torch.save(checkpointing.generate_state_dict(args, [model], None, None, None, iteration=ITERATION), name)
    dist.barrier()
    if rank == 0:
        for root in ((legacy,) if load else (dist_dir, legacy)):
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
    world = tp * pp * ep
    port = 29500 + os.getpid() % 1000
    mp.spawn(worker, args=(world, out, tp, pp, ep, experts, extra, port), nprocs=world)


if __name__ == "__main__":
    main()
