// Package hftest writes synthetic Hugging Face model folders for tests: a config.json and
// random weights with exactly the names and shapes the family's ckpt/hf mapping reads.
package hftest

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/gomegatron/gomegatron/ckpt/hf"
	"github.com/gomegatron/gomegatron/ckpt/safetensors"
	"github.com/gomegatron/gomegatron/layers"
	"github.com/gomegatron/gomegatron/tensor"
)

// TinyMixtral is a Mixtral-8x7B-shaped config.json at test size: GQA (4 heads, 2 KV
// heads), 4 experts of FFN 48 with top-2 routing, a sliding window of 5 (shorter than the
// test sequences), untied output, vocabulary 200.
const TinyMixtral = `{"model_type": "mixtral", "architectures": ["MixtralForCausalLM"], "hidden_size": 64, "intermediate_size": 48,
	"num_attention_heads": 4, "num_key_value_heads": 2, "num_hidden_layers": 2, "vocab_size": 200,
	"max_position_embeddings": 128, "rms_norm_eps": 1e-5, "rope_theta": 1000000.0, "tie_word_embeddings": false,
	"hidden_act": "silu", "sliding_window": 5, "num_local_experts": 4, "num_experts_per_tok": 2,
	"router_aux_loss_coef": 0.02, "router_jitter_noise": 0.0, "output_router_logits": false, "bos_token_id": 1, "eos_token_id": 2}`

// TinyQwen3 is a Qwen3-shaped config.json at test size: RMSNorm on each head's queries and
// keys, GQA (4 heads, 2 KV heads), head_dim 16 ≠ hidden_size / heads, tied embeddings,
// vocabulary 300.
const TinyQwen3 = `{"model_type": "qwen3", "architectures": ["Qwen3ForCausalLM"], "hidden_size": 48, "intermediate_size": 96,
	"num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "num_hidden_layers": 2, "vocab_size": 300,
	"rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "max_position_embeddings": 64, "tie_word_embeddings": true,
	"attention_bias": false, "hidden_act": "silu", "use_sliding_window": false}`

// TinyQwen3MoE is a Qwen3-30B-A3B-shaped config.json at test size: Qwen3's attention as
// TinyQwen3's, top-2 of 4 experts of FFN 32 renormalised, an untied output layer.
const TinyQwen3MoE = `{"model_type": "qwen3_moe", "architectures": ["Qwen3MoeForCausalLM"], "hidden_size": 48,
	"intermediate_size": 96, "moe_intermediate_size": 32, "num_experts": 4, "num_experts_per_tok": 2, "norm_topk_prob": true,
	"decoder_sparse_step": 1, "mlp_only_layers": [], "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
	"num_hidden_layers": 2, "vocab_size": 300, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "max_position_embeddings": 64,
	"tie_word_embeddings": false, "attention_bias": false, "hidden_act": "silu", "router_aux_loss_coef": 0.001,
	"use_sliding_window": false, "sliding_window": null}`

// TinyQwen2MoE is a Qwen1.5-MoE-A2.7B-shaped config.json at test size: Qwen2's attention
// (QKV biases, GQA), top-2 of the softmax over 4 experts of FFN 32 not renormalised, a
// shared expert of FFN 64 with its sigmoid gate, an untied output layer.
const TinyQwen2MoE = `{"model_type": "qwen2_moe", "architectures": ["Qwen2MoeForCausalLM"], "hidden_size": 48,
	"intermediate_size": 96, "moe_intermediate_size": 32, "shared_expert_intermediate_size": 64, "num_experts": 4,
	"num_experts_per_tok": 2, "norm_topk_prob": false, "decoder_sparse_step": 1, "mlp_only_layers": [], "num_attention_heads": 4,
	"num_key_value_heads": 2, "num_hidden_layers": 2, "vocab_size": 300, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
	"max_position_embeddings": 64, "tie_word_embeddings": false, "hidden_act": "silu", "router_aux_loss_coef": 0.001,
	"use_sliding_window": false, "sliding_window": 64, "max_window_layers": 2}`

