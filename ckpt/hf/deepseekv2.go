package hf

import (
	"encoding/json"
	"fmt"
	"math"

	"github.com/gomegatron/gomegatron/layers"
)

// DeepSeek-V2's multi-latent attention (its remote DeepseekV2Attention) is Megatron-Core's
// MLASelfAttention with --qk-layernorm (the latent RMSNorms), under other names:
//
//	self_attn.q_proj             [H·(dn+dr), h]   linear_q_proj        (q_lora_rank null)
//	self_attn.q_a_proj           [rq, h]          linear_q_down_proj
//	self_attn.q_a_layernorm      [rq]             q_layernorm
//	self_attn.q_b_proj           [H·(dn+dr), rq]  linear_q_up_proj
//	self_attn.kv_a_proj_with_mqa [rkv+dr, h]      linear_kv_down_proj
//	self_attn.kv_a_layernorm     [rkv]            kv_layernorm
//	self_attn.kv_b_proj          [H·(dn+dv), rkv] linear_kv_up_proj
//	self_attn.o_proj             [h, H·dv]        linear_proj
//
// with the same layouts (each head's [nope | rope] query, [compressed kv | k_pe], each
// head's [k_nope | v]), so every tensor is copied as it is. Its RoPE de-interleaves the
// rotary channels before rotating halves, which Megatron-Core's MLA RoPE does too.

// readMLA reads DeepSeek-V2's (or V3's: family) attention keys of config.json b into c:
// q_lora_rank (null: one q_proj), kv_lora_rank, qk_nope_head_dim, qk_rope_head_dim and
// v_head_dim, each required (DeepseekV2Config's defaults are the 236B model's, which a
// checkpoint always states), and the RoPE (deepseekRoPE).
func readMLA(path string, b []byte, c *layers.Config, family Family) error {
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(b, &keys); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	dim := func(key string, nullOK bool) (int, error) {
		raw, ok := keys[key]
		if !ok {
			return 0, fmt.Errorf("%s: %s missing: a %s config.json states it", path, key, family)
		}
		if string(raw) == "null" && nullOK {
			return 0, nil
		}
		var v int
		if err := json.Unmarshal(raw, &v); err != nil || v <= 0 {
			want := "a positive integer"
			if nullOK {
				want += " or null"
			}
			return 0, fmt.Errorf("%s: %s %s: want %s", path, key, raw, want)
		}
		return v, nil
	}
	var err error
	for _, d := range []struct {
		key    string
		to     *int
		nullOK bool
	}{{"q_lora_rank", &c.QLoRARank, true}, {"kv_lora_rank", &c.KVLoRARank, false}, {"qk_nope_head_dim", &c.QKHeadDim, false},
		{"qk_rope_head_dim", &c.QKPosEmbHeadDim, false}, {"v_head_dim", &c.VHeadDim, false}} {
		if *d.to, err = dim(d.key, d.nullOK); err != nil {
			return err
		}
	}
	c.MultiLatentAttention, c.QKLayernorm = true, true
	c.GroupQueryAttention, c.NumQueryGroups, c.KVChannels = false, c.NumAttentionHeads, 0
	return deepseekRoPE(path, keys, c, family)
}

// deepseekRoPE reads DeepSeek-V2's rope_scaling (or transformers ≥ 5's rope_parameters,
// with rope_theta): none is --rope-type rope; "yarn" is --rope-type yarn with
// DeepseekV2YarnRotaryEmbedding's defaults (original_max_position_embeddings 4096, betas
// 32 and 1, mscale 1, mscale_all_dim 0), its correction range always floored and ceiled,
// and cos and sin scaled by m(mscale)/m(mscale_all_dim), which is Megatron-Core's
// concentration factor. The attention's softmax scale m(mscale_all_dim)² is
// --multi-latent-attention's own. Other kinds (linear, dynamic) are refused.
func deepseekRoPE(path string, keys map[string]json.RawMessage, c *layers.Config, family Family) error {
	key, raw := ropeKey(keys)
	c.RopeType = "rope"
	c.YarnScalingFactor, c.YarnMScale, c.YarnMScaleAllDim = 1, 1, 0
	if raw == nil || string(raw) == "null" {
		return nil
	}
	var rs ropeScalingKeys
	if err := json.Unmarshal(raw, &rs); err != nil {
		return fmt.Errorf("%s: %s: %w", path, key, err)
	}
	if key == "rope_parameters" && rs.Theta != nil {
		c.RotaryBase = *rs.Theta
	}
	switch rs.kind() {
	case "", "default":
		return nil
	case "yarn":
	default:
		return fmt.Errorf("%s: %s %s is not supported (a %s model's RoPE is plain or yarn)", path, key, raw, family)
	}
	switch {
	case rs.Factor == nil || *rs.Factor < 1:
		return fmt.Errorf("%s: %s %s: yarn needs a factor ≥ 1", path, key, raw)
	case rs.Truncate != nil && !*rs.Truncate:
		return fmt.Errorf("%s: %s truncate false: DeepSeek-V2's YaRN floors and ceils its correction range", path, key)
	}
	c.RopeType, c.YarnScalingFactor, c.YarnOrigMaxPositions = "yarn", *rs.Factor, 4096
	c.YarnBetaFast, c.YarnBetaSlow, c.YarnCorrectionRoundToInt = 32, 1, true
	if rs.OrigMax != nil {
		c.YarnOrigMaxPositions = *rs.OrigMax
	}
	for _, f := range []struct {
		from *float64
		to   *float64
	}{{rs.BetaFast, &c.YarnBetaFast}, {rs.BetaSlow, &c.YarnBetaSlow}, {rs.MScale, &c.YarnMScale}, {rs.MScaleAllDim, &c.YarnMScaleAllDim}} {
		if f.from != nil {
			*f.to = *f.from
		}
	}
	if rs.AttnFact != nil {
		if got := c.RoPEScaling().Concentration; math.Abs(*rs.AttnFact-got) > 1e-9*got {
			return fmt.Errorf("%s: %s attention_factor %v: only YaRN's own m(mscale)/m(mscale_all_dim) = %v is supported", path, key, *rs.AttnFact, got)
		}
	}
	return nil
}

