# A float64 transcription, in plain torch, of Hugging Face transformers' forward pass for
# the Llama family with Mixtral's sparse MoE block (LlamaForCausalLM, MistralForCausalLM,
# MixtralForCausalLM: eager attention, default, linear or Llama 3.1 RoPE, no caching), and of
# Baichuan's remote
# code (W_pack, RoPE for Baichuan-7B and Baichuan 2-7B, ALiBi for the 13B models, Baichuan
# 2's NormHead; from baichuan-inc's modeling_baichuan.py) and of Qwen (1.0)'s (QWenLMHeadModel:
# biased c_attn, partial rotary, a1·silu(a2) MLP; from Qwen's modeling_qwen.py, within
# seq_length, where dynamic NTK and logn attention do nothing), and of Qwen3
# (Qwen3ForCausalLM: Qwen3RMSNorm over each head's queries and keys before RoPE, head_dim
# 128 unless set; from models/qwen3/modeling_qwen3.py) and Qwen3-MoE (Qwen3MoeForCausalLM:
# Qwen3's attention, mlp.gate and mlp.experts.E.{gate,up,down}_proj, top-k of the softmax
# renormalised when norm_topk_prob) and Qwen1.5/Qwen2-MoE (Qwen2MoeForCausalLM, from
# models/qwen2_moe/modeling_qwen2_moe.py: Qwen2's biased q/k/v, the same experts, plus
# shared_expert(x)·sigmoid(shared_expert_gate(x))), DeepSeek-MoE (its remote
# DeepseekForCausalLM: the same experts, ungated mlp.shared_experts, dense layers below
# first_k_dense_replace), DeepSeek-V2 (its remote DeepseekV2ForCausalLM, modeling_deepseek.py:
# DeepSeek-MoE's MLP blocks with multi-latent attention — queries from q_proj or through the
# q_a_proj → q_a_layernorm → q_b_proj latent, keys and values from kv_a_proj_with_mqa's latent
# through kv_a_layernorm and kv_b_proj, one rotary key part k_pe shared by the heads, RoPE
# after de-interleaving the rotary channels, DeepseekV2YarnRotaryEmbedding's YaRN with cos and
# sin times m(mscale)/m(mscale_all_dim) and the softmax scale times m(mscale_all_dim)²),
# DeepSeek-V3 (transformers' DeepseekV3ForCausalLM, models/deepseek_v3/modeling_deepseek_v3.py,
# as DeepSeek's remote MoEGate with topk_method noaux_tc: DeepSeek-V2's attention with
# rope_interleave true and transformers' YaRN, whose factor is max_position_embeddings /
# original_max_position_embeddings; the router's sigmoid scores plus
# mlp.gate.e_score_correction_bias choose n_group groups' best topk_group by the sum of
# each group's top 2, the other groups masked to 0, then the top k; the weights are the
# sigmoid scores there, renormalised with norm_topk_prob, times routed_scaling_factor) and
# StarCoder 2 (Starcoder2ForCausalLM,
# from models/starcoder2/modeling_starcoder2.py: LayerNorm with biases, biased q/k/v/o, a
# GeLU MLP c_fc → c_proj, tanh-approximated for gelu_pytorch_tanh; tied by default), used by
# InternLM2's remote code (InternLM2ForCausalLM: Llama's layers under its names, the QKV
# fused as attention.wqkv and split per KV group by rearrange "(h gs d)": q heads g·r … g·r+r−1,
# then k_g and v_g), and GLM-4 (GlmForCausalLM, models/glm/modeling_glm.py: q/k/v biases, a
# fused gate_up_proj, RoPE on the first partial_rotary_factor of each head rotating the
# pairs (2i, 2i+1)) with ChatGLM2/3's remote code (ChatGLMForConditionalGeneration: the same
# layers as transformer.encoder.layers, query_key_value = [q | k | v] with multi-query
# groups, RotaryEmbedding(kv_channels // 2) at base 10000·rope_ratio), used by ckpt/hf's and
# tools/convert's tests to check that a loaded or converted checkpoint computes what the
# Hugging Face model does.
# Written from the transformers sources (models/mixtral/modeling_mixtral.py,
# configuration_mixtral.py); the tests first check it against transformers' own float64
# logits for the llama fixtures. The Baichuan and Qwen parts follow their remote modeling
# code as described (no fixture of theirs exists here), and only their Llama-shaped
# special cases are checked against transformers (ckpt/hf's TestBaichuanIsLlamaWithWPack,
# TestQwenIsLlamaWithCAttn).
#
#   python3 hf_forward.py HF_DIR IDS_JSON [COLS]  →  {"loss": …, "logits": [B][S][V]} on stdout
#
# (with COLS, only each row's first COLS logits are printed; the loss uses them all).
#
# HF_DIR holds config.json and float32 model*.safetensors; IDS_JSON is a [B][S] token list. The
# loss is transformers' shifted mean cross-entropy (labels = the inputs).
import glob
import json
import math
import os
import struct
import sys

