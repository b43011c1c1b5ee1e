package hf

import (
	"encoding/json"
	"fmt"
	"slices"

	"github.com/gomegatron/gomegatron/layers"
)

// mixtralConfig holds the config.json keys of transformers' MixtralConfig, pre-set to its
// defaults (a key absent from the file keeps them). Pointers tell null from absent where
// null means something else: num_key_value_heads null is num_attention_heads, head_dim
// null is hidden_size / num_attention_heads, sliding_window null is full attention.
type mixtralConfig struct {
	VocabSize        int              `json:"vocab_size"`
	HiddenSize       int              `json:"hidden_size"`
	Intermediate     int              `json:"intermediate_size"`
	NumLayers        int              `json:"num_hidden_layers"`
	NumHeads         int              `json:"num_attention_heads"`
	NumKVHeads       *int             `json:"num_key_value_heads"`
	HeadDim          *int             `json:"head_dim"`
	HiddenAct        string           `json:"hidden_act"`
	MaxPos           int              `json:"max_position_embeddings"`
	RMSNormEps       float64          `json:"rms_norm_eps"`
	TieWord          bool             `json:"tie_word_embeddings"`
	RopeTheta        float64          `json:"rope_theta"`
	RopeScaling      *json.RawMessage `json:"rope_scaling"`
	RopeParameters   *json.RawMessage `json:"rope_parameters"` // transformers ≥ 5 writes rope_theta here
	SlidingWindow    *int             `json:"sliding_window"`
	NumExperts       int              `json:"num_local_experts"`
	TopK             int              `json:"num_experts_per_tok"`
	RouterAuxLossCoe float64          `json:"router_aux_loss_coef"`
	AttentionBias    bool             `json:"attention_bias"`
}

// mixtralDefaults are MixtralConfig's defaults (Mixtral-8x7B).
func mixtralDefaults() mixtralConfig {
	kv := 8
	return mixtralConfig{VocabSize: 32000, HiddenSize: 4096, Intermediate: 14336, NumLayers: 32, NumHeads: 32,
		NumKVHeads: &kv, HiddenAct: "silu", MaxPos: 4096 * 32, RMSNormEps: 1e-5, RopeTheta: 1e6,
		NumExperts: 8, TopK: 2, RouterAuxLossCoe: 0.001}
}

// readMixtral translates a Mixtral config.json (path, contents b) into the Megatron
// architecture: Mistral's (RMSNorm, SwiGLU, RoPE, no biases, untied output unless
// tie_word_embeddings) with num_local_experts → --num-experts, num_experts_per_tok →
// --moe-router-topk and router_aux_loss_coef → --moe-aux-loss-coeff; intermediate_size is
// each expert's FFN. router_jitter_noise (training-time input noise, 0 in the released
// models) is not carried: gomegatron's router has no jitter.
func readMixtral(path string, b []byte) (layers.Config, error) {
	rc := mixtralDefaults()
	if err := json.Unmarshal(b, &rc); err != nil {
		return layers.Config{}, fmt.Errorf("%s: %w", path, err)
	}
	rope, err := ropeConfig(path, rc.RopeScaling, rc.RopeParameters)
	if err != nil {
		return layers.Config{}, err
	}
	if rc.HiddenAct != "silu" {
		return layers.Config{}, fmt.Errorf("%s: hidden_act %q is not supported (want silu)", path, rc.HiddenAct)
	}
	if rc.AttentionBias {
		return layers.Config{}, fmt.Errorf("%s: attention_bias true is not supported in a mixture-of-experts model", path)
	}
	if rc.NumExperts < 1 || rc.TopK < 1 || rc.TopK > rc.NumExperts {
		return layers.Config{}, fmt.Errorf("%s: num_local_experts %d and num_experts_per_tok %d: want 1 ≤ num_experts_per_tok ≤ num_local_experts", path, rc.NumExperts, rc.TopK)
	}
	c := layers.Defaults()
	c.AttentionDropout, c.HiddenDropout = 0, 0
	c.MakeVocabSizeDivisibleBy = 1
	c.VocabSize = rc.VocabSize
	c.NumLayers, c.HiddenSize, c.FFNHiddenSize = rc.NumLayers, rc.HiddenSize, rc.Intermediate
	c.NumAttentionHeads = rc.NumHeads
	kv := rc.NumHeads
	if rc.NumKVHeads != nil {
		kv = *rc.NumKVHeads
	}
	c.GroupQueryAttention, c.NumQueryGroups = kv != rc.NumHeads, kv
	if rc.HeadDim != nil {
		c.KVChannels = *rc.HeadDim
	}
	c.Normalization, c.NormEpsilon = "RMSNorm", rc.RMSNormEps
	c.SwiGLU = true
	c.PositionEmbeddingType = "rope"
	c.RotaryBase = rc.RopeTheta
	rope.apply(&c)
	c.MaxPositionEmbeddings, c.SeqLength = rc.MaxPos, rc.MaxPos
	c.DisableBiasLinear = true
	c.UntieEmbeddingsAndOutputWeights = !rc.TieWord
	if rc.SlidingWindow != nil {
		c.SlidingWindow = *rc.SlidingWindow
	}
	c.NumExperts, c.MoERouterTopK = rc.NumExperts, rc.TopK
	c.MoERouterLoadBalancingType = "aux_loss"
	c.MoEAuxLossCoeff, c.MoEZLossCoeff = rc.RouterAuxLossCoe, 0
	return c, nil
}

