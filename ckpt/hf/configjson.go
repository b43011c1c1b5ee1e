package hf

import (
	"fmt"

	"github.com/gomegatron/gomegatron/layers"
	"github.com/gomegatron/gomegatron/tensor"
)

// ConfigJSON renders config.json for the family from a Megatron configuration, on top of
// base (an existing config.json's keys, e.g. bos/eos ids, kept unless they describe the
// architecture). ReadConfig of the result gives back cfg's architecture (WriteConfig
// checks it). A mixture-of-experts configuration renders only as Mixtral.
func ConfigJSON(family Family, cfg *layers.Config, dtype tensor.DType, base map[string]any) (map[string]any, error) {
	m := map[string]any{}
	for k, v := range base {
		m[k] = v
	}
	tied := !cfg.UntieEmbeddingsAndOutputWeights
	m["vocab_size"] = cfg.VocabSize
	m["tie_word_embeddings"] = tied
	m["torch_dtype"] = dtype.String()
	m["model_type"] = string(family)
	delete(m, "_name_or_path")
	if cfg.SquaredReLU {
		return nil, fmt.Errorf("a %s model has no squared-ReLU MLP (--squared-relu); no Hugging Face family here has one", family)
	}
	if cfg.MultiLatentAttention && !family.latent() {
		return nil, fmt.Errorf("a %s model has no multi-latent attention (--multi-latent-attention); this checkpoint converts to deepseek_v2 (deepseek_v3 with a sigmoid router)", family)
	}
	if cfg.QKLayernorm && family != Qwen3 && family != Qwen3MoE && !family.latent() {
		return nil, fmt.Errorf("a %s model has no per-head query and key norms (--qk-layernorm); this checkpoint converts to qwen3", family)
	}
	if cfg.NumExperts > 0 && !family.HasExperts() {
		return nil, fmt.Errorf("a %s model has no experts; this mixture-of-experts checkpoint (%d experts) converts to mixtral", family, cfg.NumExperts)
	}
	switch family {
	case Llama, Mistral, Qwen2, Qwen3, Mixtral, Qwen3MoE, Qwen2MoE, Deepseek, DeepseekV2, DeepseekV3, Internlm2, GLM, Phi3:
		partial := cfg.RotaryPercent != 1 && family != GLM && family != Phi3
		if cfg.Normalization != "RMSNorm" || !cfg.SwiGLU || !cfg.Rotary() || partial || cfg.RotaryInterleaved != (family == GLM) {
			return nil, fmt.Errorf("a %s model needs RMSNorm, SwiGLU and full RoPE (GLM: interleaved on part of each head); the checkpoint has %s, swiglu=%v, %s (rotary_percent %v, interleaved %v)",
				family, cfg.Normalization, cfg.SwiGLU, cfg.PositionEmbeddingType, cfg.RotaryPercent, cfg.RotaryInterleaved)
		}
		arch := map[Family]string{Llama: "LlamaForCausalLM", Mistral: "MistralForCausalLM", Qwen2: "Qwen2ForCausalLM", Qwen3: "Qwen3ForCausalLM",
			Mixtral: "MixtralForCausalLM", Qwen3MoE: "Qwen3MoeForCausalLM", Qwen2MoE: "Qwen2MoeForCausalLM", Internlm2: "InternLM2ForCausalLM",
			GLM: "GlmForCausalLM", Phi3: "Phi3ForCausalLM"}
		m["architectures"] = []string{arch[family]}
		llamaShapeKeys(m, cfg)
		m["num_key_value_heads"] = cfg.NumQueryGroups
		m["rope_theta"] = cfg.RotaryBase
		rs, err := ropeScalingJSON(cfg)
		if err != nil {
			return nil, err
		}
		m["rope_scaling"] = rs
		if cfg.MaxPositionEmbeddings > 0 { // absent from Pai's args: keep the base config's
			m["max_position_embeddings"] = cfg.MaxPositionEmbeddings
		}
		if cfg.KVChannels*cfg.NumAttentionHeads != cfg.HiddenSize || family == Qwen3 || family == Qwen3MoE { // their default is 128
			m["head_dim"] = cfg.KVChannels
		} else {
			delete(m, "head_dim")
		}
		switch family {
		case Llama:
			if cfg.AddQKVBias && cfg.DisableBiasLinear {
				return nil, fmt.Errorf("a llama model cannot have a QKV bias without the other biases (use qwen2)")
			}
			m["attention_bias"] = cfg.AddBiasLinear()
		case Mistral:
			if cfg.SlidingWindow > 0 {
				m["sliding_window"] = cfg.SlidingWindow
			} else {
				m["sliding_window"] = nil
			}
		case Qwen2, Qwen3:
			if family == Qwen3 {
				if !cfg.QKLayernorm || cfg.AddQKVBias && cfg.DisableBiasLinear {
					return nil, fmt.Errorf("a qwen3 model needs --qk-layernorm, and a QKV bias only with the other attention biases")
				}
				m["attention_bias"] = cfg.AddBiasLinear()
			}
			m["use_sliding_window"] = cfg.SlidingWindow > 0
			if cfg.SlidingWindow > 0 {
				m["sliding_window"] = cfg.SlidingWindow
			}
		case Phi3:
			if cfg.AddBiasLinear() || cfg.AddQKVBias || cfg.QKLayernorm || cfg.KVChannels*cfg.NumAttentionHeads != cfg.HiddenSize {
				return nil, fmt.Errorf("a phi3 model has no biases, no head norms and heads hidden_size/num_attention_heads wide")
			}
			m["partial_rotary_factor"] = cfg.RotaryPercent
			m["sliding_window"] = nil
			if cfg.SlidingWindow > 0 {
				m["sliding_window"] = cfg.SlidingWindow
			}
			delete(m, "attention_bias")
		case GLM:
			if !cfg.RotaryInterleaved || cfg.AddBiasLinear() || cfg.QKLayernorm || cfg.SlidingWindow > 0 {
				return nil, fmt.Errorf("a glm model needs interleaved RoPE, biases on q, k and v only (or none), no head norms and no sliding window")
			}
			m["attention_bias"] = cfg.AddQKVBias
			m["partial_rotary_factor"] = cfg.RotaryPercent
			m["head_dim"] = cfg.KVChannels
		case Internlm2:
			if cfg.AddBiasLinear() || cfg.AddQKVBias || cfg.SlidingWindow > 0 || cfg.KVChannels*cfg.NumAttentionHeads != cfg.HiddenSize {
				return nil, fmt.Errorf("an internlm2 model has no biases, no sliding window and heads hidden_size/num_attention_heads wide")
			}
			m["bias"] = false
			delete(m, "head_dim")
		case Mixtral:
			if err := mixtralConfigKeys(m, cfg); err != nil {
				return nil, err
			}
		case Deepseek, DeepseekV2, DeepseekV3:
			if err := deepseekConfigKeys(m, cfg, family); err != nil {
				return nil, err
			}
		case Qwen3MoE, Qwen2MoE:
			if err := qwenMoEConfigKeys(m, cfg, family); err != nil {
				return nil, err
			}
		}
	case Baichuan:
		if err := baichuanConfigKeys(m, cfg); err != nil {
			return nil, err
		}
	case Qwen:
		gqa := cfg.GroupQueryAttention && cfg.NumQueryGroups != cfg.NumAttentionHeads
		if cfg.Normalization != "RMSNorm" || !cfg.SwiGLU || cfg.PositionEmbeddingType != "rope" || !cfg.AddQKVBias || gqa ||
			!cfg.UntieEmbeddingsAndOutputWeights || cfg.RotarySeqLenInterpolationFactor > 1 {
			return nil, fmt.Errorf("a qwen (1.0) model needs RMSNorm, SwiGLU, RoPE without interpolation, QKV biases, multi-head attention and an untied output layer")
		}
		m["architectures"] = []string{"QWenLMHeadModel"}
		m["hidden_size"] = cfg.HiddenSize
		m["num_attention_heads"] = cfg.NumAttentionHeads
		m["num_hidden_layers"] = cfg.NumLayers
		m["intermediate_size"] = 2 * cfg.FFNHiddenSize // w1 and w2 have half each
		m["kv_channels"] = cfg.KVChannels
		m["layer_norm_epsilon"] = cfg.NormEpsilon
		m["rotary_emb_base"] = cfg.RotaryBase
		m["rotary_pct"] = cfg.RotaryPercent
		m["no_bias"] = !cfg.AddBiasLinear()
		if cfg.SeqLength > 0 {
			m["seq_length"] = cfg.SeqLength
		}
		if cfg.MaxPositionEmbeddings > 0 {
			m["max_position_embeddings"] = cfg.MaxPositionEmbeddings
		}
	case ChatGLM:
		if cfg.Normalization != "RMSNorm" || !cfg.SwiGLU || cfg.PositionEmbeddingType != "rope" || !cfg.RotaryInterleaved || cfg.RotaryPercent != 0.5 ||
			cfg.RotarySeqLenInterpolationFactor > 1 || cfg.UseRopeScaling || cfg.QKLayernorm || cfg.ApplyResidualConnectionPostLayernorm || !cfg.UntieEmbeddingsAndOutputWeights {
			return nil, fmt.Errorf("a chatglm model needs RMSNorm, SwiGLU, interleaved RoPE on half of each head (--rotary-interleaved --rotary-percent 0.5) and an untied output layer")
		}
		m["architectures"] = []string{"ChatGLMModel"}
		m["num_layers"] = cfg.NumLayers
		m["hidden_size"] = cfg.HiddenSize
		m["ffn_hidden_size"] = cfg.FFNHiddenSize
		m["kv_channels"] = cfg.KVChannels
		m["num_attention_heads"] = cfg.NumAttentionHeads
		gqa := cfg.GroupQueryAttention && cfg.NumQueryGroups != cfg.NumAttentionHeads
		m["multi_query_attention"] = gqa
		m["multi_query_group_num"] = 1
		if gqa {
			m["multi_query_group_num"] = cfg.NumQueryGroups
		}
		m["layernorm_epsilon"] = cfg.NormEpsilon
		m["rmsnorm"], m["post_layer_norm"], m["original_rope"] = true, true, true
		m["apply_residual_connection_post_layernorm"] = false
		m["add_bias_linear"], m["add_qkv_bias"] = cfg.AddBiasLinear(), cfg.AddQKVBias || cfg.AddBiasLinear()
		m["padded_vocab_size"] = cfg.VocabSize
		m["rope_ratio"] = cfg.RotaryBase / 10000
		if cfg.SeqLength > 0 {
			m["seq_length"] = cfg.SeqLength
		}
	case Starcoder2:
		if cfg.Normalization != "LayerNorm" || cfg.SwiGLU || cfg.SquaredReLU || !cfg.Rotary() || cfg.RotaryPercent != 1 ||
			cfg.ParallelAttention || cfg.ApplyResidualConnectionPostLayernorm || cfg.ApplyLayernorm1p || cfg.AddQKVBias && !cfg.AddBiasLinear() ||
			cfg.KVChannels*cfg.NumAttentionHeads != cfg.HiddenSize {
			return nil, fmt.Errorf("a starcoder2 model needs pre-LayerNorm layers, a GeLU MLP, full RoPE, biases on all linear layers or none, and heads hidden_size/num_attention_heads wide")
		}
		m["architectures"] = []string{"Starcoder2ForCausalLM"}
		m["hidden_size"] = cfg.HiddenSize
		m["intermediate_size"] = cfg.FFNHiddenSize
		m["num_attention_heads"] = cfg.NumAttentionHeads
		m["num_hidden_layers"] = cfg.NumLayers
		m["num_key_value_heads"] = cfg.NumQueryGroups
		m["norm_epsilon"] = cfg.NormEpsilon
		m["hidden_act"] = "gelu"
		if cfg.TanhGeLU() {
			m["hidden_act"] = "gelu_pytorch_tanh"
		}
		m["use_bias"] = cfg.AddBiasLinear()
		m["rope_theta"] = cfg.RotaryBase
		rs, err := ropeScalingJSON(cfg)
		if err != nil {
			return nil, err
		}
		m["rope_scaling"] = rs
		if cfg.MaxPositionEmbeddings > 0 {
			m["max_position_embeddings"] = cfg.MaxPositionEmbeddings
		}
		m["sliding_window"] = nil
		if cfg.SlidingWindow > 0 {
			m["sliding_window"] = cfg.SlidingWindow
		}
	case GPT2, BigCode:
		m["architectures"] = []string{map[Family]string{GPT2: "GPT2LMHeadModel", BigCode: "GPTBigCodeForCausalLM"}[family]}
		m["n_embd"] = cfg.HiddenSize
		m["n_head"] = cfg.NumAttentionHeads
		m["n_layer"] = cfg.NumLayers
		m["n_inner"] = cfg.FFNHiddenSize
		m["n_positions"] = cfg.MaxPositionEmbeddings
		m["layer_norm_epsilon"] = cfg.NormEpsilon
		m["activation_function"] = "gelu"
		if cfg.TanhGeLU() {
			m["activation_function"] = "gelu_new"
		}
		m["scale_attn_weights"] = true
		if family == BigCode {
			m["multi_query"] = cfg.GroupQueryAttention && cfg.NumQueryGroups == 1
		}
	case Bloom:
		m["architectures"] = []string{"BloomForCausalLM"}
		m["hidden_size"] = cfg.HiddenSize
		m["n_head"] = cfg.NumAttentionHeads
		m["n_layer"] = cfg.NumLayers
		m["layer_norm_epsilon"] = cfg.NormEpsilon
		m["apply_residual_connection_post_layernorm"] = cfg.ApplyResidualConnectionPostLayernorm
	case Falcon:
		m["architectures"] = []string{"FalconForCausalLM"}
		m["hidden_size"] = cfg.HiddenSize
		m["num_attention_heads"] = cfg.NumAttentionHeads
		m["num_hidden_layers"] = cfg.NumLayers
		m["layer_norm_epsilon"] = cfg.NormEpsilon
		// Falcon-7B's multi-query and the RW layout (a KV head per head) are the old
		// architecture; other group counts and the MLP's own layernorm need the new one.
		groups := cfg.NumAttentionHeads
		if cfg.GroupQueryAttention {
			groups = cfg.NumQueryGroups
		}
		newArch := cfg.ParallelMLPNorm || groups != 1 && groups != cfg.NumAttentionHeads
		m["new_decoder_architecture"] = newArch
		if newArch {
			if !cfg.ParallelAttention {
				return nil, fmt.Errorf("a falcon model with %d query groups or --parallel-attention-mlp-norm needs --parallel-attention", groups)
			}
			m["num_kv_heads"] = groups
			m["num_ln_in_parallel_attn"] = 1
			if cfg.ParallelMLPNorm {
				m["num_ln_in_parallel_attn"] = 2
			}
		} else {
			m["multi_query"] = groups == 1
		}
		m["parallel_attn"] = cfg.ParallelAttention
		m["bias"] = cfg.AddBiasLinear()
		m["alibi"] = false
		m["rope_theta"] = cfg.RotaryBase
		rs, err := ropeScalingJSON(cfg)
		if err != nil {
			return nil, err
		}
		m["rope_scaling"] = rs
	default:
		return nil, fmt.Errorf("no Hugging Face config for family %q", family)
	}
	return m, nil
}