// TinyStarcoder2 is a StarCoder 2-shaped config.json at test size: LayerNorm, GQA (4
// heads, 2 KV heads) with RoPE, biases everywhere, the tanh GeLU MLP, a sliding window of 6
// keys, tied embeddings (Starcoder2Config's default).
const TinyStarcoder2 = `{"model_type": "starcoder2", "architectures": ["Starcoder2ForCausalLM"], "hidden_size": 48,
	"intermediate_size": 96, "num_attention_heads": 4, "num_key_value_heads": 2, "num_hidden_layers": 2, "vocab_size": 300,
	"norm_epsilon": 1e-05, "rope_theta": 100000.0, "max_position_embeddings": 64, "hidden_act": "gelu_pytorch_tanh",
	"use_bias": true, "sliding_window": 6, "residual_dropout": 0.1, "embedding_dropout": 0.1, "attention_dropout": 0.1}`

// TinyInternlm2 is an InternLM2-shaped config.json at test size: Llama's layers with
// GQA (4 heads, 2 KV heads, so wqkv interleaves groups), an untied output layer.
const TinyInternlm2 = `{"model_type": "internlm2", "architectures": ["InternLM2ForCausalLM"], "hidden_size": 48,
	"intermediate_size": 96, "num_attention_heads": 4, "num_key_value_heads": 2, "num_hidden_layers": 2, "vocab_size": 300,
	"rms_norm_eps": 1e-05, "rope_theta": 1000000, "max_position_embeddings": 64, "hidden_act": "silu", "bias": false,
	"tie_word_embeddings": false, "rope_scaling": null, "auto_map": {"AutoConfig": "configuration_internlm2.InternLM2Config",
	"AutoModelForCausalLM": "modeling_internlm2.InternLM2ForCausalLM"}}`

// TinyChatGLM is a ChatGLM3-6B-shaped config.json at test size (remote code): multi-query
// attention with 2 groups of 4 heads of 16 channels, QKV biases, RoPE on half of each head
// in interleaved pairs at base 10000·rope_ratio, an untied output layer.
const TinyChatGLM = `{"model_type": "chatglm", "architectures": ["ChatGLMModel"], "num_layers": 2, "hidden_size": 64,
	"ffn_hidden_size": 96, "kv_channels": 16, "num_attention_heads": 4, "multi_query_attention": true, "multi_query_group_num": 2,
	"seq_length": 64, "layernorm_epsilon": 1e-05, "rmsnorm": true, "apply_residual_connection_post_layernorm": false,
	"post_layer_norm": true, "add_bias_linear": false, "add_qkv_bias": true, "padded_vocab_size": 300, "rope_ratio": 2.0,
	"original_rope": true, "tie_word_embeddings": false, "auto_map": {"AutoConfig": "configuration_chatglm.ChatGLMConfig",
	"AutoModelForCausalLM": "modeling_chatglm.ChatGLMForConditionalGeneration"}}`

// TinyGLM is a GLM-4-9B-hf-shaped config.json at test size (transformers' GlmForCausalLM):
// GQA with q/k/v biases, head_dim 16, RoPE on half of each head in interleaved pairs.
const TinyGLM = `{"model_type": "glm", "architectures": ["GlmForCausalLM"], "hidden_size": 64, "intermediate_size": 96,
	"num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "num_hidden_layers": 2, "vocab_size": 300,
	"rms_norm_eps": 1.5625e-07, "rope_theta": 10000.0, "partial_rotary_factor": 0.5, "attention_bias": true,
	"max_position_embeddings": 64, "hidden_act": "silu", "tie_word_embeddings": false}`

