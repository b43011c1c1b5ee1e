"""Runs Megatron-LM's own GPTModel forward and backward (fp32, CPU, one process) on a
torch_dist fixture and saves the loss and every parameter's gradient, as a reference for
gomegatron's model. Run like make_torch_dist.py (see torch_dist/README.md):

    python3 megatron_forward.py FIXTURE_DIR OUT.pt [-- MEGATRON FLAGS...]

FIXTURE_DIR is one of torch_dist/<name>; the flags after "--" must be those it was made
with (its layers and experts). The model is loaded at TP = PP = EP = 1 from its torch_dist
folder, cast to fp32, and run on a fixed batch of 2 × 16 tokens with every label counted;
with experts, --moe-aux-loss-coeff 0.01 unless the flags give it. The router's auxiliary
losses reach the gradients only (MoEAuxLossAutoScaler, scale 1); "loss" is the LM loss.
"""
import os
import sys

os.environ["TORCHDYNAMO_DISABLE"] = "1"  # Megatron's jit_fuser is torch.compile: run eagerly on the CPU
import torch
import torch.distributed as dist

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_torch_dist as gen  # noqa: E402


def main():
    pos, extra = sys.argv[1:], []
    if "--" in pos:
        pos, extra = pos[:pos.index("--")], pos[pos.index("--") + 1:]
    fixture, out = pos
    experts = 4 if "moe" in os.path.basename(fixture.rstrip("/")) else 0
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT="29611", WORLD_SIZE="1", RANK="0",
                      LOCAL_RANK="0", USE_LIBUV="0", CUDA_DEVICE_MAX_CONNECTIONS="1")
    dist.init_process_group("gloo", rank=0, world_size=1)
    torch.cuda.synchronize = lambda *a, **k: None
    torch.cuda.current_device = lambda: "cpu"
    from megatron.core import parallel_state
    from megatron.core.models.gpt import GPTModel
    from megatron.core.models.gpt.gpt_layer_specs import (get_gpt_decoder_block_spec,
                                                          get_gpt_layer_local_spec)
    from megatron.training import checkpointing
    import megatron.training.arguments as arguments
    from megatron.training.arguments import core_transformer_config_from_args, parse_args, validate_args
    from megatron.training.global_vars import set_args
    from megatron.core.num_microbatches_calculator import init_num_microbatches_calculator

    arguments.get_device_arch_version = lambda: 9
    import megatron.core.transformer.moe.moe_utils as moe_utils
    if not hasattr(moe_utils, "te_general_gemm"):  # left undefined without Transformer Engine
        moe_utils.te_general_gemm = None
    sys.argv = gen.argv(1, 1, 1, experts, "/nonexistent", extra)
    sys.argv += ["--attention-dropout", "0", "--hidden-dropout", "0"]
    if experts and "--moe-aux-loss-coeff" not in extra:
        sys.argv += ["--moe-aux-loss-coeff", "0.01"]
    args = parse_args()
    validate_args(args)
    # The checkpoint's padded vocabulary (its TP's padding): every row takes part in the
    # softmax, as in the run that saved it.
    common = torch.load(os.path.join(fixture, "torch_dist", "iter_0000007", "common.pt"), weights_only=False)
    args.padded_vocab_size = common["args"].padded_vocab_size
    set_args(args)
    parallel_state.initialize_model_parallel(1, 1)
    init_num_microbatches_calculator(0, None, args.global_batch_size, args.micro_batch_size, 1)
    config = core_transformer_config_from_args(args)
    if extra:
        spec = get_gpt_decoder_block_spec(config, use_transformer_engine=False, normalization="RMSNorm")
    else:
        spec = get_gpt_layer_local_spec(num_experts=experts or None, normalization="RMSNorm")
    model = GPTModel(config=config, transformer_layer_spec=spec, vocab_size=args.padded_vocab_size,
                     max_sequence_length=args.max_position_embeddings, pre_process=True, post_process=True,
                     share_embeddings_and_output_weights=False, position_embedding_type="rope")
    model = model.to(torch.bfloat16)

    def read_metadata(tracker):
        with open(tracker) as f:
            return int(f.read().strip()), False

    checkpointing.read_metadata = read_metadata
    args.load, args.no_load_optim, args.no_load_rng, args.finetune = os.path.join(fixture, "torch_dist"), True, True, True
    checkpointing.load_checkpoint([model], None, None, strict=True)
    model = model.float()
    # No dropout, so the model-parallel CUDA RNG Megatron forks around it is not needed.
    import contextlib
    from megatron.core.tensor_parallel.random import get_cuda_rng_tracker
    get_cuda_rng_tracker().fork = lambda *a, **k: contextlib.nullcontext()
    model.config.params_dtype = torch.float32

    g = torch.Generator().manual_seed(7)
    b, s = 2, 16
    tokens = torch.randint(0, 120, (b, s + 1), generator=g)
    inputs, labels = tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()
    position_ids = torch.arange(s).unsqueeze(0).expand(b, s)
    mask = torch.triu(torch.ones(s, s, dtype=torch.bool), diagonal=1).view(1, 1, s, s)
    per_token = model(inputs, position_ids, mask, labels=labels)
    loss = per_token.float().mean()
    loss.backward()
    grads = {n: p.grad.detach().float().clone() for n, p in model.named_parameters() if p.grad is not None}
    torch.save({"tokens": inputs, "labels": labels, "loss": loss.item(), "grads": grads}, out)
    print("loss", loss.item(), "grads", len(grads))


if __name__ == "__main__":
    main()
