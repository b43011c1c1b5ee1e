package hf

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/gomegatron/gomegatron/layers"
	"github.com/gomegatron/gomegatron/tensor"
)

// DeepSeek-V3 (transformers' DeepseekV3ForCausalLM and DeepSeek's remote code; also
// Moonlight-16B-A3B and Kimi-K2) is DeepSeek-V2's multi-latent attention and MLP blocks
// with another router (DeepseekV3TopkRouter, the remote MoEGate's topk_method noaux_tc):
//
//	s = σ(x·Wᵀ)                                   scores, float32
//	c = s + e_score_correction_bias                for choosing only
//	group g's score = the sum of its top 2 c       n_group groups of equal size
//	keep the topk_group best groups, the others' c masked to 0
//	the top k of c; weights s at them, / their sum (norm_topk_prob), × routed_scaling_factor
//
// which is Megatron-Core's --moe-router-score-function sigmoid with
// --moe-router-enable-expert-bias (mlp.router.expert_bias, replicated, float32),
// --moe-router-topk-scaling-factor and --moe-router-num-groups/--moe-router-group-topk
// (a group scored by its top k/group-topk, so k = 2·topk_group), renormalised exactly when
// k > 1. Megatron masks the other groups to −∞ rather than 0: the two choose alike while
// the kept groups' top k of s + bias are non-negative (σ > 0, so while the bias is not
// below −σ there).

// deepseekV3Defaults are DeepseekV3Config's defaults (DeepSeek-V3's) for the MoE keys; the
// aux loss is off (transformers' DeepseekV3 has none; the remote config's aux_loss_alpha is
// read when stated).
func deepseekV3Defaults() deepseekConfig {
	routed, shared, groups, topkGroup := 256, 1, 8, 4
	return deepseekConfig{Routed: &routed, Shared: &shared, TopK: 8, MoEFFN: 2048, DenseFFN: 18432, FirstDense: 3, LayerFreq: 1,
		NormTopK: true, ScoringFunc: "sigmoid", RoutedScaling: 2.5, TopKMethod: "noaux_tc", NGroup: &groups, TopKGroup: &topkGroup,
		MaxPositions: 4096}
}

// deepseekV3Keys are DeepSeek-V3's config.json keys beyond DeepSeek-V2's that the reader
// checks.
type deepseekV3Keys struct {
	RopeInterleave *bool           `json:"rope_interleave"`
	Quantization   json.RawMessage `json:"quantization_config"`
	NextN          *int            `json:"num_nextn_predict_layers"`
}