// TinyDeepseekMoE is a DeepSeek-MoE-16B-shaped config.json at test size (remote code): a
// dense first layer (FFN 96), then top-2 of 4 experts of FFN 32, not renormalised, and 2
// ungated shared experts (FFN 64).
const TinyDeepseekMoE = `{"model_type": "deepseek", "architectures": ["DeepseekForCausalLM"], "hidden_size": 48,
	"intermediate_size": 96, "moe_intermediate_size": 32, "n_routed_experts": 4, "n_shared_experts": 2, "num_experts_per_tok": 2,
	"first_k_dense_replace": 1, "moe_layer_freq": 1, "norm_topk_prob": false, "scoring_func": "softmax", "aux_loss_alpha": 0.001,
	"seq_aux": true, "num_attention_heads": 4, "num_key_value_heads": 4, "num_hidden_layers": 3, "vocab_size": 300,
	"rms_norm_eps": 1e-06, "rope_theta": 10000.0, "max_position_embeddings": 64, "tie_word_embeddings": false,
	"hidden_act": "silu", "attention_bias": false, "auto_map": {"AutoConfig": "configuration_deepseek.DeepseekConfig",
	"AutoModelForCausalLM": "modeling_deepseek.DeepseekForCausalLM"}}`

// TinyDeepseekV2 is a DeepSeek-V2-shaped config.json at test size (remote code): multi-latent
// attention with a query latent (q_lora_rank 24), kv_lora_rank 16, heads of 12 + 16 rotary
// query/key channels and 10 value channels, YaRN (factor 4 over 16 original positions,
// betas that put the ramp inside the 8 frequencies, mscale ≠ mscale_all_dim), rope_theta
// 10000; a dense first layer (FFN 96), then top-2 of 4 experts of FFN 32, not
// renormalised, and 2 ungated shared experts.
const TinyDeepseekV2 = `{"model_type": "deepseek_v2", "architectures": ["DeepseekV2ForCausalLM"], "hidden_size": 48,
	"intermediate_size": 96, "moe_intermediate_size": 32, "n_routed_experts": 4, "n_shared_experts": 2, "num_experts_per_tok": 2,
	"first_k_dense_replace": 1, "moe_layer_freq": 1, "norm_topk_prob": false, "scoring_func": "softmax", "aux_loss_alpha": 0.001,
	"seq_aux": true, "routed_scaling_factor": 1.0, "topk_method": "greedy", "n_group": 1, "topk_group": 1, "ep_size": 1,
	"q_lora_rank": 24, "kv_lora_rank": 16, "qk_nope_head_dim": 12, "qk_rope_head_dim": 16, "v_head_dim": 10,
	"num_attention_heads": 4, "num_key_value_heads": 4, "num_hidden_layers": 3, "vocab_size": 300, "rms_norm_eps": 1e-06,
	"rope_theta": 10000.0, "rope_scaling": {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16,
	"beta_fast": 2.0, "beta_slow": 0.25, "mscale": 0.9, "mscale_all_dim": 0.6}, "max_position_embeddings": 64,
	"tie_word_embeddings": false, "hidden_act": "silu", "attention_bias": false, "attention_dropout": 0.0,
	"auto_map": {"AutoConfig": "configuration_deepseek.DeepseekV2Config", "AutoModel": "modeling_deepseek.DeepseekV2Model",
	"AutoModelForCausalLM": "modeling_deepseek.DeepseekV2ForCausalLM"}}`

// TinyDeepseekV2Lite is a DeepSeek-V2-Lite-shaped config.json at test size: no query
// latent (q_lora_rank null: one q_proj), kv_lora_rank 24, heads of 16 + 8 rotary channels
// and 16 value channels, plain RoPE; a dense first layer, top-2 of 4 experts, 2 shared.
const TinyDeepseekV2Lite = `{"model_type": "deepseek_v2", "architectures": ["DeepseekV2ForCausalLM"], "hidden_size": 48,
	"intermediate_size": 96, "moe_intermediate_size": 32, "n_routed_experts": 4, "n_shared_experts": 2, "num_experts_per_tok": 2,
	"first_k_dense_replace": 1, "moe_layer_freq": 1, "norm_topk_prob": false, "scoring_func": "softmax", "aux_loss_alpha": 0.001,
	"seq_aux": true, "routed_scaling_factor": 1.0, "topk_method": "greedy", "n_group": 1, "topk_group": 1,
	"q_lora_rank": null, "kv_lora_rank": 24, "qk_nope_head_dim": 16, "qk_rope_head_dim": 8, "v_head_dim": 16,
	"num_attention_heads": 4, "num_key_value_heads": 4, "num_hidden_layers": 3, "vocab_size": 300, "rms_norm_eps": 1e-06,
	"rope_theta": 10000.0, "rope_scaling": null, "max_position_embeddings": 64, "tie_word_embeddings": false,
	"hidden_act": "silu", "attention_bias": false, "auto_map": {"AutoConfig": "configuration_deepseek.DeepseekV2Config",
	"AutoModel": "modeling_deepseek.DeepseekV2Model", "AutoModelForCausalLM": "modeling_deepseek.DeepseekV2ForCausalLM"}}`