// HasExperts reports whether the family's MLP is a mixture of experts.
func (f Family) HasExperts() bool {
	return f == Mixtral || f == Qwen3MoE || f == Qwen2MoE || f == Deepseek || f == DeepseekV2 || f == DeepseekV3
}

// latent reports whether the family's attention is multi-latent (DeepSeek-V2's and V3's).
func (f Family) latent() bool { return f == DeepseekV2 || f == DeepseekV3 }

// deepseekConfig holds DeepSeek-MoE's config.json keys (its remote DeepseekConfig) beyond
// Llama's, pre-set to their defaults, and DeepSeek-V2's and V3's router keys
// (DeepseekV2Config, DeepseekV3Config).
type deepseekConfig struct {
	Routed       *int     `json:"n_routed_experts"`
	Shared       *int     `json:"n_shared_experts"`
	TopK         int      `json:"num_experts_per_tok"`
	MoEFFN       int      `json:"moe_intermediate_size"`
	DenseFFN     int      `json:"intermediate_size"`
	FirstDense   int      `json:"first_k_dense_replace"`
	LayerFreq    int      `json:"moe_layer_freq"`
	NormTopK     bool     `json:"norm_topk_prob"`
	ScoringFunc  string   `json:"scoring_func"`
	AuxAlpha     float64  `json:"aux_loss_alpha"`
	SeqAux       *bool    `json:"seq_aux"`
	AttnBias     bool     `json:"attention_bias"`
	RopeTheta    *float64 `json:"rope_theta"`
	NumLayers    int      `json:"num_hidden_layers"`
	NumHeads     int      `json:"num_attention_heads"`
	NumKVHeads   *int     `json:"num_key_value_heads"`
	MaxPositions int      `json:"max_position_embeddings"`

	// DeepSeek-V2 and V3
	RoutedScaling float64 `json:"routed_scaling_factor"`
	TopKMethod    string  `json:"topk_method"`
	NGroup        *int    `json:"n_group"`
	TopKGroup     *int    `json:"topk_group"`
}