// ropeKey is the RoPE object of a DeepSeek config.json's keys: rope_parameters
// (transformers ≥ 5) when it is there and not null, else rope_scaling (nil when absent).
func ropeKey(keys map[string]json.RawMessage) (string, json.RawMessage) {
	if p, ok := keys["rope_parameters"]; ok && string(p) != "null" {
		return "rope_parameters", p
	}
	return "rope_scaling", keys["rope_scaling"]
}

// mlaConfigKeys sets DeepSeek-V2's (and V3's: family) attention keys of config.json: the
// latent ranks and head widths, num_key_value_heads = num_attention_heads, and rope_scaling
// (null, or yarn with every parameter stated). Its latent norms are always there, so the
// checkpoint needs --qk-layernorm (without it Megatron-Core's MLA has none).
func mlaConfigKeys(m map[string]any, cfg *layers.Config, family Family) error {
	switch {
	case !cfg.MultiLatentAttention || !cfg.QKLayernorm:
		return fmt.Errorf("a %s model needs --multi-latent-attention with --qk-layernorm (its q_a_layernorm and kv_a_layernorm); the checkpoint has multi_latent_attention %v, qk_layernorm %v",
			family, cfg.MultiLatentAttention, cfg.QKLayernorm)
	case cfg.RotarySeqLenInterpolationFactor > 1 || cfg.UseRopeScaling || cfg.RotaryPercent != 1:
		return fmt.Errorf("a %s model's RoPE is plain or YaRN over all of --qk-pos-emb-head-dim; the checkpoint has rotary interpolation %v, --use-rope-scaling %v, --rotary-percent %v",
			family, cfg.RotarySeqLenInterpolationFactor, cfg.UseRopeScaling, cfg.RotaryPercent)
	case cfg.YaRN() && !cfg.YarnCorrectionRoundToInt:
		return fmt.Errorf("a %s model's YaRN floors and ceils its correction range; the checkpoint has --no-yarn-correction-range-round-to-int", family)
	}
	m["q_lora_rank"] = nil
	if cfg.QLoRARank > 0 {
		m["q_lora_rank"] = cfg.QLoRARank
	}
	m["kv_lora_rank"] = cfg.KVLoRARank
	m["qk_nope_head_dim"] = cfg.QKHeadDim
	m["qk_rope_head_dim"] = cfg.QKPosEmbHeadDim
	m["v_head_dim"] = cfg.VHeadDim
	m["num_key_value_heads"] = cfg.NumAttentionHeads
	m["rope_scaling"] = nil
	delete(m, "rope_parameters")
	if cfg.YaRN() {
		m["rope_scaling"] = map[string]any{"type": "yarn", "factor": cfg.YarnScalingFactor,
			"original_max_position_embeddings": cfg.YarnOrigMaxPositions, "beta_fast": cfg.YarnBetaFast, "beta_slow": cfg.YarnBetaSlow,
			"mscale": cfg.YarnMScale, "mscale_all_dim": cfg.YarnMScaleAllDim}
	}
	return nil
}

// mlaRules maps layer L's attention (Megatron prefix meg = "decoder.layers.L.", Hugging
// Face prefix h = "model.layers.L.") as the table above says.
func mlaRules(add func(string, kind, ...string), c *layers.Config, meg, h string) {
	a, s := h+"self_attn.", meg+"self_attention."
	if c.QLoRARank == 0 {
		add(s+"linear_q_proj.weight", copyAs, a+"q_proj.weight")
	} else {
		add(s+"linear_q_down_proj.weight", copyAs, a+"q_a_proj.weight")
		add(s+"q_layernorm.weight", copyAs, a+"q_a_layernorm.weight")
		add(s+"linear_q_up_proj.weight", copyAs, a+"q_b_proj.weight")
	}
	add(s+"linear_kv_down_proj.weight", copyAs, a+"kv_a_proj_with_mqa.weight")
	add(s+"kv_layernorm.weight", copyAs, a+"kv_a_layernorm.weight")
	add(s+"linear_kv_up_proj.weight", copyAs, a+"kv_b_proj.weight")
	add(s+"linear_proj.weight", copyAs, a+"o_proj.weight")
}