// TinyDeepseekV3 is a DeepSeek-V3-shaped config.json at test size (transformers'
// DeepseekV3ForCausalLM; the remote code's keys too): TinyDeepseekV2's multi-latent
// attention and YaRN (max_position_embeddings = factor · original_max_position_embeddings,
// as transformers reads it), a dense first layer (FFN 96), then 8 experts of FFN 32 in 4
// groups of 2, each token's top 4 of σ(z) + e_score_correction_bias within its best 2
// groups, renormalised and scaled by 2.5, and 2 ungated shared experts. Write gives the
// expert bias random values (1 + N(0, std²), as every 1-D tensor). The one
// multi-token-prediction layer is not written (the readers drop it).
const TinyDeepseekV3 = `{"model_type": "deepseek_v3", "architectures": ["DeepseekV3ForCausalLM"], "hidden_size": 48,
	"intermediate_size": 96, "moe_intermediate_size": 32, "n_routed_experts": 8, "n_shared_experts": 2, "num_experts_per_tok": 4,
	"n_group": 4, "topk_group": 2, "routed_scaling_factor": 2.5, "norm_topk_prob": true, "scoring_func": "sigmoid",
	"topk_method": "noaux_tc", "first_k_dense_replace": 1, "moe_layer_freq": 1, "aux_loss_alpha": 0.001, "seq_aux": true,
	"ep_size": 1, "num_nextn_predict_layers": 1, "q_lora_rank": 24, "kv_lora_rank": 16, "qk_nope_head_dim": 12,
	"qk_rope_head_dim": 16, "v_head_dim": 10, "num_attention_heads": 4, "num_key_value_heads": 4, "num_hidden_layers": 3,
	"vocab_size": 300, "rms_norm_eps": 1e-06, "rope_theta": 10000.0, "rope_scaling": {"type": "yarn", "factor": 4.0,
	"original_max_position_embeddings": 16, "beta_fast": 2.0, "beta_slow": 0.25, "mscale": 0.9, "mscale_all_dim": 0.6},
	"max_position_embeddings": 64, "rope_interleave": true, "tie_word_embeddings": false, "hidden_act": "silu",
	"attention_bias": false, "attention_dropout": 0.0, "auto_map": {"AutoConfig": "configuration_deepseek.DeepseekV3Config",
	"AutoModel": "modeling_deepseek.DeepseekV3Model", "AutoModelForCausalLM": "modeling_deepseek.DeepseekV3ForCausalLM"}}`

// TinyMoonlight is a Moonlight-16B-A3B-shaped deepseek_v3 config.json at test size: no
// query latent (one q_proj), kv_lora_rank 24, heads of 16 + 8 rotary channels and 16 value
// channels, plain RoPE; a dense first layer, then the top 3 of 8 experts without groups
// (n_group 1), scaled by 2.446, and one shared expert; transformers' keys only (no
// scoring_func or topk_method).
const TinyMoonlight = `{"model_type": "deepseek_v3", "architectures": ["DeepseekV3ForCausalLM"], "hidden_size": 48,
	"intermediate_size": 96, "moe_intermediate_size": 32, "n_routed_experts": 8, "n_shared_experts": 1, "num_experts_per_tok": 3,
	"n_group": 1, "topk_group": 1, "routed_scaling_factor": 2.446, "norm_topk_prob": true, "first_k_dense_replace": 1,
	"q_lora_rank": null, "kv_lora_rank": 24, "qk_nope_head_dim": 16, "qk_rope_head_dim": 8, "v_head_dim": 16,
	"num_attention_heads": 4, "num_key_value_heads": 4, "num_hidden_layers": 3, "vocab_size": 300, "rms_norm_eps": 1e-05,
	"rope_theta": 50000.0, "rope_scaling": null, "max_position_embeddings": 64, "tie_word_embeddings": false,
	"hidden_act": "silu", "attention_bias": false}`