// baichuanConfigKeys sets a Baichuan config.json's keys. Its remote code chooses the
// architecture from them (see baichuanRoPE and baichuan2Vocab), so a checkpoint they
// cannot express is refused; the base config's auto_map and tokenizer keys stay.
func baichuanConfigKeys(m map[string]any, cfg *layers.Config) error {
	gqa := cfg.GroupQueryAttention && cfg.NumQueryGroups != cfg.NumAttentionHeads
	if cfg.Normalization != "RMSNorm" || !cfg.SwiGLU || cfg.AddBiasLinear() || cfg.AddQKVBias || gqa || !cfg.UntieEmbeddingsAndOutputWeights {
		return fmt.Errorf("a baichuan model needs RMSNorm, SwiGLU, no biases, multi-head attention and an untied output layer")
	}
	rope := cfg.PositionEmbeddingType == "rope"
	switch {
	case !rope && cfg.PositionEmbeddingType != "alibi":
		return fmt.Errorf("a baichuan model uses RoPE or ALiBi, not %s", cfg.PositionEmbeddingType)
	case rope && (cfg.RotaryBase != 10000 || cfg.RotaryPercent != 1 || cfg.RotarySeqLenInterpolationFactor > 1):
		return fmt.Errorf("a baichuan model's RoPE has base 10000, full rotary and no interpolation")
	case cfg.UseNormHead != (cfg.VocabSize == baichuan2Vocab):
		return fmt.Errorf("Baichuan's code applies the NormHead exactly when vocab_size is %d (Baichuan 2); this checkpoint has vocab_size %d and use_normhead %v", baichuan2Vocab, cfg.VocabSize, cfg.UseNormHead)
	case !rope && cfg.HiddenSize == 4096:
		return fmt.Errorf("Baichuan's code applies ALiBi only to its 13B models (hidden size 5120), not at hidden size 4096")
	}
	arch := "BaichuanForCausalLM" // Baichuan 2-7B (RoPE) and the 13B models (ALiBi)
	if rope && (cfg.HiddenSize != 4096 || !cfg.UseNormHead) {
		arch = "BaiChuanForCausalLM" // Baichuan-7B's code: RoPE at any size
	}
	m["architectures"] = []string{arch}
	llamaShapeKeys(m, cfg)
	if rope && cfg.MaxPositionEmbeddings > 0 {
		m["max_position_embeddings"] = cfg.MaxPositionEmbeddings
	}
	if cfg.SeqLength > 0 {
		m["model_max_length"] = cfg.SeqLength
	}
	return nil
}

