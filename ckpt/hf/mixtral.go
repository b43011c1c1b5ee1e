package hf

import (
	"encoding/json"
	"fmt"

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
	interp, theta, err := ropeConfig(path, rc.RopeScaling, rc.RopeParameters)
	if err != nil {
		return layers.Config{}, err
	}
	if theta != nil {
		rc.RopeTheta = *theta
	}
	if rc.HiddenAct != "silu" {
		return layers.Config{}, fmt.Errorf("%s: hidden_act %q is not supported (want silu)", path, rc.HiddenAct)
	}
	if rc.AttentionBias {
		return layers.Config{}, fmt.Errorf("%s: attention_bias true is not Mixtral's architecture", path)
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
	c.RotaryBase, c.RotarySeqLenInterpolationFactor = rc.RopeTheta, interp
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

// moeRules maps layer L's MoE block (Megatron prefix meg = "decoder.layers.L.", Hugging
// Face prefix h = "model.layers.L.") onto Mixtral's block_sparse_moe:
//
//	meg mlp.router.weight [E, h]                         ← h block_sparse_moe.gate.weight
//	meg mlp.experts.local_experts.e.linear_fc1.weight [2F, h] ← [experts.e.w1.weight; experts.e.w3.weight]
//	meg mlp.experts.local_experts.e.linear_fc2.weight [h, F]  ← experts.e.w2.weight
//
// w1 is the SwiGLU gate and w3 the up projection (MixtralBlockSparseTop2MLP computes
// w2(silu(w1 x) · w3 x)), so fc1 = [w1; w3] is the dense layer's [gate; up].
func moeRules(add func(string, kind, ...string), meg, h string, experts int) {
	add(meg+"mlp.router.weight", copyAs, h+"block_sparse_moe.gate.weight")
	for e := 0; e < experts; e++ {
		me := fmt.Sprintf("%smlp.experts.local_experts.%d.", meg, e)
		he := fmt.Sprintf("%sblock_sparse_moe.experts.%d.", h, e)
		add(me+"linear_fc1.weight", gateUp, he+"w1.weight", he+"w3.weight")
		add(me+"linear_fc2.weight", copyAs, he+"w2.weight")
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
