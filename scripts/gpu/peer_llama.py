#!/usr/bin/env python3
"""PyTorch peer of check.sh's 1B Llama training benchmark: transformers' LlamaForCausalLM
(SDPA attention) with Hugging Face Trainer's --bf16 recipe (fp32 weights, torch.autocast
bf16, fused AdamW), on random tokens, with the same model, sequence length, micro-batch
and gradient accumulation as the golaunch run.

Prints `peer-llama ms_per_iter=<median> tokens_per_s=<…> params=<…>` after timing
--iters iterations that follow --warmup untimed ones, each synchronised with CUDA.
"""
import argparse
import statistics
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--layers", type=int, default=22)
    p.add_argument("--hidden", type=int, default=2048)
    p.add_argument("--ffn", type=int, default=5632)
    p.add_argument("--heads", type=int, default=32)
    p.add_argument("--kv-heads", type=int, default=4)
    p.add_argument("--vocab", type=int, default=32000)
    p.add_argument("--seq", type=int, default=2048)
    p.add_argument("--mbs", type=int, default=2)
    p.add_argument("--accum", type=int, default=4)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--iters", type=int, default=5)
    a = p.parse_args()

    cfg = LlamaConfig(hidden_size=a.hidden, intermediate_size=a.ffn, num_hidden_layers=a.layers,
                      num_attention_heads=a.heads, num_key_value_heads=a.kv_heads, vocab_size=a.vocab,
                      max_position_embeddings=a.seq, rms_norm_eps=1e-5, tie_word_embeddings=False,
                      attention_dropout=0.0)
    cfg._attn_implementation = "sdpa"
    torch.manual_seed(1234)
    model = LlamaForCausalLM(cfg).cuda().train()
    params = sum(x.numel() for x in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01, fused=True)
    gen = torch.Generator(device="cuda").manual_seed(0)

    def iteration():
        opt.zero_grad(set_to_none=True)
        for _ in range(a.accum):
            ids = torch.randint(0, a.vocab, (a.mbs, a.seq), device="cuda", generator=gen)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = model(input_ids=ids, labels=ids).loss / a.accum
            loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    for _ in range(a.warmup):
        iteration()
    torch.cuda.synchronize()
    times = []
    for _ in range(a.iters):
        t0 = time.perf_counter()
        iteration()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    ms = statistics.median(times) * 1e3
    tokens = a.mbs * a.accum * a.seq
    print(f"peer-llama ms_per_iter={ms:.1f} tokens_per_s={tokens / ms * 1e3:.0f} params={params} "
          f"max_mem_gib={torch.cuda.max_memory_allocated() / 2**30:.1f}", flush=True)


if __name__ == "__main__":
    main()
