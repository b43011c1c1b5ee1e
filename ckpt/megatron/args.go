package megatron

import (
	"fmt"
	"math"
	"slices"
	"strconv"

	"github.com/gomegatron/gomegatron/ckpt/torchpickle"
	"github.com/gomegatron/gomegatron/layers"
	"github.com/gomegatron/gomegatron/tensor"
)

// Args builds the argparse.Namespace stored under "args": Megatron's argument names
// (megatron/training/arguments.py, dest spelling) for the architecture, the parallel
// layout and the parameter dtype. Training code adds its own entries (lr, iteration,
// consumed_train_samples, …) with Set; converters store exactly these.
//
// Besides Megatron's names, four gomegatron-only attributes describe families Megatron's
// GPT lacks (Megatron ignores unknown attributes): embedding_layernorm (BLOOM),
// parallel_attention and parallel_attention_mlp_norm (Falcon), sliding_window (Mistral) and
// alibi_before_scale; and
// hf_model_type, when known, names the Hugging Face family for conversion back.
func Args(cfg layers.Config, tp, pp int, dtype tensor.DType, f Format, hfModelType string) *torchpickle.Namespace {
	ns := torchpickle.NewNamespace()
	set := ns.Set
	set("num_layers", cfg.NumLayers)
	set("hidden_size", cfg.HiddenSize)
	set("ffn_hidden_size", cfg.FFNHiddenSize)
	set("num_attention_heads", cfg.NumAttentionHeads)
	set("group_query_attention", cfg.GroupQueryAttention)
	set("num_query_groups", cfg.NumQueryGroups)
	set("kv_channels", cfg.KVChannels)
	set("seq_length", cfg.SeqLength)
	set("max_position_embeddings", cfg.MaxPositionEmbeddings)
	set("position_embedding_type", cfg.PositionEmbeddingType)
	// Megatron's default whatever the position embedding (only --no-position-embedding
	// clears it), and check_checkpoint_args compares it on every resume.
	set("add_position_embedding", true)
	set("use_rotary_position_embeddings", cfg.PositionEmbeddingType == "rope")
	set("rotary_base", cfg.RotaryBase)
	set("rotary_percent", cfg.RotaryPercent)
	set("rotary_interleaved", false)
	set("add_bias_linear", cfg.AddBiasLinear())
	set("add_qkv_bias", cfg.AddQKVBias)
	set("rotary_interleaved", cfg.RotaryInterleaved)
	if cfg.MultiLatentAttention {
		set("multi_latent_attention", true)
		var rq any // None: linear_q_proj
		if cfg.QLoRARank > 0 {
			rq = cfg.QLoRARank
		}
		set("q_lora_rank", rq)
		set("kv_lora_rank", cfg.KVLoRARank)
		set("qk_head_dim", cfg.QKHeadDim)
		set("qk_pos_emb_head_dim", cfg.QKPosEmbHeadDim)
		set("v_head_dim", cfg.VHeadDim)
		if cfg.RopeType != "" {
			set("rope_type", cfg.RopeType)
		}
	}
	if cfg.YaRN() { // Megatron-Core's flags and YarnRotaryEmbedding's attributes
		set("rotary_scaling_factor", cfg.YarnScalingFactor)
		set("yarn_original_max_position_embeddings", cfg.YarnOrigMaxPositions)
		set("yarn_beta_fast", cfg.YarnBetaFast)
		set("yarn_beta_slow", cfg.YarnBetaSlow)
		set("mscale", cfg.YarnMScale)
		set("mscale_all_dim", cfg.YarnMScaleAllDim)
		set("yarn_correction_range_round_to_int", cfg.YarnCorrectionRoundToInt)
	}
	set("qk_layernorm", cfg.QKLayernorm)
	set("use_rope_scaling", cfg.UseRopeScaling)
	set("rope_scaling_factor", cfg.RopeScalingFactor)
	set("swiglu", cfg.SwiGLU)
	set("openai_gelu", cfg.OpenAIGeLU)
	set("bias_gelu_fusion", !cfg.NoBiasGeluFusion && cfg.AddBiasLinear()) // as validate_args leaves it
	set("squared_relu", cfg.SquaredReLU)
	set("untie_embeddings_and_output_weights", cfg.UntieEmbeddingsAndOutputWeights)
	set("apply_residual_connection_post_layernorm", cfg.ApplyResidualConnectionPostLayernorm)
	set("normalization", cfg.Normalization)
	set("norm_epsilon", cfg.NormEpsilon)
	set("apply_layernorm_1p", cfg.ApplyLayernorm1p)
	if cfg.UseNormHead { // Pai's Baichuan 2 flag (Megatron has no such argument)
		set("use_normhead", true)
	}
	set("attention_dropout", cfg.AttentionDropout)
	set("hidden_dropout", cfg.HiddenDropout)
	set("init_method_std", cfg.InitMethodStd)
	set("vocab_size", cfg.VocabSize)
	set("make_vocab_size_divisible_by", cfg.MakeVocabSizeDivisibleBy)
	set("padded_vocab_size", cfg.PaddedVocabSize)
	set("orig_vocab_size", cfg.VocabSize)
	set("tensor_model_parallel_size", tp)
	set("pipeline_model_parallel_size", pp)
	set("virtual_pipeline_model_parallel_size", nil)
	set("expert_model_parallel_size", 1)
	set("data_parallel_size", 1)
	set("world_size", tp*pp)
	set("rank", 0)
	set("fp16", dtype == tensor.F16)
	set("bf16", dtype == tensor.BF16)
	set("params_dtype", dtype)
	set("use_legacy_models", f == Legacy)
	set("use_mcore_models", f != Legacy)
	impl := "local"
	if f == MCoreTE {
		impl = "transformer_engine"
	}
	set("transformer_impl", impl)
	set("use_distributed_optimizer", false)
	set("ckpt_format", "torch")
	set("consumed_train_samples", 0)
	set("consumed_valid_samples", 0)
	set("embedding_layernorm", cfg.EmbeddingLayerNorm)
	set("parallel_attention", cfg.ParallelAttention)
	set("parallel_attention_mlp_norm", cfg.ParallelMLPNorm)
	// orNone is v when it is set, else None (Megatron's default for these arguments).
	orNone := func(v any, isSet bool) any {
		if isSet {
			return v
		}
		return nil
	}
	set("sliding_window", orNone(cfg.SlidingWindow, cfg.SlidingWindow > 0))
	interp := cfg.RotarySeqLenInterpolationFactor
	set("rotary_seq_len_interpolation_factor", orNone(interp, interp != 0 && interp != 1))
	set("alibi_before_scale", cfg.ALiBiBeforeScale)
	if cfg.NumExperts > 0 {
		set("num_experts", cfg.NumExperts)
		set("moe_router_topk", cfg.MoERouterTopK)
		set("moe_router_load_balancing_type", cfg.MoERouterLoadBalancingType)
		set("moe_aux_loss_coeff", cfg.MoEAuxLossCoeff)
		set("moe_z_loss_coeff", orNone(cfg.MoEZLossCoeff, cfg.MoEZLossCoeff > 0))
		set("moe_grouped_gemm", cfg.MoEGroupedGemm)
		set("moe_router_pre_softmax", cfg.MoERouterPreSoftmax)
		set("moe_router_score_function", cfg.MoERouterScoreFunction)
		set("moe_router_topk_scaling_factor", orNone(cfg.MoERouterTopKScaling, cfg.MoERouterTopKScaling != 0))
		set("moe_router_num_groups", orNone(cfg.MoERouterNumGroups, cfg.MoERouterNumGroups != 0))
		set("moe_router_group_topk", orNone(cfg.MoERouterGroupTopK, cfg.MoERouterGroupTopK != 0))
		set("moe_router_enable_expert_bias", cfg.MoERouterEnableExpertBias)
		set("moe_router_bias_update_rate", cfg.MoERouterBiasUpdateRate)
		set("moe_ffn_hidden_size", cfg.ExpertFFN())
		set("moe_layer_freq", 1)
		if p, err := layers.MoELayerPattern(cfg.MoELayerFreq, cfg.NumLayers); err == nil && cfg.MoELayerFreq != "" {
			l := make([]any, len(p))
			for i, v := range p {
				l[i] = v
			}
			set("moe_layer_freq", l) // a list, as Megatron-Core's moe_freq_type makes it
		}
		set("moe_shared_expert_intermediate_size", orNone(cfg.MoESharedExpertIntermediateSize, cfg.MoESharedExpertIntermediateSize > 0))
		set("moe_shared_expert_gate", cfg.MoESharedExpertGate)
	} else {
		set("num_experts", nil)
	}
	if hfModelType != "" {
		set("hf_model_type", hfModelType)
	}
	if hfModelType == "gpt2" {
		// check_checkpoint_args compares tokenizer_type when --vocab-file is given, as it
		// is for GPT-2's BPE; Pai's convertor stores the same value.
		set("tokenizer_type", "GPT2BPETokenizer")
	}
	return ns
}

