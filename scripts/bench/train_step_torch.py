#!/usr/bin/env python3
"""PyTorch peer for the CPU training-step benchmark: the same Llama shape as gomegatron's
bench-llama preset (RMSNorm, rotate-half RoPE, SwiGLU, untied output, causal attention,
AdamW), trained on random tokens. Prints one JSON line with tokens/s."""
import argparse, json, math, time
import torch
import torch.nn as nn
import torch.nn.functional as F

p = argparse.ArgumentParser()
p.add_argument("--layers", type=int, default=6)
p.add_argument("--hidden", type=int, default=512)
p.add_argument("--heads", type=int, default=8)
p.add_argument("--ffn", type=int, default=1376)
p.add_argument("--vocab", type=int, default=32000)
p.add_argument("--seq", type=int, default=256)
p.add_argument("--mbs", type=int, default=4)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--warmup", type=int, default=2)
p.add_argument("--iters", type=int, default=5)
a = p.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(0)

class RMSNorm(nn.Module):
    def __init__(s, h, eps=1e-5):
        super().__init__(); s.w = nn.Parameter(torch.ones(h)); s.eps = eps
    def forward(s, x):
        return s.w * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + s.eps)

def rope_tables(seq, d, base=10000.0):
    inv = 1.0 / (base ** (torch.arange(0, d, 2).float() / d))
    f = torch.outer(torch.arange(seq).float(), inv)
    e = torch.cat((f, f), -1)
    return e.cos(), e.sin()

def rot_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), -1)

class Block(nn.Module):
    def __init__(s):
        super().__init__()
        h, d = a.hidden, a.hidden // a.heads
        s.n1, s.n2 = RMSNorm(h), RMSNorm(h)
        s.qkv = nn.Linear(h, 3 * h, bias=False); s.o = nn.Linear(h, h, bias=False)
        s.gate_up = nn.Linear(h, 2 * a.ffn, bias=False); s.down = nn.Linear(a.ffn, h, bias=False)
    def forward(s, x, cos, sin, mask):
        b, t, h = x.shape; nh, d = a.heads, h // a.heads
        q, k, v = s.qkv(s.n1(x)).view(b, t, 3, nh, d).permute(2, 0, 3, 1, 4)
        q = q * cos + rot_half(q) * sin; k = k * cos + rot_half(k) * sin
        att = (q @ k.transpose(-1, -2)) / math.sqrt(d) + mask
        y = (att.softmax(-1) @ v).transpose(1, 2).reshape(b, t, h)
        x = x + s.o(y)
        g, u = s.gate_up(s.n2(x)).chunk(2, -1)
        return x + s.down(F.silu(g) * u)

class Model(nn.Module):
    def __init__(s):
        super().__init__()
        s.emb = nn.Embedding(a.vocab, a.hidden)
        s.blocks = nn.ModuleList([Block() for _ in range(a.layers)])
        s.norm = RMSNorm(a.hidden); s.out = nn.Linear(a.hidden, a.vocab, bias=False)
        cos, sin = rope_tables(a.seq, a.hidden // a.heads)
        s.register_buffer("cos", cos); s.register_buffer("sin", sin)
        s.register_buffer("mask", torch.full((a.seq, a.seq), float("-inf")).triu(1))
    def forward(s, ids, labels):
        x = s.emb(ids)
        for blk in s.blocks:
            x = blk(x, s.cos, s.sin, s.mask)
        logits = s.out(s.norm(x))
        return F.cross_entropy(logits.view(-1, a.vocab), labels.view(-1))

m = Model()
opt = torch.optim.AdamW(m.parameters(), lr=1e-4, weight_decay=0.01)
ids = torch.randint(0, a.vocab, (a.mbs, a.seq)); labels = torch.randint(0, a.vocab, (a.mbs, a.seq))
def step():
    opt.zero_grad(set_to_none=False)
    loss = m(ids, labels); loss.backward()
    torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0); opt.step()
    return loss.item()
for _ in range(a.warmup):
    step()
best = float("inf")
for _ in range(a.iters):
    t0 = time.perf_counter(); step(); best = min(best, time.perf_counter() - t0)
print(json.dumps({"peer": "pytorch " + torch.__version__, "threads": a.threads,
                  "step_s": best, "tokens_per_s": a.mbs * a.seq / best,
                  "params": sum(p.numel() for p in m.parameters())}))