// readDeepseek translates DeepSeek-MoE's config.json (DeepseekForCausalLM, remote code)
// and, for family DeepseekV2, DeepSeek-V2's (DeepseekV2ForCausalLM): Llama's attention
// (DeepSeek-V2: multi-latent attention, see readMLA); layer i has experts when
// i ≥ first_k_dense_replace and i % moe_layer_freq = 0, the others the dense
// intermediate_size MLP; n_routed_experts experts of moe_intermediate_size with the top k
// of the softmax (renormalised only with norm_topk_prob and k > 1: else
// --moe-router-pre-softmax); n_shared_experts·moe_intermediate_size of ungated shared
// experts. The aux loss keeps aux_loss_alpha, per sequence with seq_aux (its default):
// --moe-router-load-balancing-type seq_aux_loss. DeepSeek-V2's routed_scaling_factor,
// where it scales the weights, is --moe-router-topk-scaling-factor. DeepSeek-V2's router is read where it is this one: greedy top k (or
// group_limited_greedy keeping every group) and routed_scaling_factor 1 wherever it
// scales the weights. Family DeepseekV3 is DeepSeek-V2's layout with DeepSeek-V3's router
// and DeepseekV3Config's defaults (readDeepseekV3).
func readDeepseek(path string, b []byte, family Family) (layers.Config, error) {
	// topk_method absent is read as greedy, transformers' DeepseekV2Config default (the remote
	// one's, "gready", is a typo its MoEGate cannot run).
	rc := deepseekConfig{TopK: 6, MoEFFN: 1407, DenseFFN: 11008, LayerFreq: 1, ScoringFunc: "softmax", AuxAlpha: 0.001,
		RoutedScaling: 1, TopKMethod: "greedy"}
	if family == DeepseekV3 {
		rc = deepseekV3Defaults()
	}
	if err := json.Unmarshal(b, &rc); err != nil {
		return layers.Config{}, fmt.Errorf("%s: %w", path, err)
	}
	// DeepseekMoE/DeepseekV2MoE renormalise the top-k weights only when top_k > 1; else
	// (and without norm_topk_prob) they are the softmax's own, times routed_scaling_factor.
	renorm := rc.NormTopK && rc.TopK > 1
	switch {
	case rc.Routed == nil || *rc.Routed < 1:
		if family != Deepseek {
			return layers.Config{}, fmt.Errorf("%s: n_routed_experts %v: a %s model without experts is not supported", path, intOrNull(rc.Routed), family)
		}
		return layers.Config{}, fmt.Errorf("%s: n_routed_experts %v: a deepseek model without experts is not supported (convert it as llama)", path, intOrNull(rc.Routed))
	case family == DeepseekV3 && rc.ScoringFunc != "sigmoid":
		return layers.Config{}, fmt.Errorf("%s: scoring_func %q is not supported (DeepSeek-V3's noaux_tc router scores with sigmoid)", path, rc.ScoringFunc)
	case family != DeepseekV3 && rc.ScoringFunc != "softmax":
		return layers.Config{}, fmt.Errorf("%s: scoring_func %q is not supported (softmax is)", path, rc.ScoringFunc)
	case rc.LayerFreq < 1 || rc.FirstDense < 0:
		return layers.Config{}, fmt.Errorf("%s: moe_layer_freq %d, first_k_dense_replace %d: want ≥ 1 and ≥ 0", path, rc.LayerFreq, rc.FirstDense)
	case rc.AttnBias:
		return layers.Config{}, fmt.Errorf("%s: attention_bias true is not supported", path)
	case family != DeepseekV2:
	case rc.RoutedScaling <= 0:
		return layers.Config{}, fmt.Errorf("%s: routed_scaling_factor %v: want > 0", path, rc.RoutedScaling)
	case rc.TopKMethod == "group_limited_greedy" && (rc.NGroup == nil || rc.TopKGroup == nil || *rc.TopKGroup < *rc.NGroup):
		return layers.Config{}, fmt.Errorf("%s: topk_method group_limited_greedy with n_group %v, topk_group %v: group-limited routing (Megatron's --moe-router-num-groups, --moe-router-group-topk) is not supported; greedy is, and groups that are all kept",
			path, intOrNull(rc.NGroup), intOrNull(rc.TopKGroup))
	case rc.TopKMethod != "greedy" && rc.TopKMethod != "group_limited_greedy":
		return layers.Config{}, fmt.Errorf("%s: topk_method %q is not supported (greedy is; noaux_tc is DeepSeek-V3's biased, group-limited routing: model_type deepseek_v3)", path, rc.TopKMethod)
	}
	theta := 10000.0 // DeepseekConfig's default (Mixtral's is 1e6)
	if rc.RopeTheta != nil {
		theta = *rc.RopeTheta
	}
	set := map[string]any{"num_local_experts": *rc.Routed, "num_experts_per_tok": rc.TopK,
		"intermediate_size": rc.MoEFFN, "router_aux_loss_coef": rc.AuxAlpha, "rope_theta": theta, "sliding_window": nil}
	if family.latent() { // readMLA reads the RoPE; MLA has no key-value heads
		set["rope_scaling"], set["rope_parameters"], set["num_key_value_heads"], set["head_dim"] = nil, nil, nil, nil
	}
	if family == DeepseekV3 { // DeepseekV3Config's defaults where Mixtral's differ
		set["max_position_embeddings"] = rc.MaxPositions
		var keys map[string]json.RawMessage
		if err := json.Unmarshal(b, &keys); err != nil {
			return layers.Config{}, fmt.Errorf("%s: %w", path, err)
		}
		for k, v := range map[string]any{"vocab_size": 129280, "hidden_size": 7168, "num_hidden_layers": 61, "num_attention_heads": 128, "rms_norm_eps": 1e-6} {
			if _, ok := keys[k]; !ok {
				set[k] = v
			}
		}
	}
	c, err := readAsMixtral(path, b, set)
	if err != nil {
		return layers.Config{}, err
	}
	c.MoERouterPreSoftmax = !renorm
	if family == DeepseekV2 && !renorm && rc.RoutedScaling != 1 { // MoEGate scales the weights it does not renormalise
		c.MoERouterTopKScaling = rc.RoutedScaling
	}
	if rc.SeqAux == nil || *rc.SeqAux {
		c.MoERouterLoadBalancingType = "seq_aux_loss"
	}
	if rc.Shared != nil && *rc.Shared > 0 {
		c.MoESharedExpertIntermediateSize = *rc.Shared * rc.MoEFFN
	}
	if family == DeepseekV3 {
		if err := readDeepseekV3(path, b, rc, &c); err != nil {
			return layers.Config{}, err
		}
	}
	if err := withDenseLayers(&c, func(i int) bool { return i >= rc.FirstDense && i%rc.LayerFreq == 0 }, rc.DenseFFN, rc.MoEFFN); err != nil {
		return layers.Config{}, fmt.Errorf("%s: first_k_dense_replace %d, moe_layer_freq %d: %w", path, rc.FirstDense, rc.LayerFreq, err)
	}
	if family.latent() {
		if err := readMLA(path, b, &c, family); err != nil {
			return layers.Config{}, err
		}
	}
	if family == DeepseekV3 {
		return c, deepseekV3RoPE(path, b, &c)
	}
	return c, nil
}

