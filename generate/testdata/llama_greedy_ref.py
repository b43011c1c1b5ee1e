# Independent reference for generate/generate_test.go: greedy decoding of a Hugging Face
# Llama checkpoint (config.json + model.safetensors) written from the Llama architecture
# as transformers' modeling_llama computes it (RMSNorm, rotate-half RoPE, grouped-query
# attention, SwiGLU MLP, untied lm_head), in float64 torch, recomputing the whole prefix
# at every step. Reads {"dir": …, "prompts": [[ids…]…], "steps": [n…]} on stdin and prints
# the prompts with their greedy continuations as JSON.
import json
import struct
import sys

import numpy as np
import torch

req = json.load(sys.stdin)
cfg = json.load(open(req["dir"] + "/config.json"))
raw = open(req["dir"] + "/model.safetensors", "rb").read()
(hlen,) = struct.unpack("<Q", raw[:8])
header = json.loads(raw[8:8 + hlen])
W = {}
for name, info in header.items():
    if name == "__metadata__":
        continue
    assert info["dtype"] == "F32", info
    a, b = info["data_offsets"]
    arr = np.frombuffer(raw[8 + hlen + a:8 + hlen + b], dtype="<f4").reshape(info["shape"])
    W[name] = torch.from_numpy(arr.copy()).double()

H = cfg["num_attention_heads"]
G = cfg.get("num_key_value_heads", H)
hid = cfg["hidden_size"]
d = hid // H
eps = cfg["rms_norm_eps"]
theta = cfg.get("rope_theta", 10000.0)
L = cfg["num_hidden_layers"]


def rms(x, w):
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def rot(x):
    return torch.cat((-x[..., d // 2:], x[..., :d // 2]), dim=-1)


def logits(ids):
    s = len(ids)
    h = W["model.embed_tokens.weight"][torch.tensor(ids)]
    inv = 1.0 / (theta ** (torch.arange(0, d, 2, dtype=torch.float64) / d))
    f = torch.outer(torch.arange(s, dtype=torch.float64), inv)
    emb = torch.cat((f, f), dim=-1)
    cos, sin = emb.cos(), emb.sin()
    mask = torch.full((s, s), float("-inf"), dtype=torch.float64).triu(1)
    for i in range(L):
        p = "model.layers.%d." % i
        x = rms(h, W[p + "input_layernorm.weight"])
        q = (x @ W[p + "self_attn.q_proj.weight"].T).view(s, H, d).transpose(0, 1)
        k = (x @ W[p + "self_attn.k_proj.weight"].T).view(s, G, d).transpose(0, 1)
        v = (x @ W[p + "self_attn.v_proj.weight"].T).view(s, G, d).transpose(0, 1)
        q = q * cos + rot(q) * sin
        k = k * cos + rot(k) * sin
        k = k.repeat_interleave(H // G, dim=0)
        v = v.repeat_interleave(H // G, dim=0)
        a = torch.softmax(q @ k.transpose(1, 2) / d ** 0.5 + mask, dim=-1) @ v
        h = h + a.transpose(0, 1).reshape(s, hid) @ W[p + "self_attn.o_proj.weight"].T
        x = rms(h, W[p + "post_attention_layernorm.weight"])
        g = x @ W[p + "mlp.gate_proj.weight"].T
        u = x @ W[p + "mlp.up_proj.weight"].T
        h = h + (torch.nn.functional.silu(g) * u) @ W[p + "mlp.down_proj.weight"].T
    h = rms(h, W["model.norm.weight"])
    return h[-1] @ W["lm_head.weight"].T


out = []
for ids, n in zip(req["prompts"], req["steps"]):
    ids = list(ids)
    for _ in range(n):
        ids.append(int(torch.argmax(logits(ids))))
    out.append(ids)
print(json.dumps(out))
