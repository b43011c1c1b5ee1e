package train

import (
	"fmt"

	"github.com/gomegatron/gomegatron/ckpt/megatron"
	"github.com/gomegatron/gomegatron/data/gpt"
)

// useCheckpointArgs is Megatron's load_args_from_checkpoint (--use-checkpoint-args): the
// model's shape from the checkpoint's args. Arguments Megatron sets only when the command
// line left them unset take effect where the flag is zero; the others (layout, query groups,
// positions, biases, activation, norm, tying, TP, PP) always do, as do gomegatron's own
// architecture attributes when the checkpoint records them. It returns Megatron's
// "Setting … from checkpoint" lines.
func (a *Args) useCheckpointArgs() ([]string, error) {
	if !a.LoadingCheckpoint() {
		return nil, fmt.Errorf("--use-checkpoint-args needs --load")
	}
	loc, err := megatron.Resolve(a.Load)
	if a.CkptStep > 0 {
		loc, err = megatron.Location{Root: a.Load, Iteration: a.CkptStep}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("--use-checkpoint-args: %w", err)
	}
	ns, where, err := megatron.LoadArgs(loc)
	if err != nil {
		return nil, fmt.Errorf("--use-checkpoint-args: %w", err)
	}
	c, info, err := megatron.ConfigFromArgs(ns)
	if err != nil {
		return nil, fmt.Errorf("--use-checkpoint-args: %s: %w", where, err)
	}
	var lines []string
	set := func(name string, force bool, dst, v any) {
		switch d := dst.(type) {
		case *int:
			if !force && *d != 0 {
				return
			}
			*d = v.(int)
		case *bool:
			*d = v.(bool)
		case *string:
			if !force && *d != "" {
				return
			}
			*d = v.(string)
		case *float64:
			*d = v.(float64)
		}
		shown := v
		switch x := v.(type) {
		case float64:
			shown = gpt.PyFloatRepr(x) // Python's spelling, as Megatron prints it
		case bool:
			if name == "add_bias_linear" { // stored here as its negation
				shown = !x
			}
		case string:
			if name == "moe_layer_freq" && x == "" {
				shown = 1 // every layer
			}
		case int:
			if name == "moe_ffn_hidden_size" && x == 0 {
				shown = c.ExpertFFN() // stored as 0 when it is ffn_hidden_size
			}
		}
		lines = append(lines, fmt.Sprintf("Setting %s to %v from checkpoint", name, shown))
	}
	set("num_layers", false, &a.NumLayers, c.NumLayers)
	set("hidden_size", false, &a.HiddenSize, c.HiddenSize)
	set("ffn_hidden_size", false, &a.FFNHiddenSize, c.FFNHiddenSize)
	set("seq_length", false, &a.SeqLength, c.SeqLength)
	set("num_attention_heads", false, &a.NumAttentionHeads, c.NumAttentionHeads)
	set("num_query_groups", true, &a.NumQueryGroups, c.NumQueryGroups)
	set("group_query_attention", true, &a.GroupQueryAttention, c.GroupQueryAttention)
	set("kv_channels", false, &a.KVChannels, c.KVChannels)
	set("max_position_embeddings", false, &a.MaxPositionEmbeddings, c.MaxPositionEmbeddings)
	set("position_embedding_type", true, &a.PositionEmbeddingType, c.PositionEmbeddingType)
	set("rotary_percent", true, &a.RotaryPercent, c.RotaryPercent)
	set("add_bias_linear", true, &a.DisableBiasLinear, c.DisableBiasLinear) // stored as its negation
	set("swiglu", true, &a.SwiGLU, c.SwiGLU)
	set("untie_embeddings_and_output_weights", true, &a.UntieEmbeddingsAndOutputWeights, c.UntieEmbeddingsAndOutputWeights)
	set("normalization", true, &a.Normalization, c.Normalization)
	if a.tokenizerType() == "" {
		if v, ok := ns.Get("tokenizer_type"); ok {
			if s, ok := v.(string); ok && s != "" {
				set("tokenizer_type", false, &a.TokenizerType, s)
			}
		}
	}
	set("padded_vocab_size", false, &a.PaddedVocabSize, c.PaddedVocabSize)
	// gomegatron's attributes for families Megatron's GPT lacks (BLOOM, Falcon, Mistral),
	// Pai's use_normhead (Baichuan 2), and the architecture 240126's list leaves out: what
	// later Megatron takes too (add_qkv_bias, rotary_base, rotary_interleaved, squared_relu, apply_layernorm_1p,
	// num_experts, moe_router_topk, moe_grouped_gemm, the router's and shared experts'
	// attributes) and qk_layernorm, norm_epsilon, openai_gelu, use_rope_scaling,
	// rope_scaling_factor. A
	// checkpoint that records one is described by it, so it follows the checkpoint too
	// (a Qwen2 resumed without --add-qkv-bias and --rotary-base 1000000 would otherwise
	// fail to load, or silently train with the wrong RoPE base).
	for _, x := range []struct {
		name string
		dst  any
		v    any
	}{{"embedding_layernorm", &a.EmbeddingLayerNorm, c.EmbeddingLayerNorm}, {"parallel_attention", &a.ParallelAttention, c.ParallelAttention},
		{"parallel_attention_mlp_norm", &a.ParallelMLPNorm, c.ParallelMLPNorm},
		{"sliding_window", &a.SlidingWindow, c.SlidingWindow}, {"alibi_before_scale", &a.ALiBiBeforeScale, c.ALiBiBeforeScale},
		{"use_normhead", &a.UseNormHead, c.UseNormHead}, {"qk_layernorm", &a.QKLayernorm, c.QKLayernorm},
		{"add_qkv_bias", &a.AddQKVBias, c.AddQKVBias}, {"rotary_base", &a.RotaryBase, c.RotaryBase},
		{"rotary_interleaved", &a.RotaryInterleaved, c.RotaryInterleaved},
		{"multi_latent_attention", &a.MultiLatentAttention, c.MultiLatentAttention},
		{"q_lora_rank", &a.QLoRARank, c.QLoRARank}, {"kv_lora_rank", &a.KVLoRARank, c.KVLoRARank},
		{"qk_head_dim", &a.QKHeadDim, c.QKHeadDim}, {"qk_pos_emb_head_dim", &a.QKPosEmbHeadDim, c.QKPosEmbHeadDim},
		{"v_head_dim", &a.VHeadDim, c.VHeadDim}, {"rope_type", &a.RopeType, c.RopeType},
		{"rotary_scaling_factor", &a.YarnScalingFactor, c.YarnScalingFactor},
		{"yarn_original_max_position_embeddings", &a.YarnOrigMaxPositions, c.YarnOrigMaxPositions},
		{"yarn_beta_fast", &a.YarnBetaFast, c.YarnBetaFast}, {"yarn_beta_slow", &a.YarnBetaSlow, c.YarnBetaSlow},
		{"mscale", &a.YarnMScale, c.YarnMScale}, {"mscale_all_dim", &a.YarnMScaleAllDim, c.YarnMScaleAllDim},
		{"yarn_correction_range_round_to_int", &a.YarnCorrectionRoundToInt, c.YarnCorrectionRoundToInt},
		{"squared_relu", &a.SquaredReLU, c.SquaredReLU}, {"apply_layernorm_1p", &a.ApplyLayernorm1p, c.ApplyLayernorm1p},
		{"openai_gelu", &a.OpenAIGeLU, c.OpenAIGeLU},
		{"norm_epsilon", &a.NormEpsilon, c.NormEpsilon}, {"moe_grouped_gemm", &a.MoEGroupedGemm, c.MoEGroupedGemm},
		{"num_experts", &a.NumExperts, c.NumExperts}, {"moe_router_topk", &a.MoERouterTopK, c.MoERouterTopK},
		{"moe_router_pre_softmax", &a.MoERouterPreSoftmax, c.MoERouterPreSoftmax},
		{"moe_router_score_function", &a.MoERouterScoreFunction, c.MoERouterScoreFunction},
		{"moe_router_topk_scaling_factor", &a.MoERouterTopKScaling, c.MoERouterTopKScaling},
		{"moe_router_num_groups", &a.MoERouterNumGroups, c.MoERouterNumGroups}, {"moe_router_group_topk", &a.MoERouterGroupTopK, c.MoERouterGroupTopK},
		{"moe_router_enable_expert_bias", &a.MoERouterEnableExpertBias, c.MoERouterEnableExpertBias},
		{"moe_ffn_hidden_size", &a.MoEFFNHiddenSize, c.MoEFFNHiddenSize}, {"moe_layer_freq", &a.MoELayerFreq, c.MoELayerFreq},
		{"moe_shared_expert_intermediate_size", &a.MoESharedExpertIntermediateSize, c.MoESharedExpertIntermediateSize},
		{"moe_shared_expert_gate", &a.MoESharedExpertGate, c.MoESharedExpertGate},
		{"use_rope_scaling", &a.UseRopeScaling, c.UseRopeScaling}, {"rope_scaling_factor", &a.RopeScalingFactor, c.RopeScalingFactor}} {
		if v, ok := ns.Get(x.name); ok && v != nil { // None: Megatron's unset
			set(x.name, true, x.dst, x.v)
		}
	}
	set("tensor_model_parallel_size", true, &a.TensorModelParallelSize, info.TP)
	set("pipeline_model_parallel_size", true, &a.PipelineModelParallelSize, info.PP)
	return lines, nil
}