// intOrNull renders an optional config.json integer.
func intOrNull(p *int) any {
	if p == nil {
		return "null"
	}
	return *p
}

// readAsMixtral reads config.json b with Mixtral's reader after replacing the keys in set.
func readAsMixtral(path string, b []byte, set map[string]any) (layers.Config, error) {
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(b, &keys); err != nil {
		return layers.Config{}, fmt.Errorf("%s: %w", path, err)
	}
	for k, v := range set {
		keys[k], _ = json.Marshal(v)
	}
	mixtralKeys, err := json.Marshal(keys)
	if err != nil {
		return layers.Config{}, err
	}
	return readMixtral(path, mixtralKeys)
}

// withDenseLayers gives c experts in the layers moe reports and the dense denseFFN MLP in
// the others (--moe-layer-freq, --moe-ffn-hidden-size moeFFN), when there are others.
func withDenseLayers(c *layers.Config, moe func(i int) bool, denseFFN, moeFFN int) error {
	pattern := make([]int, c.NumLayers)
	for i := range pattern {
		if moe(i) {
			pattern[i] = 1
		}
	}
	switch {
	case !slices.Contains(pattern, 0):
		return nil
	case !slices.Contains(pattern, 1):
		return fmt.Errorf("no layer has experts")
	}
	c.MoELayerFreq = layers.MoELayerList(pattern)
	c.FFNHiddenSize, c.MoEFFNHiddenSize = denseFFN, moeFFN
	return nil
}