// readDeepseekV3 sets DeepSeek-V3's router (rc, the config.json b) in c: sigmoid scores
// with the expert bias, routed_scaling_factor as --moe-router-topk-scaling-factor (1:
// none), n_group and topk_group as --moe-router-num-groups and --moe-router-group-topk
// (none when every group is kept), norm_topk_prob true exactly when k > 1. What either
// Hugging Face implementation computes differently from Megatron-Core's router, or from
// each other, is refused naming the keys: block-FP8 weights, rope_interleave false,
// another topk_method, moe_layer_freq ≠ 1 (transformers ignores it), groups scored by
// other than their top 2.
func readDeepseekV3(path string, b []byte, rc deepseekConfig, c *layers.Config) error {
	var v3 deepseekV3Keys
	if err := json.Unmarshal(b, &v3); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	k, E := rc.TopK, *rc.Routed
	switch {
	case len(v3.Quantization) > 0 && string(v3.Quantization) != "null":
		return fmt.Errorf("%s: quantization_config %s: quantized weights (DeepSeek-V3's block FP8 with weight_scale_inv tensors) are not supported; convert a bf16 checkpoint (dequantize first, e.g. DeepSeek-V3's inference/fp8_cast_bf16.py, and drop quantization_config)",
			path, quantMethod(v3.Quantization))
	case v3.RopeInterleave != nil && !*v3.RopeInterleave:
		return fmt.Errorf("%s: rope_interleave false is not supported: Megatron-Core's multi-latent attention always de-interleaves the rotary channels (rope_interleave true, DeepSeek-V3's)", path)
	case rc.TopKMethod != "noaux_tc":
		return fmt.Errorf("%s: topk_method %q is not supported: a deepseek_v3 model routes with noaux_tc", path, rc.TopKMethod)
	case rc.LayerFreq != 1:
		return fmt.Errorf("%s: moe_layer_freq %d is not supported: transformers' DeepseekV3 puts experts in every layer from first_k_dense_replace on (the remote code every moe_layer_freq-th); 1 is", path, rc.LayerFreq)
	case v3.NextN != nil && *v3.NextN < 0:
		return fmt.Errorf("%s: num_nextn_predict_layers %d: want ≥ 0", path, *v3.NextN)
	case k < 1 || k > E:
		return fmt.Errorf("%s: num_experts_per_tok %d, n_routed_experts %d: want 1 ≤ num_experts_per_tok ≤ n_routed_experts", path, k, E)
	case k > 1 && !rc.NormTopK:
		return fmt.Errorf("%s: norm_topk_prob false with num_experts_per_tok %d is not supported: Megatron-Core's sigmoid router renormalises the top k scores when k > 1", path, k)
	case k == 1 && rc.NormTopK:
		return fmt.Errorf("%s: norm_topk_prob true with num_experts_per_tok 1 is not supported: it makes the expert's weight 1, where Megatron-Core's sigmoid router keeps σ", path)
	case rc.RoutedScaling <= 0:
		return fmt.Errorf("%s: routed_scaling_factor %v: want > 0", path, rc.RoutedScaling)
	}
	c.MoERouterScoreFunction, c.MoERouterEnableExpertBias, c.MoERouterPreSoftmax = "sigmoid", true, false
	c.MoERouterTopKScaling = rc.RoutedScaling
	if rc.RoutedScaling == 1 {
		c.MoERouterTopKScaling = 0
	}
	c.MoERouterNumGroups, c.MoERouterGroupTopK = 0, 0
	g, gk := 1, 1
	if rc.NGroup != nil {
		g = *rc.NGroup
	}
	if rc.TopKGroup != nil {
		gk = *rc.TopKGroup
	}
	switch {
	case g < 1 || gk < 1 || gk > g || E%g != 0 || E/g < 2:
		return fmt.Errorf("%s: n_group %v, topk_group %v with n_routed_experts %d: want groups of at least 2 experts dividing them, 1 ≤ topk_group ≤ n_group",
			path, intOrNull(rc.NGroup), intOrNull(rc.TopKGroup), E)
	case g == 1 || gk == g: // every group kept: no group limit
	case k != 2*gk:
		return fmt.Errorf("%s: n_group %d, topk_group %d with num_experts_per_tok %d is not supported: DeepSeek-V3 scores a group by its top 2 experts, Megatron-Core's --moe-router-group-topk by its top num_experts_per_tok/topk_group, so num_experts_per_tok must be 2·topk_group",
			path, g, gk, k)
	default:
		c.MoERouterNumGroups, c.MoERouterGroupTopK = g, gk
	}
	return nil
}

// quantMethod names a quantization_config's quant_method (its text when it has none).
func quantMethod(raw json.RawMessage) string {
	var q struct {
		Method string `json:"quant_method"`
	}
	if json.Unmarshal(raw, &q) == nil && q.Method != "" {
		return strconv.Quote(q.Method)
	}
	return string(raw)
}

// deepseekV3RoPE checks that DeepSeek-V3's YaRN (read by deepseekRoPE as the remote code
// computes it) is also transformers': its _compute_yarn_parameters takes the factor as
// max_position_embeddings / original_max_position_embeddings (original: max_position_embeddings
// when unstated, the remote code's 4096), and its cos/sin scale as m(mscale)/m(mscale_all_dim)
// only when both are non-zero, else m(1).
func deepseekV3RoPE(path string, b []byte, c *layers.Config) error {
	if !c.YaRN() {
		return nil
	}
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(b, &keys); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	key, raw := ropeKey(keys)
	var rs ropeScalingKeys
	if err := json.Unmarshal(raw, &rs); err != nil {
		return fmt.Errorf("%s: %s: %w", path, key, err)
	}
	maxPos, f := c.MaxPositionEmbeddings, c.YarnScalingFactor
	switch {
	case rs.OrigMax == nil && maxPos != 4096:
		return fmt.Errorf("%s: %s without original_max_position_embeddings: transformers' DeepseekV3 takes max_position_embeddings %d as the original length, the remote code 4096; state it", path, key, maxPos)
	case rs.OrigMax != nil && (*rs.OrigMax <= 0 || math.Abs(float64(maxPos)/float64(*rs.OrigMax)-f) > 1e-9*f):
		return fmt.Errorf("%s: %s factor %v with max_position_embeddings %d and original_max_position_embeddings %d: transformers' DeepseekV3 scales by max_position_embeddings / original_max_position_embeddings, the remote code by factor; they must agree",
			path, key, f, maxPos, *rs.OrigMax)
	}
	both := rs.MScale != nil && *rs.MScale != 0 && rs.MScaleAllDim != nil && *rs.MScaleAllDim != 0
	plain := layers.Config{PositionEmbeddingType: "yarn", YarnScalingFactor: f, YarnMScale: 1}
	if got, want := c.RoPEScaling().Concentration, plain.RoPEScaling().Concentration; !both && rs.AttnFact == nil && math.Abs(got-want) > 1e-12*want {
		return fmt.Errorf("%s: %s mscale %v, mscale_all_dim %v: transformers' DeepseekV3 scales cos and sin by %v, the remote code by %v; state both (or neither)",
			path, key, c.YarnMScale, c.YarnMScaleAllDim, want, got)
	}
	return nil
}