// ArgsInfo is what a checkpoint's args say beyond the architecture.
type ArgsInfo struct {
	TP, PP      int
	VP          int          // virtual pipeline stages (1 without)
	ParamsDType tensor.DType // Invalid when args lack params_dtype
	HFModelType string       // gomegatron's hf_model_type, "" if absent
	EP          int          // expert_model_parallel_size (1 when absent or without experts)
}

// ConfigFromArgs translates a checkpoint's args into the model configuration, applying
// Megatron's defaults for arguments older checkpoints lack. Dropout is not part of the
// weights and is set to 0; training takes it from its flags. Errors name the argument.
func ConfigFromArgs(ns *torchpickle.Namespace) (layers.Config, ArgsInfo, error) {
	a := argReader{ns: ns}
	c := layers.Defaults()
	c.AttentionDropout, c.HiddenDropout = 0, 0
	c.NumLayers = a.int("num_layers", -1)
	c.HiddenSize = a.int("hidden_size", -1)
	c.NumAttentionHeads = a.int("num_attention_heads", -1)
	c.FFNHiddenSize = a.int("ffn_hidden_size", 0)
	c.GroupQueryAttention = a.bool("group_query_attention", false)
	c.NumQueryGroups = a.int("num_query_groups", 1)
	c.KVChannels = a.int("kv_channels", 0)
	c.MaxPositionEmbeddings = a.int("max_position_embeddings", 0)
	c.SeqLength = a.int("seq_length", c.MaxPositionEmbeddings)
	pet := "learned_absolute"
	if a.bool("use_rotary_position_embeddings", false) {
		pet = "rope"
	}
	c.PositionEmbeddingType = a.str("position_embedding_type", pet)
	c.RotaryBase = a.float("rotary_base", 10000)
	c.RotaryPercent = a.float("rotary_percent", 1)
	c.ApplyLayernorm1p = a.bool("apply_layernorm_1p", false)
	c.UseNormHead = a.bool("use_normhead", false)
	c.RotarySeqLenInterpolationFactor = a.float("rotary_seq_len_interpolation_factor", 0)
	c.DisableBiasLinear = !a.bool("add_bias_linear", true)
	// validate_args clears bias_gelu_fusion without biases, where it means nothing.
	c.NoBiasGeluFusion = c.AddBiasLinear() && !a.bool("bias_gelu_fusion", true)
	c.AddQKVBias = a.bool("add_qkv_bias", false)
	c.RotaryInterleaved = a.bool("rotary_interleaved", false)
	c.MultiLatentAttention = a.bool("multi_latent_attention", false)
	c.QLoRARank, c.KVLoRARank = a.int("q_lora_rank", 0), a.int("kv_lora_rank", 32)
	c.QKHeadDim, c.QKPosEmbHeadDim, c.VHeadDim = a.int("qk_head_dim", 128), a.int("qk_pos_emb_head_dim", 64), a.int("v_head_dim", 128)
	c.RopeType = a.str("rope_type", "")
	c.YarnScalingFactor = a.float("rotary_scaling_factor", 1)
	c.YarnOrigMaxPositions = a.int("yarn_original_max_position_embeddings", 0)
	c.YarnBetaFast, c.YarnBetaSlow = a.float("yarn_beta_fast", 32), a.float("yarn_beta_slow", 1)
	c.YarnMScale, c.YarnMScaleAllDim = a.float("mscale", 1), a.float("mscale_all_dim", 0)
	c.YarnCorrectionRoundToInt = a.bool("yarn_correction_range_round_to_int", true)
	c.QKLayernorm = a.bool("qk_layernorm", false)
	c.UseRopeScaling = a.bool("use_rope_scaling", false)
	c.RopeScalingFactor = a.float("rope_scaling_factor", 8)
	c.SwiGLU = a.bool("swiglu", false)
	c.OpenAIGeLU = a.bool("openai_gelu", false)
	c.UntieEmbeddingsAndOutputWeights = a.bool("untie_embeddings_and_output_weights", false)
	c.ApplyResidualConnectionPostLayernorm = a.bool("apply_residual_connection_post_layernorm", false)
	c.Normalization = a.str("normalization", "LayerNorm")
	c.NormEpsilon = a.float("norm_epsilon", a.float("layernorm_epsilon", 1e-5))
	c.InitMethodStd = a.float("init_method_std", 0.02)
	c.PaddedVocabSize = a.int("padded_vocab_size", -1)
	c.VocabSize = a.int("vocab_size", 0)
	if c.VocabSize == 0 {
		c.VocabSize = a.int("orig_vocab_size", c.PaddedVocabSize)
	}
	c.MakeVocabSizeDivisibleBy = a.int("make_vocab_size_divisible_by", 128)
	c.EmbeddingLayerNorm = a.bool("embedding_layernorm", false)
	c.ParallelAttention = a.bool("parallel_attention", false)
	c.ParallelMLPNorm = a.bool("parallel_attention_mlp_norm", false)
	c.SlidingWindow = a.int("sliding_window", 0)
	c.ALiBiBeforeScale = a.bool("alibi_before_scale", false)
	info := ArgsInfo{
		TP: a.int("tensor_model_parallel_size", 1), PP: a.int("pipeline_model_parallel_size", 1),
		VP: max(a.int("virtual_pipeline_model_parallel_size", 1), 1), HFModelType: a.str("hf_model_type", ""), EP: 1,
	}
	if v, ok := ns.Get("params_dtype"); ok {
		if dt, ok := v.(tensor.DType); ok {
			info.ParamsDType = dt
		}
	}
	c.SquaredReLU = a.bool("squared_relu", false)
	c.NumExperts = a.int("num_experts", 0)
	if c.NumExperts > 0 {
		c.MoERouterTopK = a.int("moe_router_topk", 2)
		c.MoERouterLoadBalancingType = a.str("moe_router_load_balancing_type", "aux_loss")
		c.MoEAuxLossCoeff = a.float("moe_aux_loss_coeff", 0)
		c.MoEZLossCoeff = a.float("moe_z_loss_coeff", 0)
		c.MoEGroupedGemm = a.bool("moe_grouped_gemm", false)
		c.MoERouterPreSoftmax = a.bool("moe_router_pre_softmax", false)
		c.MoERouterScoreFunction = a.str("moe_router_score_function", "softmax")
		c.MoERouterTopKScaling = a.float("moe_router_topk_scaling_factor", 0)
		c.MoERouterNumGroups, c.MoERouterGroupTopK = a.int("moe_router_num_groups", 0), a.int("moe_router_group_topk", 0)
		c.MoERouterEnableExpertBias = a.bool("moe_router_enable_expert_bias", false)
		c.MoERouterBiasUpdateRate = a.float("moe_router_bias_update_rate", 1e-3)
		if f := a.int("moe_ffn_hidden_size", 0); f != c.FFNHiddenSize {
			c.MoEFFNHiddenSize = f
		}
		c.MoELayerFreq = a.layerFreq("moe_layer_freq", c.NumLayers)
		c.MoESharedExpertIntermediateSize = a.int("moe_shared_expert_intermediate_size", 0)
		c.MoESharedExpertGate = a.bool("moe_shared_expert_gate", false)
		info.EP = a.int("expert_model_parallel_size", 1)
		if info.EP < 1 || c.NumExperts%info.EP != 0 {
			a.fail("expert_model_parallel_size", "%d does not divide num_experts %d", info.EP, c.NumExperts)
		}
	}
	if a.err != nil {
		return c, info, a.err
	}
	if info.TP < 1 || info.PP < 1 {
		return c, info, fmt.Errorf("args: tensor_model_parallel_size %d and pipeline_model_parallel_size %d must be positive", info.TP, info.PP)
	}
	c.TensorModelParallelSize = info.TP
	if err := c.Finalize(); err != nil {
		return c, info, fmt.Errorf("args: %w", err)
	}
	return c, info, nil
}