// deepseekConfigKeys sets DeepSeek-MoE's config.json keys: its experts, ungated shared
// experts as n_shared_experts of the experts' size, and the dense layers as the first
// first_k_dense_replace (other patterns have no DeepseekConfig); for DeepSeek-V2 (family
// DeepseekV2) also its multi-latent attention (mlaConfigKeys) and greedy routing, for
// DeepSeek-V3 its attention and router (deepseekV3ConfigKeys).
func deepseekConfigKeys(m map[string]any, cfg *layers.Config, family Family) error {
	first := 0
	for first < cfg.NumLayers && !cfg.IsMoELayer(first) {
		first++
	}
	for i := first; i < cfg.NumLayers; i++ {
		if !cfg.IsMoELayer(i) {
			return fmt.Errorf("a %s model's dense layers come first (first_k_dense_replace); the checkpoint's moe_layer_freq is %s", family, cfg.MoELayerFreq)
		}
	}
	shared := cfg.MoESharedExpertIntermediateSize
	switch {
	case cfg.NumExperts < 1 || cfg.QKLayernorm && family == Deepseek || cfg.AddBiasLinear() || cfg.AddQKVBias || cfg.SlidingWindow > 0 || cfg.MoESharedExpertGate:
		return fmt.Errorf("a %s model needs experts, no biases, no head norms, no sliding window and ungated shared experts", family)
	case shared%cfg.ExpertFFN() != 0:
		return fmt.Errorf("a %s model's shared experts are n_shared_experts × moe_intermediate_size; the checkpoint has %d and %d", family, shared, cfg.ExpertFFN())
	}
	m["architectures"] = []string{"DeepseekForCausalLM"}
	m["n_routed_experts"] = cfg.NumExperts
	m["n_shared_experts"] = nil
	if shared > 0 {
		m["n_shared_experts"] = shared / cfg.ExpertFFN()
	}
	m["num_experts_per_tok"] = cfg.MoERouterTopK
	m["moe_intermediate_size"] = cfg.ExpertFFN()
	m["intermediate_size"] = cfg.FFNHiddenSize
	m["first_k_dense_replace"] = first
	m["moe_layer_freq"] = 1
	m["norm_topk_prob"] = !cfg.MoERouterPreSoftmax
	m["scoring_func"] = "softmax"
	m["aux_loss_alpha"] = cfg.MoEAuxLossCoeff
	m["seq_aux"] = cfg.MoERouterLoadBalancingType == "seq_aux_loss"
	m["attention_bias"] = false
	for _, k := range []string{"num_local_experts", "router_aux_loss_coef", "sliding_window", "use_sliding_window", "mlp_bias", "head_dim"} {
		delete(m, k)
	}
	if family == DeepseekV3 {
		return deepseekV3ConfigKeys(m, cfg)
	}
	v2Scaled := family == DeepseekV2 && cfg.MoERouterScoreFunction == "softmax" && !cfg.MoERouterEnableExpertBias && cfg.MoERouterNumGroups == 0
	if sigmoidRouter(cfg) && !v2Scaled {
		return fmt.Errorf("a %s model's router takes the top k of the softmax; this checkpoint's (--moe-router-score-function %s, expert bias %v, %d groups, top-k scaling %v) converts to deepseek_v3",
			family, cfg.MoERouterScoreFunction, cfg.MoERouterEnableExpertBias, cfg.MoERouterNumGroups, cfg.MoERouterTopKScaling)
	}
	if family == DeepseekV2 {
		m["architectures"] = []string{"DeepseekV2ForCausalLM"}
		m["routed_scaling_factor"] = 1.0
		if f := cfg.MoERouterTopKScaling; f != 0 && f != 1 {
			if !cfg.MoERouterPreSoftmax { // DeepSeek-V2's MoEGate scales only weights it does not renormalise
				return fmt.Errorf("a deepseek_v2 model scales only weights it does not renormalise; this checkpoint scales renormalised top-k weights by %v", f)
			}
			m["routed_scaling_factor"] = f
		}
		m["topk_method"] = "greedy"
		return mlaConfigKeys(m, cfg, family)
	}
	return nil
}

