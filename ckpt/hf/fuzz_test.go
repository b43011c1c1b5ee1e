package hf

import (
	"os"
	"testing"
)

// FuzzConfig: any config.json gives a model description (whose mapping rules can be
// listed) or an error naming the key, never a panic.
func FuzzConfig(f *testing.F) {
	for _, s := range []string{"../../testdata/hf/llama-gqa/config.json", "../../testdata/hf/gpt2/config.json", "../../testdata/hf/bloom/config.json"} {
		b, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	// The families whose readers take rope_parameters, llama3 scaling, experts, shared experts,
	// multi-latent attention, DeepSeek-V3's router and Falcon's new architecture.
	for _, s := range []string{
		`{"model_type": "qwen3_moe", "hidden_size": 48, "moe_intermediate_size": 32, "num_experts": 4, "num_experts_per_tok": 2,
		"norm_topk_prob": true, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "num_hidden_layers": 2,
		"vocab_size": 300, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0}`,
		`{"model_type": "qwen2_moe", "hidden_size": 48, "moe_intermediate_size": 32, "shared_expert_intermediate_size": 64,
		"num_experts": 4, "num_experts_per_tok": 2, "num_attention_heads": 4, "num_hidden_layers": 2, "vocab_size": 300,
		"rms_norm_eps": 1e-06}`,
		`{"model_type": "falcon", "hidden_size": 64, "num_attention_heads": 4, "num_kv_heads": 2, "num_hidden_layers": 2,
		"vocab_size": 200, "layer_norm_epsilon": 1e-5, "new_decoder_architecture": true, "num_ln_in_parallel_attn": 2}`,
		`{"model_type": "starcoder2", "hidden_size": 48, "intermediate_size": 96, "num_attention_heads": 4, "num_key_value_heads": 2,
		"num_hidden_layers": 2, "vocab_size": 300, "norm_epsilon": 1e-05, "use_bias": true, "sliding_window": 6}`,
		`{"model_type": "internlm2", "hidden_size": 48, "intermediate_size": 96, "num_attention_heads": 4, "num_key_value_heads": 2,
		"num_hidden_layers": 2, "vocab_size": 300, "rms_norm_eps": 1e-05, "bias": false}`,
		`{"model_type": "chatglm", "num_layers": 2, "hidden_size": 64, "ffn_hidden_size": 96, "kv_channels": 16, "num_attention_heads": 4,
		"multi_query_attention": true, "multi_query_group_num": 2, "seq_length": 64, "layernorm_epsilon": 1e-05, "add_qkv_bias": true,
		"padded_vocab_size": 300, "rope_ratio": 2.0}`,
		`{"model_type": "deepseek", "hidden_size": 48, "intermediate_size": 96, "moe_intermediate_size": 32, "n_routed_experts": 4,
		"n_shared_experts": 2, "num_experts_per_tok": 2, "first_k_dense_replace": 1, "num_attention_heads": 4, "num_hidden_layers": 3,
		"vocab_size": 300, "rms_norm_eps": 1e-06}`,
		`{"model_type": "deepseek_v2", "hidden_size": 48, "intermediate_size": 96, "moe_intermediate_size": 32, "n_routed_experts": 4,
		"n_shared_experts": 2, "num_experts_per_tok": 2, "first_k_dense_replace": 1, "num_attention_heads": 4, "num_hidden_layers": 3,
		"vocab_size": 300, "rms_norm_eps": 1e-06, "q_lora_rank": 24, "kv_lora_rank": 16, "qk_nope_head_dim": 12, "qk_rope_head_dim": 16,
		"v_head_dim": 10, "topk_method": "greedy", "rope_scaling": {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16,
		"mscale": 0.9, "mscale_all_dim": 0.6}}`,
		`{"model_type": "deepseek_v3", "hidden_size": 48, "intermediate_size": 96, "moe_intermediate_size": 32, "n_routed_experts": 8,
		"n_shared_experts": 1, "num_experts_per_tok": 4, "n_group": 4, "topk_group": 2, "routed_scaling_factor": 2.5, "norm_topk_prob": true,
		"first_k_dense_replace": 1, "num_nextn_predict_layers": 1, "num_attention_heads": 4, "num_hidden_layers": 3, "vocab_size": 300,
		"q_lora_rank": 24, "kv_lora_rank": 16, "qk_nope_head_dim": 12, "qk_rope_head_dim": 16, "v_head_dim": 10, "max_position_embeddings": 64,
		"rope_scaling": {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16, "mscale": 1.0, "mscale_all_dim": 1.0}}`,
		`{"model_type": "qwen2", "hidden_size": 64, "intermediate_size": 96, "num_attention_heads": 4, "num_hidden_layers": 2,
		"vocab_size": 200, "rms_norm_eps": 1e-6, "rope_scaling": {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768,
		"mscale": 0.7, "mscale_all_dim": 0.7, "truncate": false}}`,
		`{"model_type": "phi3", "hidden_size": 64, "intermediate_size": 96, "num_attention_heads": 4, "num_key_value_heads": 2,
		"num_hidden_layers": 2, "vocab_size": 200, "rms_norm_eps": 1e-05, "sliding_window": 6, "partial_rotary_factor": 0.75}`,
		`{"model_type": "qwen3", "hidden_size": 48, "intermediate_size": 96, "num_attention_heads": 4, "num_hidden_layers": 2,
		"vocab_size": 300, "rms_norm_eps": 1e-06}`,
		`{"model_type": "llama", "hidden_size": 64, "intermediate_size": 96, "num_attention_heads": 4, "num_hidden_layers": 2,
		"vocab_size": 200, "rms_norm_eps": 1e-5, "rope_parameters": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
		"high_freq_factor": 4.0, "original_max_position_embeddings": 8192, "rope_theta": 500000.0}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := parseConfig("fuzz", data)
		if err != nil {
			return
		}
		_, _ = m.Rules()
	})
}