// Write writes dir/config.json with the given text and dir/model.safetensors (float32)
// holding every tensor the family's mapping reads, with Hugging Face's shapes. Values are
// N(0, std²) from a fixed seed, drawn in the mapping's order; with std < 1 the 1-D tensors
// (norm weights, biases, DeepSeek-V3's expert bias) are 1 + N(0, std²) — the scale of a
// trained model, whose forward pass stays well conditioned. The same text and std always give the same weights.
func Write(dir, config string, std float64) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(config), 0o644); err != nil {
		return err
	}
	m, err := hf.ReadConfig(dir)
	if err != nil {
		return err
	}
	rules, err := m.Rules()
	if err != nil {
		return err
	}
	specs, err := layers.Specs(m.Config, layers.Parallel{TPSize: 1, PPSize: 1})
	if err != nil {
		return err
	}
	full := map[string][]int{}
	for _, p := range specs {
		full[p.InitKey] = p.FullShape
	}
	rng := rand.New(rand.NewPCG(7, 8))
	var out []safetensors.Named
	for _, r := range rules {
		shape, ok := full[r.Megatron]
		if !ok {
			return fmt.Errorf("hftest: the %s model has no parameter %s", m.Family, r.Megatron)
		}
		for i, s := range m.HFShapes(r, shape) {
			n := 1
			for _, d := range s {
				n *= d
			}
			v := make([]float32, n)
			for j := range v {
				v[j] = float32(rng.NormFloat64() * std)
				if std < 1 && len(s) == 1 {
					v[j]++
				}
			}
			out = append(out, safetensors.Named{Name: r.HF[i], T: tensor.FromF32(v, s...)})
		}
	}
	return safetensors.Write(filepath.Join(dir, safetensors.SingleFile), out, map[string]string{"format": "pt"})
}

// NeedTorch skips the test when /usr/bin/python3 cannot import torch.
func NeedTorch(t testing.TB) {
	t.Helper()
	if err := exec.Command("/usr/bin/python3", "-c", "import torch").Run(); err != nil {
		t.Skipf("skipping: /usr/bin/python3 with torch not available (%v); Debian's python3-torch provides it", err)
	}
}

// PyForward runs ckpt/hf/testdata/hf_forward.py (a float64 torch transcription of
// transformers' Llama/Mistral/Mixtral forward and of Baichuan's) on a Hugging Face folder:
// the loss and the logits of the rows of ids (with cols, only each row's first cols).
func PyForward(t testing.TB, dir string, ids [][]int64, cols ...int) (float64, [][][]float64) {
	t.Helper()
	_, here, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(here), "..", "testdata", "hf_forward.py")
	b, err := json.Marshal(ids)
	if err != nil {
		t.Fatal(err)
	}
	args := []string{script, dir, string(b)}
	for _, c := range cols {
		args = append(args, fmt.Sprint(c))
	}
	out, err := exec.Command("/usr/bin/python3", args...).Output()
	if ee, ok := err.(*exec.ExitError); ok {
		t.Fatalf("hf_forward.py %s: %v\n%s", dir, err, ee.Stderr)
	}
	if err != nil {
		t.Fatalf("hf_forward.py %s: %v", dir, err)
	}
	var res struct {
		Loss   float64       `json:"loss"`
		Logits [][][]float64 `json:"logits"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("hf_forward.py %s: %v", dir, err)
	}
	return res.Loss, res.Logits
}