// sigmoidRouter reports whether cfg's router has any of DeepSeek-V3's options (sigmoid
// scores, the expert bias, group-limited routing, scaled weights).
func sigmoidRouter(cfg *layers.Config) bool {
	return cfg.MoERouterScoreFunction == "sigmoid" || cfg.MoERouterEnableExpertBias || cfg.MoERouterNumGroups > 0 ||
		cfg.MoERouterTopKScaling != 0 && cfg.MoERouterTopKScaling != 1
}

// qwenMoEConfig holds the config.json keys of transformers' Qwen3MoeConfig and
// Qwen2MoeConfig that differ from Mixtral's, pre-set to their defaults.
type qwenMoEConfig struct {
	NumExperts     int     `json:"num_experts"`
	MoEFFN         int     `json:"moe_intermediate_size"`
	SharedFFN      int     `json:"shared_expert_intermediate_size"`
	NormTopK       bool    `json:"norm_topk_prob"`
	SparseStep     int     `json:"decoder_sparse_step"`
	MLPOnlyLayers  []int   `json:"mlp_only_layers"`
	UseSliding     bool    `json:"use_sliding_window"`
	RouterAuxCoeff float64 `json:"router_aux_loss_coef"`
	QKVBias        *bool   `json:"qkv_bias"`
	DenseFFN       int     `json:"intermediate_size"` // the MLP of mlp_only_layers
}

// readQwenMoE translates a Qwen3-MoE (Qwen3MoeForCausalLM) or Qwen1.5/Qwen2-MoE
// (Qwen2MoeForCausalLM) config.json: Mixtral's translation for the shared keys, then
// num_experts → --num-experts, moe_intermediate_size → each expert's FFN, no sliding
// window, and Qwen3's head norms or Qwen2's QKV bias with its gated shared expert
// (shared_expert_intermediate_size → --moe-shared-expert-intermediate-size and
// --moe-shared-expert-gate). Megatron's router softmaxes the top-k logits, which is
// Hugging Face's top-k of the softmax renormalised (norm_topk_prob true);
// norm_topk_prob false is --moe-router-pre-softmax. Only configurations with an MoE block
// in every layer are read.
func readQwenMoE(path string, b []byte, family Family) (layers.Config, error) {
	rc := qwenMoEConfig{NumExperts: 128, MoEFFN: 768, SparseStep: 1, RouterAuxCoeff: 0.001, DenseFFN: 6144}
	if family == Qwen2MoE {
		rc.NumExperts, rc.MoEFFN, rc.SharedFFN, rc.DenseFFN = 60, 1408, 5632, 5632
	}
	if err := json.Unmarshal(b, &rc); err != nil {
		return layers.Config{}, fmt.Errorf("%s: %w", path, err)
	}
	switch {
	case family == Qwen2MoE && rc.SharedFFN <= 0:
		return layers.Config{}, fmt.Errorf("%s: shared_expert_intermediate_size %d: want a positive size (Qwen2MoeSparseMoeBlock always has its shared expert)", path, rc.SharedFFN)
	case rc.SparseStep < 1:
		return layers.Config{}, fmt.Errorf("%s: decoder_sparse_step %d: want ≥ 1", path, rc.SparseStep)
	}
	// Mixtral's reader with Qwen3-MoE's names for the expert count, FFN and aux loss.
	c, err := readAsMixtral(path, b, map[string]any{"num_local_experts": rc.NumExperts, "intermediate_size": rc.MoEFFN,
		"router_aux_loss_coef": rc.RouterAuxCoeff})
	if err != nil {
		return layers.Config{}, err
	}
	c.MoERouterPreSoftmax = !rc.NormTopK
	// Layer i has experts unless listed in mlp_only_layers or (i+1) % decoder_sparse_step ≠ 0
	// (Qwen2MoeDecoderLayer's rule); the others have the dense intermediate_size MLP.
	if err := withDenseLayers(&c, func(i int) bool { return !slices.Contains(rc.MLPOnlyLayers, i) && (i+1)%rc.SparseStep == 0 },
		rc.DenseFFN, rc.MoEFFN); err != nil {
		return layers.Config{}, fmt.Errorf("%s: decoder_sparse_step %d, mlp_only_layers %v: %w", path, rc.SparseStep, rc.MLPOnlyLayers, err)
	}
	if family == Qwen2MoE {
		c.AddQKVBias = rc.QKVBias == nil || *rc.QKVBias
		c.MoESharedExpertIntermediateSize, c.MoESharedExpertGate = rc.SharedFFN, true
	} else {
		c.QKLayernorm = true
	}
	if !rc.UseSliding {
		c.SlidingWindow = 0
	}
	return c, nil
}

