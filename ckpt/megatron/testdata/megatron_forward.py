"""Runs Megatron-LM's own GPTModel forward and backward (fp32, CPU, one process) on a
torch_dist fixture and saves the loss and every parameter's gradient, as a reference for
gomegatron's model. Run like make_torch_dist.py (see torch_dist/README.md):

    python3 megatron_forward.py FIXTURE_DIR OUT.pt [STEPS] [-- MEGATRON FLAGS...]

FIXTURE_DIR is one of torch_dist/<name>; the flags after "--" must be those it was made
with (its layers and experts). The model is loaded at TP = PP = EP = 1 from its torch_dist
folder and run on a fixed batch of 2 × 16 tokens with every label counted;
with experts, --moe-aux-loss-coeff 0.01 unless the flags give it. Without STEPS the model
runs in float64. The router's auxiliary
losses reach the gradients only (MoEAuxLossAutoScaler, scale 1); "loss" is the LM loss.

With STEPS, the model is wrapped in Megatron's DistributedDataParallel and trained STEPS
iterations by get_megatron_optimizer's fp32 Adam and OptimizerParamScheduler (lr 1e-3
constant, β2 0.95, weight decay 0.1 on all but biases and 1-D parameters, --clip-grad 1.0);
DECOUPLED_LR in the environment gives the word embeddings and the output layer that
learning rate (--decoupled-lr). Each step takes MICRO (default 1) microbatches, drawn with
seeds 7, 8, …; every second one counts only half of its second row's labels, and
PER_TOKEN=1 trains with --calculate-per-token-loss. It saves each microbatch's tokens, labels
and loss mask, each step's loss (Σ loss / Σ tokens) and grad norm, and the parameters after
the last step.

Without STEPS the model runs in float64 (F32=1: float32, to see Megatron's own rounding), and
RESET=1 in the environment packs documents: end-of-document tokens (7) at
three places, with Megatron's reset attention masks and position ids
(--reset-attention-mask --reset-position-ids).
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
    fixture, out = pos[:2]
    steps = int(pos[2]) if len(pos) > 2 else 0
    experts = 4 if "moe" in os.path.basename(fixture.rstrip("/")) else 0  # the fixtures' MoE models have 4
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT="29611", WORLD_SIZE="1", RANK="0",
                      LOCAL_RANK="0", USE_LIBUV="0", CUDA_DEVICE_MAX_CONNECTIONS="1")
    dist.init_process_group("gloo", rank=0, world_size=1)
    torch.cuda.synchronize = lambda *a, **k: None
    torch.cuda.current_device = lambda: "cpu"
    from megatron.core import parallel_state
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
    legacy = os.environ.get("LEGACY_LOAD")  # a legacy-model checkpoint (torch format) to run instead
    if legacy:
        import megatron.legacy.model
        from megatron.core.enums import ModelType
        args.use_legacy_models, args.ckpt_format, args.model_type = True, "torch", ModelType.encoder_or_decoder
        args.seq_length = 16  # the legacy model builds its RoPE table for exactly seq_length positions
        # Its LayerNorm calls Apex's fused kernel; torch's layer_norm is the same function.
        import types
        import megatron.legacy.model.fused_layer_norm as fused_layer_norm
        sys.modules.setdefault("fused_layer_norm_cuda", types.ModuleType("fused_layer_norm_cuda"))
        fused_layer_norm.fused_layer_norm_affine = (
            lambda x, w, b, shape, eps: torch.nn.functional.layer_norm(x, shape, w, b, eps))
        model = megatron.legacy.model.GPTModel(config, num_tokentypes=0, parallel_output=True,
                                               pre_process=True, post_process=True)
    else:
        model = gen.build_model(args, config, experts, [f for f in extra if f != "--gpt-base"])
    model = model.to(torch.bfloat16)

    def read_metadata(tracker):
        with open(tracker) as f:
            return int(f.read().strip()), False

    checkpointing.read_metadata = read_metadata
    args.load, args.no_load_optim, args.no_load_rng, args.finetune = legacy or os.path.join(fixture, "torch_dist"), True, True, True
    checkpointing.load_checkpoint([model], None, None, strict=True)
    # Forward only: float64, so that the reference is Megatron's math without rounding (its
    # own fp32 run strays up to 7e-4 from it on these saturated models, ours 2e-4).
    model = model.float() if steps or os.environ.get("F32") else model.double()
    # No dropout, so the model-parallel CUDA RNG Megatron forks around it is not needed.
    import contextlib
    from megatron.core.tensor_parallel.random import get_cuda_rng_tracker
    get_cuda_rng_tracker().fork = lambda *a, **k: contextlib.nullcontext()
    model.config.params_dtype = torch.float32

    def batch(seed, b=2, s=16):
        g = torch.Generator().manual_seed(seed)
        tokens = torch.randint(0, 120, (b, s + 1), generator=g)
        inputs, labels = tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()
        position_ids = torch.arange(s).unsqueeze(0).expand(b, s)
        mask = torch.triu(torch.ones(s, s, dtype=torch.bool), diagonal=1).view(1, 1, s, s)
        return inputs, labels, position_ids, mask

    if not steps:
        inputs, labels, position_ids, mask = batch(7)
        if os.environ.get("RESET"):  # documents packed: EOD (7) ends some, masks and positions reset
            from megatron.core.datasets.gpt_dataset import _get_ltor_masks_and_position_ids
            inputs[0, 5], inputs[1, 2], inputs[1, 11] = 7, 7, 7
            rows = [_get_ltor_masks_and_position_ids(r, 7, True, True, False, True) for r in inputs]
            mask = torch.stack([m for m, _, _ in rows])
            position_ids = torch.stack([p for _, _, p in rows])
        per_token = model(inputs, position_ids, mask, labels=labels)
        loss = per_token.double().mean()
        loss.backward()
        grads = {n: p.grad.detach().float().clone() for n, p in model.named_parameters() if p.grad is not None}
        torch.save({"tokens": inputs, "labels": labels, "loss": loss.item(), "grads": grads}, out)
        print("loss", loss.item(), "grads", len(grads))
        return

    gen.keep_optimizer_on_cpu()
    # clip_grad_by_total_norm_fp32 asserts CUDA gradients; the same scaling on the CPU:
    import megatron.core.optimizer.clip_grads as clip_grads
    import megatron.core.optimizer.optimizer as optimizer_mod

    def clip_by_total_norm(parameters, max_norm, total_norm, use_decoupled_grad=False):
        coeff = max_norm / (total_norm + 1.0e-6)
        if coeff < 1.0:
            for p in parameters:
                if p.grad is not None:
                    p.grad.detach().mul_(coeff)

    clip_grads.clip_grad_by_total_norm_fp32 = clip_by_total_norm
    optimizer_mod.clip_grad_by_total_norm_fp32 = clip_by_total_norm
    from megatron.core.distributed import DistributedDataParallel, DistributedDataParallelConfig
    from megatron.core.distributed import finalize_model_grads
    from megatron.core.optimizer import OptimizerConfig, get_megatron_optimizer
    model.config.calculate_per_token_loss = bool(os.environ.get("PER_TOKEN"))  # --calculate-per-token-loss
    ddp = DistributedDataParallel(model.config, DistributedDataParallelConfig(grad_reduce_in_fp32=True), model)
    opt = get_megatron_optimizer(OptimizerConfig(optimizer="adam", lr=1e-3, min_lr=1e-3, weight_decay=0.1,
                                                 adam_beta1=0.9, adam_beta2=0.95, adam_eps=1e-8, clip_grad=1.0,
                                                 bf16=False, fp16=False, params_dtype=torch.float32,
                                                 decoupled_lr=float(os.environ["DECOUPLED_LR"]) if "DECOUPLED_LR" in os.environ else None),
                                 [ddp])
    # The scheduler sets each group's lr and weight decay (× its wd_mult: 0 for biases and
    # 1-D parameters), as in training: constant lr 1e-3 and weight decay 0.1.
    from megatron.core.optimizer_param_scheduler import OptimizerParamScheduler
    sched = OptimizerParamScheduler(opt, init_lr=1e-3, max_lr=1e-3, min_lr=1e-3, lr_warmup_steps=0,
                                    lr_decay_steps=100, lr_decay_style="constant", start_wd=0.1, end_wd=0.1,
                                    wd_incr_steps=100, wd_incr_style="constant")
    micro = int(os.environ.get("MICRO", "1"))
    per_token = bool(os.environ.get("PER_TOKEN"))
    record = {"tokens": [], "labels": [], "loss_mask": [], "loss": [], "grad_norm": []}
    for i in range(steps):
        ddp.zero_grad_buffer()
        opt.zero_grad()
        loss_sum, tokens = 0.0, 0
        for j in range(micro):  # microbatch j of step i: batch 7 + i·micro + j
            inputs, labels, position_ids, mask = batch(7 + i * micro + j)
            loss_mask = torch.ones_like(labels, dtype=torch.float)
            if j % 2 == 1:  # fewer counted tokens: the per-token loss weighs them differently
                loss_mask[1, 8:] = 0
            per = ddp(inputs, position_ids, mask, labels=labels).float()
            mb_sum, mb_tokens = (per * loss_mask).sum(), loss_mask.sum()
            # pretrain_gpt's loss_func, and the schedule's division by the microbatches
            (mb_sum if per_token else mb_sum / mb_tokens / micro).backward()
            loss_sum, tokens = loss_sum + mb_sum.item(), tokens + int(mb_tokens.item())
            for k, v in (("tokens", inputs), ("labels", labels), ("loss_mask", loss_mask)):
                record[k].append(v)
        # the grad sync, DeepSeek-V3's expert-bias update and the per-token scaling
        finalize_model_grads([ddp], num_tokens=torch.tensor(tokens) if per_token else None)
        ok, norm, _ = opt.step()
        assert ok
        sched.step(increment=inputs.shape[0] * micro)
        record["loss"].append(loss_sum / tokens)
        record["grad_norm"].append(float(norm))
    record["params"] = {n: p.detach().float().clone() for n, p in model.named_parameters()}
    record["params"].update({n: b.detach().float().clone() for n, b in model.named_buffers() if n.endswith("expert_bias")})
    torch.save(record, out)
    print("losses", record["loss"], "grad norms", record["grad_norm"])


if __name__ == "__main__":
    main()