import torch


def read_safetensors(folder):
    out = {}
    for path in sorted(glob.glob(os.path.join(folder, "model*.safetensors"))):
        with open(path, "rb") as f:
            raw = f.read()
        n = struct.unpack("<Q", raw[:8])[0]
        header = json.loads(raw[8:8 + n])
        for name, info in header.items():
            if name == "__metadata__":
                continue
            if info["dtype"] != "F32":
                raise SystemExit(f"{path}: {name} is {info['dtype']}, want F32")
            lo, hi = info["data_offsets"]
            buf = bytearray(raw[8 + n + lo:8 + n + hi])
            out[name] = torch.frombuffer(buf, dtype=torch.float32).reshape(info["shape"]).double()
    return out


def falcon(cfg, w, ids):
    """FalconForCausalLM (models/falcon/modeling_falcon.py, eager attention): fused
    query_key_value in the multi-query [q heads, k, v], per-head [q, k, v] or, with
    new_decoder_architecture, per-KV-group [q…, k, v] layout; rotate-half RoPE; exact GeLU;
    parallel attention reading input_layernorm (ln_attn and ln_mlp with the new
    architecture), or a post-attention layernorm; ln_f; lm_head tied unless said."""
    hidden, heads = cfg["hidden_size"], cfg["num_attention_heads"]
    head_dim = hidden // heads
    new_arch = cfg.get("new_decoder_architecture", False)
    kv_heads = cfg.get("num_kv_heads") if new_arch else (1 if cfg.get("multi_query", True) else heads)
    parallel = cfg.get("parallel_attn", True)
    two_ln = new_arch and (cfg.get("num_ln_in_parallel_attn") or 2) == 2
    eps = cfg["layer_norm_epsilon"]
    theta = cfg.get("rope_theta", 10000.0)
    batch, seq = ids.shape

    def ln(x, name):
        return torch.nn.functional.layer_norm(x, (hidden,), w[name + ".weight"], w[name + ".bias"], eps)

    def lin(x, name):
        y = x @ w[name + ".weight"].T
        return y + w[name + ".bias"] if name + ".bias" in w else y

    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
    angles = torch.outer(torch.arange(seq, dtype=torch.float64), inv_freq)
    angles = torch.cat((angles, angles), dim=-1)
    cos, sin = angles.cos(), angles.sin()

    def rotate(x):
        half = head_dim // 2
        return x * cos + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin

    mask = torch.full((seq, seq), float("-inf"), dtype=torch.float64).triu(1)

    def attention(x, p):
        qkv = lin(x, p + "query_key_value").view(batch, seq, kv_heads, heads // kv_heads + 2, head_dim)
        q = qkv[:, :, :, :-2].reshape(batch, seq, heads, head_dim).transpose(1, 2)
        k = qkv[:, :, :, -2].transpose(1, 2).repeat_interleave(heads // kv_heads, dim=1)
        v = qkv[:, :, :, -1].transpose(1, 2).repeat_interleave(heads // kv_heads, dim=1)
        q, k = rotate(q), rotate(k)
        out = torch.softmax(q @ k.transpose(2, 3) / math.sqrt(head_dim) + mask, dim=-1) @ v
        return lin(out.transpose(1, 2).reshape(batch, seq, hidden), p + "dense")

    def mlp(x, p):
        return lin(torch.nn.functional.gelu(lin(x, p + "dense_h_to_4h")), p + "dense_4h_to_h")

    x = w["transformer.word_embeddings.weight"][ids]
    for layer in range(cfg.get("num_hidden_layers") or cfg["n_layer"]):
        p = f"transformer.h.{layer}."
        a_in = ln(x, p + ("ln_attn" if two_ln else "input_layernorm"))
        a = attention(a_in, p + "self_attention.")
        if parallel:
            m_in = ln(x, p + "ln_mlp") if two_ln else a_in
            x = x + a + mlp(m_in, p + "mlp.")
        else:
            x = x + a
            x = x + mlp(ln(x, p + "post_attention_layernorm"), p + "mlp.")
    x = ln(x, "transformer.ln_f")
    head = w["lm_head.weight"] if "lm_head.weight" in w else w["transformer.word_embeddings.weight"]
    return x @ head.T


def internlm2_as_llama(cfg, w):
    """InternLM2's tensors under Llama's names, wqkv split as its attention splits it."""
    heads, kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    head_dim = cfg["hidden_size"] // heads
    ren = {"model.tok_embeddings.": "model.embed_tokens.", "output.weight": "lm_head.weight", ".attention_norm.": ".input_layernorm.",
           ".ffn_norm.": ".post_attention_layernorm.", ".attention.wo.": ".self_attn.o_proj.", ".feed_forward.w1.": ".mlp.gate_proj.",
           ".feed_forward.w3.": ".mlp.up_proj.", ".feed_forward.w2.": ".mlp.down_proj."}
    out = {}
    for name, t in w.items():
        if name.endswith(".attention.wqkv.weight"):
            p = name[: -len("attention.wqkv.weight")] + "self_attn."
            g = t.view(kv, heads // kv + 2, head_dim, -1)
            out[p + "q_proj.weight"] = g[:, :-2].reshape(heads * head_dim, -1)
            out[p + "k_proj.weight"] = g[:, -2].reshape(kv * head_dim, -1)
            out[p + "v_proj.weight"] = g[:, -1].reshape(kv * head_dim, -1)
            continue
        for a, b in ren.items():
            name = name.replace(a, b)
        out[name] = t
    return out


def chatglm_as_glm(cfg, w):
    """ChatGLM's config and tensors as transformers' GLM: [q | k | v] split, its names."""
    heads, hn = cfg["num_attention_heads"], cfg["kv_channels"]
    groups = cfg["multi_query_group_num"] if cfg.get("multi_query_attention") else heads
    glm = {"model_type": "glm", "hidden_size": cfg["hidden_size"], "num_attention_heads": heads, "num_key_value_heads": groups,
           "head_dim": hn, "num_hidden_layers": cfg["num_layers"], "rms_norm_eps": cfg["layernorm_epsilon"],
           "rope_theta": 10000.0 * cfg.get("rope_ratio", 1), "partial_rotary_factor": 0.5, "tie_word_embeddings": False}
    ren = {"transformer.embedding.word_embeddings.": "model.embed_tokens.", "transformer.encoder.final_layernorm.": "model.norm.",
           "transformer.output_layer.": "lm_head.", "transformer.encoder.layers.": "model.layers.", ".self_attention.dense.": ".self_attn.o_proj.",
           ".mlp.dense_h_to_4h.": ".mlp.gate_up_proj.", ".mlp.dense_4h_to_h.": ".mlp.down_proj."}
    out = {}
    for name, t in w.items():
        for a, b in ren.items():
            name = name.replace(a, b)
        if ".self_attention.query_key_value." in name:
            p, kind = name.split(".self_attention.query_key_value.")
            q, k, v = t.split([heads * hn, groups * hn, groups * hn], dim=0)
            for proj, part in (("q_proj", q), ("k_proj", k), ("v_proj", v)):
                out[f"{p}.self_attn.{proj}.{kind}"] = part
            continue
        out[name] = t
    return glm, out


def main():
    folder, ids_json = sys.argv[1], sys.argv[2]
    with open(os.path.join(folder, "config.json")) as f:
        cfg = json.load(f)
    w = read_safetensors(folder)
    ids = torch.tensor(json.loads(ids_json), dtype=torch.long)
    if cfg["model_type"] == "internlm2":
        w = internlm2_as_llama(cfg, w)
    if cfg["model_type"] == "chatglm":
        cfg, w = chatglm_as_glm(cfg, w)
    phi3 = cfg["model_type"] == "phi3"
    if phi3:  # Phi3ForCausalLM: qkv_proj = [q | k | v] (split here), gate_up_proj as GLM's
        heads, hd = cfg["num_attention_heads"], cfg["hidden_size"] // cfg["num_attention_heads"]
        kv = cfg.get("num_key_value_heads") or heads
        for name in [n for n in w if n.endswith(".self_attn.qkv_proj.weight")]:
            p = name[: -len("qkv_proj.weight")]
            w[p + "q_proj.weight"], w[p + "k_proj.weight"], w[p + "v_proj.weight"] = w.pop(name).split([heads * hd, kv * hd, kv * hd])
    if cfg["model_type"] == "falcon":
        logits = falcon(cfg, w, ids)
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))
        if len(sys.argv) > 3:
            logits = logits[..., : int(sys.argv[3])]
        json.dump({"loss": loss.item(), "logits": logits.tolist()}, sys.stdout)
        return
    qwen3_moe = cfg["model_type"] == "qwen3_moe"
    qwen2_moe = cfg["model_type"] == "qwen2_moe"
    deepseek_v3 = cfg["model_type"] == "deepseek_v3"
    deepseek_v2 = cfg["model_type"] == "deepseek_v2"
    mla = deepseek_v2 or deepseek_v3  # multi-latent attention
    deepseek = cfg["model_type"] in ("deepseek", "deepseek_v2", "deepseek_v3")
    qwen_moe = qwen3_moe or qwen2_moe or deepseek  # mlp.gate, mlp.experts.E.*_proj
    moe = cfg["model_type"] == "mixtral" or qwen_moe
    baichuan = cfg["model_type"] == "baichuan"
    # Baichuan-7B's code (BaiChuanForCausalLM) and Baichuan 2-7B's use RoPE, the 13B models'
    # ALiBi (BaichuanForCausalLM at another hidden size than 4096); Baichuan 2 (vocabulary
    # 125696) normalises lm_head's rows.
    alibi = baichuan and "BaiChuanForCausalLM" not in cfg.get("architectures", []) and cfg["hidden_size"] != 4096
    norm_head = baichuan and cfg["vocab_size"] == 125696
    qwen = cfg["model_type"] == "qwen"
    qwen3 = cfg["model_type"] in ("qwen3", "qwen3_moe")
    starcoder2 = cfg["model_type"] == "starcoder2"
    glm = cfg["model_type"] == "glm"  # ChatGLM is translated to it above
    hidden = cfg["hidden_size"]
    heads = cfg["num_attention_heads"]
    kv_heads = cfg.get("num_key_value_heads") or heads
    head_dim = cfg.get("head_dim") or cfg.get("kv_channels") or (128 if cfg["model_type"] == "qwen3" else hidden // heads)
    eps = cfg["layer_norm_epsilon"] if qwen else cfg.get("norm_epsilon", 1e-5) if starcoder2 else cfg["rms_norm_eps"]
    theta = cfg.get("rotary_emb_base", 10000.0) if qwen else cfg.get("rope_theta", 1e6 if moe and not deepseek else 10000.0)
    rot_dim = cfg["qk_rope_head_dim"] if mla else int(head_dim * cfg.get("rotary_pct", 1.0)) if qwen else int(head_dim * cfg.get("partial_rotary_factor", 0.5)) if glm else \
        int(head_dim * cfg.get("partial_rotary_factor", 1.0)) if phi3 else head_dim
    window = cfg.get("sliding_window") if cfg["model_type"] in ("mistral", "mixtral", "starcoder2", "phi3") else None
    tied = cfg.get("tie_word_embeddings", starcoder2)
    batch, seq = ids.shape

    def rms_norm(x, weight):
        return weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))

    def norm(x, name):  # the layers' and the final norm: StarCoder 2's LayerNorm, else RMSNorm
        if starcoder2:
            return torch.nn.functional.layer_norm(x, (hidden,), w[name + ".weight"], w[name + ".bias"], eps)
        return rms_norm(x, w[name + ".weight"])

    def linear(x, name):
        return x @ w[name].T

    def biased(x, name):  # a projection with its bias when the checkpoint has one (Qwen2's q, k, v)
        y = linear(x, name + ".weight")
        return y + w[name + ".bias"] if name + ".bias" in w else y

    # Rotary embedding: frequencies theta^(-2i/d), the two halves rotated together; linear
    # rope_scaling divides the positions by its factor (the linear-scaling rotary embedding).
    inv_freq = 1.0 / (theta ** (torch.arange(0, rot_dim, 2, dtype=torch.float64) / rot_dim))
    scaling = cfg.get("rope_scaling") or {}
    kind = scaling.get("type", scaling.get("rope_type"))
    factor = scaling.get("factor", 1.0) if kind == "linear" else 1.0
    if kind == "llama3":  # Llama 3.1: each frequency rescaled by its wavelength band
        f, low, high = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
        old = scaling["original_max_position_embeddings"]
        wavelen = 2 * math.pi / inv_freq
        smooth = (old / wavelen - low) / (high - low)
        inv_freq = torch.where(wavelen < old / high, inv_freq,
                               torch.where(wavelen > old / low, inv_freq / f, (1 - smooth) * inv_freq / f + smooth * inv_freq))
    attention_factor = 1.0
    if kind == "yarn":  # _compute_yarn_parameters: a ramp between θ/factor and θ, and an mscale on cos and sin
        f = scaling["factor"]
        old = scaling.get("original_max_position_embeddings", 4096) if deepseek_v2 else scaling["original_max_position_embeddings"]
        if deepseek_v3:  # transformers: the factor is the ratio of the lengths when the original one is stated
            old = scaling.get("original_max_position_embeddings", cfg["max_position_embeddings"])
            if "original_max_position_embeddings" in scaling:
                f = cfg["max_position_embeddings"] / old
        beta_fast, beta_slow = scaling.get("beta_fast", 32), scaling.get("beta_slow", 1)

        def correction_dim(rotations):
            return (rot_dim * math.log(old / (rotations * 2 * math.pi))) / (2 * math.log(theta))
        low, high = correction_dim(beta_fast), correction_dim(beta_slow)
        if scaling.get("truncate", True):
            low, high = math.floor(low), math.ceil(high)
        low, high = max(low, 0), min(high, rot_dim - 1)
        if low == high:
            high += 0.001
        ramp = torch.clamp((torch.arange(rot_dim // 2, dtype=torch.float64) - low) / (high - low), 0, 1)
        inv_freq = inv_freq / f * ramp + inv_freq * (1 - ramp)

        def m(scale, mscale=1.0):
            return 1.0 if scale <= 1 else 0.1 * mscale * math.log(scale) + 1.0
        ms, msa = scaling.get("mscale"), scaling.get("mscale_all_dim")
        attention_factor = m(f, ms) / m(f, msa) if ms and msa else m(f)
        if deepseek_v2:  # DeepseekV2YarnRotaryEmbedding's _mscale, with its defaults mscale 1, mscale_all_dim 0
            attention_factor = m(f, scaling.get("mscale", 1)) / m(f, scaling.get("mscale_all_dim", 0))
    angles = torch.outer(torch.arange(seq, dtype=torch.float64) / factor, inv_freq)
    angles = angles.repeat_interleave(2, dim=-1) if glm else torch.cat((angles, angles), dim=-1)
    cos, sin = angles.cos() * attention_factor, angles.sin() * attention_factor

    def rotate(x):  # the first rot_dim channels (Qwen's rotary_pct), the rest passed through
        x, rest = x[..., :rot_dim], x[..., rot_dim:]
        if glm:  # the pairs (2i, 2i+1): GLM's interleaved rotate_half
            return torch.cat((x * cos + torch.stack((-x[..., 1::2], x[..., 0::2]), dim=-1).flatten(-2) * sin, rest), dim=-1)
        half = x.shape[-1] // 2
        return torch.cat((x * cos + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin, rest), dim=-1)

    # Key j is visible to query i when j ≤ i and, with a sliding window W, i - j < W.
    i = torch.arange(seq)[:, None]
    j = torch.arange(seq)[None, :]
    visible = j <= i
    if window is not None:
        visible = visible & (i - j < window)
    mask = torch.zeros(seq, seq, dtype=torch.float64).masked_fill(~visible, float("-inf"))
    if alibi:
        # Baichuan's _get_interleave slopes; the bias is slope·(key position) with the causal
        # mask (a row's constant shift does not change its softmax).
        def interleave(n):
            def power_of_2(n):
                start = 2 ** (-(2 ** -(math.log2(n) - 3)))
                return [start * start ** k for k in range(n)]
            if math.log2(n).is_integer():
                return power_of_2(n)
            closest = 2 ** math.floor(math.log2(n))
            return power_of_2(closest) + interleave(2 * closest)[0::2][: n - closest]
        slopes = torch.tensor(interleave(heads), dtype=torch.float64)
        mask = mask + slopes[:, None, None] * torch.arange(seq, dtype=torch.float64)[None, None, :]

    def mla_attention(x, p):
        # DeepseekV2Attention (and V3's): H heads of dn + dr query/key channels (nope, then rope) and dv
        # value channels; the latents are RMSNorm'ed (eps rms_norm_eps).
        dn, dr, dv, rkv = cfg["qk_nope_head_dim"], cfg["qk_rope_head_dim"], cfg["v_head_dim"], cfg["kv_lora_rank"]
        if cfg.get("q_lora_rank") is None:
            q = linear(x, p + "q_proj.weight")
        else:
            q = linear(rms_norm(linear(x, p + "q_a_proj.weight"), w[p + "q_a_layernorm.weight"]), p + "q_b_proj.weight")
        q_nope, q_pe = q.view(batch, seq, heads, dn + dr).transpose(1, 2).split([dn, dr], dim=-1)
        compressed, k_pe = linear(x, p + "kv_a_proj_with_mqa.weight").split([rkv, dr], dim=-1)
        k_pe = k_pe.view(batch, seq, 1, dr).transpose(1, 2)
        kv = linear(rms_norm(compressed, w[p + "kv_a_layernorm.weight"]), p + "kv_b_proj.weight")
        k_nope, v = kv.view(batch, seq, heads, dn + dv).transpose(1, 2).split([dn, dv], dim=-1)

        def rope(t):  # apply_rotary_pos_emb: channels (0, 2, 4, …, 1, 3, 5, …), then rotate halves
            t = t.view(*t.shape[:-1], dr // 2, 2).transpose(-1, -2).reshape(t.shape)
            return rotate(t)
        q_pe, k_pe = rope(q_pe), rope(k_pe)
        query = torch.cat((q_nope, q_pe), dim=-1)
        key = torch.cat((k_nope, k_pe.expand(batch, heads, seq, dr)), dim=-1)
        scale = (dn + dr) ** -0.5
        if cfg.get("rope_scaling") and cfg["rope_scaling"].get("mscale_all_dim"):
            m_all = 0.1 * cfg["rope_scaling"]["mscale_all_dim"] * math.log(cfg["rope_scaling"]["factor"]) + 1.0 \
                if cfg["rope_scaling"]["factor"] > 1 else 1.0
            scale = scale * m_all * m_all
        out = torch.softmax(query @ key.transpose(2, 3) * scale + mask, dim=-1) @ v
        return linear(out.transpose(1, 2).reshape(batch, seq, heads * dv), p + "o_proj.weight")

    def attention(x, p):
        if mla:
            return mla_attention(x, p)
        if baichuan:  # W_pack: [q; k; v] rows, proj.unflatten(-1, (3, hidden))
            proj = linear(x, p + "W_pack.weight").unflatten(-1, (3, hidden))
            q, k, v = (proj[..., t, :].reshape(batch, seq, heads, head_dim).transpose(1, 2) for t in range(3))
        elif qwen:  # c_attn (biased): [q; k; v], each heads·kv_channels
            proj = linear(x, p + "c_attn.weight") + w[p + "c_attn.bias"]
            q, k, v = (t.reshape(batch, seq, heads, head_dim).transpose(1, 2) for t in proj.split(heads * head_dim, dim=-1))
        else:
            q = biased(x, p + "q_proj").view(batch, seq, heads, head_dim).transpose(1, 2)
            k = biased(x, p + "k_proj").view(batch, seq, kv_heads, head_dim).transpose(1, 2)
            v = biased(x, p + "v_proj").view(batch, seq, kv_heads, head_dim).transpose(1, 2)
        if qwen3:  # q_norm and k_norm: RMSNorm over head_dim, before RoPE
            q, k = rms_norm(q, w[p + "q_norm.weight"]), rms_norm(k, w[p + "k_norm.weight"])
        if not alibi:
            q, k = rotate(q), rotate(k)
        # Query head h reads key/value head h // (heads / kv_heads) (repeat_kv).
        k = k.repeat_interleave(heads // kv_heads, dim=1)
        v = v.repeat_interleave(heads // kv_heads, dim=1)
        scores = q @ k.transpose(2, 3) * head_dim ** -0.5 + mask
        out = torch.softmax(scores, dim=-1) @ v
        out = out.transpose(1, 2).reshape(batch, seq, heads * head_dim)
        return linear(out, p + "c_proj.weight") if qwen else biased(out, p + "o_proj")

    def swiglu(x, gate, up, down):
        return linear(torch.nn.functional.silu(linear(x, gate)) * linear(x, up), down)

    def sparse_moe(x, p):
        # MixtralSparseMoeBlock: softmax over all experts, the top k, renormalised to sum 1.
        flat = x.reshape(-1, hidden)
        k = cfg["num_experts_per_tok"]
        if deepseek_v3:  # DeepseekV3MoE.route_tokens_to_experts
            n_exp, n_group, topk_group = cfg["n_routed_experts"], cfg["n_group"], cfg["topk_group"]
            scores = torch.sigmoid(linear(flat, p + "gate.weight"))
            choice = scores + w[p + "gate.e_score_correction_bias"]
            group_scores = choice.view(-1, n_group, n_exp // n_group).topk(2, dim=-1)[0].sum(dim=-1)
            group_idx = torch.topk(group_scores, k=topk_group, dim=-1, sorted=False)[1]
            group_mask = torch.zeros_like(group_scores).scatter_(1, group_idx, 1)
            score_mask = group_mask.unsqueeze(-1).expand(-1, n_group, n_exp // n_group).reshape(-1, n_exp)
            top_e = torch.topk(choice.masked_fill(~score_mask.bool(), 0.0), k=k, dim=-1, sorted=False)[1]
            top_w = scores.gather(1, top_e)
            if cfg["norm_topk_prob"]:
                top_w = top_w / (top_w.sum(dim=-1, keepdim=True) + 1e-20)
            top_w = top_w * cfg["routed_scaling_factor"]
        else:
            probs = torch.softmax(linear(flat, p + "gate.weight"), dim=-1)
            top_w, top_e = torch.topk(probs, k, dim=-1)
            if (not qwen_moe or cfg.get("norm_topk_prob", False)) and (not deepseek or k > 1):
                top_w = top_w / top_w.sum(dim=-1, keepdim=True)
            elif deepseek_v2:  # MoEGate: the weights not renormalised are scaled
                top_w = top_w * cfg.get("routed_scaling_factor", 1.0)
        out = torch.zeros_like(flat)
        if qwen2_moe:  # the shared expert, scaled by its sigmoid gate
            shared = swiglu(flat, *(p + "shared_expert." + n + ".weight" for n in ("gate_proj", "up_proj", "down_proj")))
            out = out + shared * torch.sigmoid(linear(flat, p + "shared_expert_gate.weight"))
        if deepseek and cfg.get("n_shared_experts"):  # DeepseekMoE: y + shared_experts(identity)
            out = out + swiglu(flat, *(p + "shared_experts." + n + ".weight" for n in ("gate_proj", "up_proj", "down_proj")))
        names = ("gate_proj", "up_proj", "down_proj") if qwen_moe else ("w1", "w3", "w2")
        for e in range(cfg["n_routed_experts"] if deepseek else cfg["num_experts"] if qwen_moe else cfg["num_local_experts"]):
            rows, slot = torch.where(top_e == e)
            if rows.numel() == 0:
                continue
            pe = f"{p}experts.{e}."
            y = swiglu(flat[rows], *(pe + n + ".weight" for n in names))
            out.index_add_(0, rows, y * top_w[rows, slot, None])
        return out.view(batch, seq, hidden)

    if qwen:  # Qwen's names for Llama's modules; its MLP is c_proj(w1(x)·silu(w2(x)))
        ren = {"transformer.wte.": "model.embed_tokens.", "transformer.ln_f.": "model.norm.", ".ln_1.": ".input_layernorm.",
               ".ln_2.": ".post_attention_layernorm.", ".attn.": ".self_attn.", ".mlp.w2.": ".mlp.gate_proj.",
               ".mlp.w1.": ".mlp.up_proj.", ".mlp.c_proj.": ".mlp.down_proj.", "transformer.h.": "model.layers."}
        renamed = {}
        for name, t in w.items():
            for a, b in ren.items():
                name = name.replace(a, b)
            renamed[name] = t
        w.update(renamed)
    x = w["model.embed_tokens.weight"][ids]
    for layer in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{layer}."
        x = x + attention(norm(x, p + "input_layernorm"), p + "self_attn.")
        y = norm(x, p + "post_attention_layernorm")
        if glm or phi3:  # gate_up_proj = [gate; up]
            gate, up = linear(y, p + "mlp.gate_up_proj.weight").chunk(2, dim=-1)
            x = x + linear(up * torch.nn.functional.silu(gate), p + "mlp.down_proj.weight")
        elif starcoder2:
            tanh = cfg.get("hidden_act", "gelu_pytorch_tanh") != "gelu"
            act = torch.nn.functional.gelu(biased(y, p + "mlp.c_fc"), approximate="tanh" if tanh else "none")
            x = x + biased(act, p + "mlp.c_proj")
        elif moe and (layer >= cfg.get("first_k_dense_replace", 0) and (deepseek_v3 or layer % cfg.get("moe_layer_freq", 1) == 0) if deepseek else
                      not qwen_moe or layer not in (cfg.get("mlp_only_layers") or []) and (layer + 1) % cfg.get("decoder_sparse_step", 1) == 0):
            x = x + sparse_moe(y, p + ("mlp." if qwen_moe else "block_sparse_moe."))
        else:
            x = x + swiglu(y, p + "mlp.gate_proj.weight", p + "mlp.up_proj.weight", p + "mlp.down_proj.weight")
    x = norm(x, "model.norm")
    head = w["model.embed_tokens.weight"] if tied else w["lm_head.weight"]
    if norm_head:
        head = torch.nn.functional.normalize(head)
    logits = x @ head.T
    loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))
    if len(sys.argv) > 3:
        logits = logits[..., : int(sys.argv[3])]
    json.dump({"loss": loss.item(), "logits": logits.tolist()}, sys.stdout)


if __name__ == "__main__":
    main()