// moeRules maps layer L's MoE block (Megatron prefix meg = "decoder.layers.L.", Hugging
// Face prefix h = "model.layers.L.") onto Mixtral's block_sparse_moe:
//
//	meg mlp.router.weight [E, h]                         ← h block_sparse_moe.gate.weight
//	meg mlp.experts.local_experts.e.linear_fc1.weight [2F, h] ← [experts.e.w1.weight; experts.e.w3.weight]
//	meg mlp.experts.local_experts.e.linear_fc2.weight [h, F]  ← experts.e.w2.weight
//
// w1 is the SwiGLU gate and w3 the up projection (MixtralBlockSparseTop2MLP computes
// w2(silu(w1 x) · w3 x)), so fc1 = [w1; w3] is the dense layer's [gate; up].
//
// Qwen's MoE families (qwen true) name them mlp.gate and mlp.experts.e.{gate,up,down}_proj,
// and Qwen1.5/Qwen2-MoE's shared expert (shared true)
//
//	meg mlp.shared_experts.linear_fc1.weight ← [shared_expert.gate_proj; shared_expert.up_proj]
//	meg mlp.shared_experts.linear_fc2.weight ← shared_expert.down_proj
//	meg mlp.shared_experts.gate_weight [1, h] ← shared_expert_gate.weight
//
// DeepSeek-MoE, DeepSeek-V2 and V3 name their ungated shared experts
// mlp.shared_experts.{gate,up,down}_proj, and DeepSeek-V3's expert bias (bias true) is
//
//	meg mlp.router.expert_bias [E] ← h mlp.gate.e_score_correction_bias (float32)
func moeRules(add func(string, kind, ...string), meg, h string, experts int, family Family, shared, bias bool) {
	block, gate, up, down := "block_sparse_moe.", "w1", "w3", "w2"
	if family != Mixtral {
		block, gate, up, down = "mlp.", "gate_proj", "up_proj", "down_proj"
	}
	if shared {
		s := h + "mlp.shared_expert."
		if family == Deepseek || family.latent() {
			s = h + "mlp.shared_experts."
		}
		add(meg+"mlp.shared_experts.linear_fc1.weight", gateUp, s+"gate_proj.weight", s+"up_proj.weight")
		add(meg+"mlp.shared_experts.linear_fc2.weight", copyAs, s+"down_proj.weight")
		if family == Qwen2MoE {
			add(meg+"mlp.shared_experts.gate_weight", copyAs, h+"mlp.shared_expert_gate.weight")
		}
	}
	add(meg+"mlp.router.weight", copyAs, h+block+"gate.weight")
	if bias {
		add(meg+"mlp.router.expert_bias", copyAs, h+block+"gate.e_score_correction_bias")
	}
	for e := 0; e < experts; e++ {
		me := fmt.Sprintf("%smlp.experts.local_experts.%d.", meg, e)
		he := fmt.Sprintf("%s%sexperts.%d.", h, block, e)
		add(me+"linear_fc1.weight", gateUp, he+gate+".weight", he+up+".weight")
		add(me+"linear_fc2.weight", copyAs, he+down+".weight")
	}
}