// argReader reads typed attributes, remembering the first error.
type argReader struct {
	ns  *torchpickle.Namespace
	err error
}

func (a *argReader) fail(name, format string, v ...any) {
	if a.err == nil {
		a.err = fmt.Errorf("args.%s: %s", name, fmt.Sprintf(format, v...))
	}
}

// get returns the attribute, or ok=false when absent or None.
func (a *argReader) get(name string) (any, bool) {
	v, ok := a.ns.Get(name)
	if !ok || v == nil {
		return nil, false
	}
	return v, true
}

// int reads an integer; def < 0 marks a required argument.
func (a *argReader) int(name string, def int) int {
	v, ok := a.get(name)
	if !ok {
		if def < 0 {
			a.fail(name, "missing (required to rebuild the model)")
			return 0
		}
		return def
	}
	if n, ok := v.(int); ok { // set from Go, not yet pickled
		return n
	}
	if n, ok := torchpickle.AsInt64(v); ok {
		return int(n)
	}
	if f, ok := v.(float64); ok && f == math.Trunc(f) {
		return int(f)
	}
	a.fail(name, "is %T %v, want an int", v, v)
	return 0
}

// layerFreq reads Megatron-Core's moe_layer_freq (an int N or a list of 0s and 1s) as
// layers.Config's canonical --moe-layer-freq ("" for an MoE layer everywhere).
func (a *argReader) layerFreq(name string, layersN int) string {
	v, ok := a.get(name)
	if !ok {
		return ""
	}
	spec := ""
	if l, ok := v.([]any); ok {
		p := make([]int, len(l))
		for i, x := range l {
			n, ok := torchpickle.AsInt64(x)
			if !ok {
				if xi, isInt := x.(int); isInt {
					n, ok = int64(xi), true
				}
			}
			if !ok || n < 0 || n > 1 {
				a.fail(name, "element %d is %v, want 0 or 1", i, x)
				return ""
			}
			p[i] = int(n)
		}
		spec = layers.MoELayerList(p)
	} else {
		spec = strconv.Itoa(a.int(name, 1))
	}
	p, err := layers.MoELayerPattern(spec, layersN)
	if err != nil {
		a.fail(name, "%s: %v", spec, err)
		return ""
	}
	if !slices.Contains(p, 0) {
		return ""
	}
	return layers.MoELayerList(p)
}

func (a *argReader) bool(name string, def bool) bool {
	v, ok := a.get(name)
	if !ok {
		return def
	}
	if b, ok := v.(bool); ok {
		return b
	}
	a.fail(name, "is %T %v, want a bool", v, v)
	return def
}

func (a *argReader) float(name string, def float64) float64 {
	v, ok := a.get(name)
	if !ok {
		return def
	}
	switch x := v.(type) {
	case float64:
		return x
	case int64:
		return float64(x)
	case int:
		return float64(x)
	}
	a.fail(name, "is %T %v, want a float", v, v)
	return def
}

func (a *argReader) str(name, def string) string {
	v, ok := a.get(name)
	if !ok {
		return def
	}
	if s, ok := v.(string); ok {
		return s
	}
	a.fail(name, "is %T %v, want a string", v, v)
	return def
}