// ropeScalingJSON is config.json's rope_scaling for cfg: null, linear interpolation, or
// Llama 3.1's llama3 with Megatron-Core's bands; not both.
func ropeScalingJSON(cfg *layers.Config) (any, error) {
	f := cfg.RotarySeqLenInterpolationFactor
	linear := f != 0 && f != 1
	switch {
	case linear && cfg.UseRopeScaling:
		return nil, fmt.Errorf("linear RoPE interpolation (%v) and Llama 3.1's RoPE scaling together have no Hugging Face rope_scaling", f)
	case linear:
		return map[string]any{"type": "linear", "factor": f}, nil
	case cfg.UseRopeScaling:
		return map[string]any{"rope_type": "llama3", "factor": cfg.RopeScalingFactor, "low_freq_factor": 1.0,
			"high_freq_factor": 4.0, "original_max_position_embeddings": 8192}, nil
	case cfg.PositionEmbeddingType == "yarn":
		y := map[string]any{"rope_type": "yarn", "factor": cfg.YarnScalingFactor, "original_max_position_embeddings": cfg.YarnOrigMaxPositions,
			"beta_fast": cfg.YarnBetaFast, "beta_slow": cfg.YarnBetaSlow}
		switch {
		case cfg.YarnMScaleAllDim != 0:
			y["mscale"], y["mscale_all_dim"] = cfg.YarnMScale, cfg.YarnMScaleAllDim
		case cfg.YarnMScale != 1:
			return nil, fmt.Errorf("YaRN's --mscale %v without --mscale-all-dim has no Hugging Face rope_scaling", cfg.YarnMScale)
		}
		if !cfg.YarnCorrectionRoundToInt {
			y["truncate"] = false
		}
		return y, nil
	}
	return nil, nil
}

// llamaShapeKeys sets the Llama-style keys of the layers' shape (Llama's family and
// Baichuan's): sizes, RMSNorm epsilon and the SiLU gate.
func llamaShapeKeys(m map[string]any, cfg *layers.Config) {
	m["hidden_size"] = cfg.HiddenSize
	m["intermediate_size"] = cfg.FFNHiddenSize
	m["num_attention_heads"] = cfg.NumAttentionHeads
	m["num_hidden_layers"] = cfg.NumLayers
	m["rms_norm_eps"] = cfg.NormEpsilon
	m["hidden_act"] = "silu"
}