// mixtralConfigKeys sets the MoE and Mixtral-specific keys of a Mixtral config.json and
// drops Llama's keys that MixtralConfig does not have (an upcycled Llama's base config).
func mixtralConfigKeys(m map[string]any, cfg *layers.Config) error {
	if cfg.NumExperts < 1 {
		return fmt.Errorf("a mixtral model needs experts; the checkpoint's MLP is dense (num_experts unset)")
	}
	if cfg.AddBiasLinear() || cfg.AddQKVBias {
		return fmt.Errorf("a mixtral model has no linear biases; the checkpoint has add_bias_linear=%v, add_qkv_bias=%v", cfg.AddBiasLinear(), cfg.AddQKVBias)
	}
	if cfg.MoELayerFreq != "" {
		return fmt.Errorf("a mixtral model has experts in every layer; the checkpoint's moe_layer_freq is %s (qwen2_moe and qwen3_moe allow dense layers)", cfg.MoELayerFreq)
	}
	m["intermediate_size"] = cfg.ExpertFFN()
	if cfg.MoERouterPreSoftmax || cfg.MoESharedExpertIntermediateSize > 0 {
		return fmt.Errorf("a mixtral model renormalises the top-k scores and has no shared experts; the checkpoint has moe_router_pre_softmax=%v, moe_shared_expert_intermediate_size=%d (qwen2_moe has both)",
			cfg.MoERouterPreSoftmax, cfg.MoESharedExpertIntermediateSize)
	}
	if cfg.SlidingWindow > 0 {
		m["sliding_window"] = cfg.SlidingWindow
	} else {
		m["sliding_window"] = nil
	}
	m["num_local_experts"] = cfg.NumExperts
	m["num_experts_per_tok"] = cfg.MoERouterTopK
	m["router_aux_loss_coef"] = cfg.MoEAuxLossCoeff
	for _, k := range []string{"attention_bias", "mlp_bias", "pretraining_tp", "use_sliding_window", "max_window_layers", "auto_map"} {
		delete(m, k)
	}
	return nil
}

// qwenMoEConfigKeys sets a Qwen3-MoE or Qwen2-MoE config.json's MoE keys: every layer an
// MoE block (decoder_sparse_step 1, no mlp_only_layers), norm_topk_prob unless
// --moe-router-pre-softmax, each expert's FFN as moe_intermediate_size, and Qwen2-MoE's
// gated shared expert.
func qwenMoEConfigKeys(m map[string]any, cfg *layers.Config, family Family) error {
	shared := cfg.MoESharedExpertIntermediateSize > 0
	switch {
	case family == Qwen3MoE && (cfg.NumExperts < 1 || !cfg.QKLayernorm || cfg.AddBiasLinear() || cfg.AddQKVBias || cfg.SlidingWindow > 0 || shared):
		return fmt.Errorf("a qwen3_moe model needs experts and --qk-layernorm, no biases, no shared experts and no sliding window")
	case family == Qwen2MoE && (cfg.NumExperts < 1 || !shared || !cfg.MoESharedExpertGate || cfg.QKLayernorm || cfg.AddBiasLinear() || !cfg.AddQKVBias || cfg.SlidingWindow > 0):
		return fmt.Errorf("a qwen2_moe model needs experts, gated shared experts (--moe-shared-expert-intermediate-size, --moe-shared-expert-gate), QKV biases only, no --qk-layernorm and no sliding window")
	}
	delete(m, "intermediate_size") // the dense MLP of mlp_only_layers, when there are none
	dense := []int{}
	for i := range cfg.NumLayers {
		if !cfg.IsMoELayer(i) {
			dense = append(dense, i)
		}
	}
	if len(dense) > 0 {
		m["intermediate_size"] = cfg.FFNHiddenSize
	}
	if shared {
		m["shared_expert_intermediate_size"] = cfg.MoESharedExpertIntermediateSize
	}
	m["moe_intermediate_size"] = cfg.ExpertFFN()
	m["num_experts"] = cfg.NumExperts
	m["num_experts_per_tok"] = cfg.MoERouterTopK
	m["norm_topk_prob"] = !cfg.MoERouterPreSoftmax
	m["decoder_sparse_step"] = 1
	m["mlp_only_layers"] = dense
	m["router_aux_loss_coef"] = cfg.MoEAuxLossCoeff
	m["attention_bias"] = false
	if family == Qwen2MoE { // its q, k and v projections are always biased
		delete(m, "attention_bias")
		if cfg.KVChannels*cfg.NumAttentionHeads != cfg.HiddenSize {
			return fmt.Errorf("a qwen2_moe model's heads are hidden_size/num_attention_heads wide; the checkpoint has kv_channels %d", cfg.KVChannels)
		}
	}
	m["use_sliding_window"] = false
	delete(m, "num_local_experts")
	return nil
}