// deepseekV3ConfigKeys sets DeepSeek-V3's config.json keys over DeepSeek-MoE's (set by
// deepseekConfigKeys): the attention (mlaConfigKeys, rope_interleave true, with YaRN
// max_position_embeddings = factor · original_max_position_embeddings as transformers
// reads it) and the router, which needs sigmoid scores with the expert bias, renormalised
// over the top k (norm_topk_prob, k > 1), and groups scored by their top 2. quantization_config
// is dropped (the weights written are not quantized), and num_nextn_predict_layers is 0: the
// multi-token-prediction layers are not part of the model.
func deepseekV3ConfigKeys(m map[string]any, cfg *layers.Config) error {
	k, g, gk := cfg.MoERouterTopK, cfg.MoERouterNumGroups, cfg.MoERouterGroupTopK
	switch {
	case cfg.MoERouterScoreFunction != "sigmoid" || !cfg.MoERouterEnableExpertBias || cfg.MoERouterPreSoftmax:
		return fmt.Errorf("a deepseek_v3 model's router takes sigmoid scores with an expert bias, renormalised over the top k; the checkpoint has --moe-router-score-function %s, --moe-router-enable-expert-bias %v, --moe-router-pre-softmax %v",
			cfg.MoERouterScoreFunction, cfg.MoERouterEnableExpertBias, cfg.MoERouterPreSoftmax)
	case g > 0 && gk < g && k != 2*gk:
		return fmt.Errorf("a deepseek_v3 model scores a group by its top 2 experts; the checkpoint's --moe-router-topk %d over --moe-router-group-topk %d scores by the top %d", k, gk, k/gk)
	}
	m["architectures"] = []string{"DeepseekV3ForCausalLM"}
	m["scoring_func"] = "sigmoid"
	m["topk_method"] = "noaux_tc"
	m["norm_topk_prob"] = k > 1
	m["routed_scaling_factor"] = 1.0
	if f := cfg.MoERouterTopKScaling; f != 0 {
		m["routed_scaling_factor"] = f
	}
	m["n_group"], m["topk_group"] = 1, 1
	if g > 0 {
		m["n_group"], m["topk_group"] = g, gk
	}
	if m["n_shared_experts"] == nil { // DeepseekV3MoE always builds its shared experts
		m["n_shared_experts"] = 0
	}
	m["rope_interleave"] = true
	m["num_nextn_predict_layers"] = 0
	delete(m, "quantization_config")
	if err := mlaConfigKeys(m, cfg, DeepseekV3); err != nil {
		return err
	}
	if cfg.YaRN() {
		n := cfg.YarnScalingFactor * float64(cfg.YarnOrigMaxPositions)
		if n != math.Round(n) {
			return fmt.Errorf("a deepseek_v3 model's YaRN factor is max_position_embeddings / original_max_position_embeddings (transformers' reading); the checkpoint's factor %v × %d is not a whole length",
				cfg.YarnScalingFactor, cfg.YarnOrigMaxPositions)
		}
		m["max_position_embeddings"] = int(n)
	}
	return nil
}

// mtpLayer reports whether name is a tensor of DeepSeek-V3's multi-token-prediction layers,
// stored as model.layers.{num_hidden_layers + i} for i < num_nextn_predict_layers, which
// transformers does not load (and the conversion drops).
func (m *Model) mtpLayer(name string) bool {
	if m.Family != DeepseekV3 || m.raw.NextN <= 0 {
		return false
	}
	rest, ok := strings.CutPrefix(name, "model.layers.")
	if !ok {
		return false
	}
	num, _, ok := strings.Cut(rest, ".")
	i, err := strconv.Atoi(num)
	return ok && err == nil && i >= m.Config.NumLayers && i < m.Config.NumLayers+m.raw.NextN
}

// StoredDType is the dtype Hugging Face keeps the tensor name in when the model's weights are
// dt: DeepSeek-V3's e_score_correction_bias stays float32 (its _keep_in_fp32_modules_strict).
func StoredDType(name string, dt tensor.DType) tensor.DType {
	if strings.HasSuffix(name, ".e_score_correction_bias") {
		return tensor.F32
	}
	return dt
}
