package hf_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/ckpt/hf"
	"github.com/gomegatron/gomegatron/ckpt/hf/hftest"
	"github.com/gomegatron/gomegatron/kernels/cpu"
	"github.com/gomegatron/gomegatron/layers"
	"github.com/gomegatron/gomegatron/tensor"
)

// tinyDeepseekV3Groups4 is TinyDeepseekV3 with 16 experts: groups of 4, so a group's score
// (its top 2) is not its sum, and the top 4 are chosen among the 8 experts of the 2 kept
// groups.
var tinyDeepseekV3Groups4 = strings.Replace(hftest.TinyDeepseekV3, `"n_routed_experts": 8`, `"n_routed_experts": 16`, 1)

// TestDeepseekV3MatchesTorch: DeepSeek-V3 (a query latent, YaRN, a dense first layer, 8
// experts in 4 groups with the top 4 of σ + e_score_correction_bias in the best 2 groups,
// renormalised and scaled by 2.5, shared experts), the same with groups of 4, and
// Moonlight's shape (one q_proj, plain RoPE, no groups, transformers' keys only) against
// transformers' DeepseekV3 transcribed in float64 torch (testdata/hf_forward.py): loss and
// logits. The expert bias is drawn away from zero, so a router that ignores it differs.
func TestDeepseekV3MatchesTorch(t *testing.T) {
	hftest.NeedTorch(t)
	for name, conf := range map[string]string{"v3": hftest.TinyDeepseekV3, "v3-groups-of-4": tinyDeepseekV3Groups4, "moonlight": hftest.TinyMoonlight} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), name)
			require.NoError(t, hftest.Write(dir, conf, 0.1))
			bias := readAll(t, dir)["model.layers.1.mlp.gate.e_score_correction_bias"].F32()
			lo, hi := bias[0], bias[0]
			for _, b := range bias {
				lo, hi = min(lo, b), max(hi, b)
			}
			require.Greater(t, hi-lo, float32(0.1), "the expert bias varies by expert")
			m := requireTorchForward(t, dir, longRows(), 300)
			c := m.Config
			require.Equal(t, hf.DeepseekV3, m.Family)
			require.True(t, c.MultiLatentAttention && c.QKLayernorm && !c.GroupQueryAttention)
			require.Equal(t, "[0, 1, 1]", c.MoELayerFreq)
			require.Equal(t, "sigmoid", c.MoERouterScoreFunction)
			require.True(t, c.MoERouterEnableExpertBias && !c.MoERouterPreSoftmax && !c.MoESharedExpertGate)
			switch name {
			case "moonlight":
				require.Equal(t, []int{8, 3, 0, 0, 96, 32, 32}, []int{c.NumExperts, c.MoERouterTopK, c.MoERouterNumGroups, c.MoERouterGroupTopK,
					c.FFNHiddenSize, c.ExpertFFN(), c.MoESharedExpertIntermediateSize})
				require.Equal(t, 2.446, c.MoERouterTopKScaling)
				require.Equal(t, []int{0, 24, 16, 8, 16}, []int{c.QLoRARank, c.KVLoRARank, c.QKHeadDim, c.QKPosEmbHeadDim, c.VHeadDim})
				require.False(t, c.YaRN())
				require.Equal(t, 0.0, c.MoEAuxLossCoeff, "transformers' DeepseekV3 has no aux loss")
			default:
				experts := map[string]int{"v3": 8, "v3-groups-of-4": 16}[name]
				require.Equal(t, []int{experts, 4, 4, 2, 96, 32, 64}, []int{c.NumExperts, c.MoERouterTopK, c.MoERouterNumGroups, c.MoERouterGroupTopK,
					c.FFNHiddenSize, c.ExpertFFN(), c.MoESharedExpertIntermediateSize})
				require.Equal(t, 2.5, c.MoERouterTopKScaling)
				require.Equal(t, []int{24, 16, 12, 16, 10}, []int{c.QLoRARank, c.KVLoRARank, c.QKHeadDim, c.QKPosEmbHeadDim, c.VHeadDim})
				require.True(t, c.YaRN())
				require.Equal(t, []float64{4, 16, 2, 0.25, 0.9, 0.6}, []float64{c.YarnScalingFactor, float64(c.YarnOrigMaxPositions),
					c.YarnBetaFast, c.YarnBetaSlow, c.YarnMScale, c.YarnMScaleAllDim})
				require.Equal(t, 0.001, c.MoEAuxLossCoeff)
				require.Equal(t, "seq_aux_loss", c.MoERouterLoadBalancingType)
			}
		})
	}
}

// TestDeepseekV3Config: DeepSeek-V3's keys that Megatron-Core's router (or attention)
// cannot express, or that transformers and the remote code read differently, are refused
// naming the key; DeepseekV3Config's defaults fill absent keys; groups that are all kept,
// and a scaling factor of 1, are none.
func TestDeepseekV3Config(t *testing.T) {
	v3 := hftest.TinyDeepseekV3
	for _, tc := range []struct{ from, to, err string }{
		{`"norm_topk_prob": true`, `"norm_topk_prob": false`, "norm_topk_prob false with num_experts_per_tok 4"},
		{`"num_experts_per_tok": 4`, `"num_experts_per_tok": 1`, "norm_topk_prob true with num_experts_per_tok 1"},
		{`"rope_interleave": true`, `"rope_interleave": false`, "rope_interleave false"},
		{`"ep_size": 1`, `"quantization_config": {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8", "weight_block_size": [128, 128]}`,
			`quantization_config "fp8"`},
		{`"topk_group": 2`, `"topk_group": 1`, "num_experts_per_tok must be 2·topk_group"},
		{`"n_group": 4, "topk_group": 2`, `"n_group": 2, "topk_group": 1`, "n_group 2, topk_group 1 with num_experts_per_tok 4"},
		{`"n_group": 4`, `"n_group": 3`, "n_group 3"},
		{`"topk_group": 2`, `"topk_group": 5`, "topk_group 5"},
		{`"scoring_func": "sigmoid"`, `"scoring_func": "softmax"`, `scoring_func "softmax"`},
		{`"topk_method": "noaux_tc"`, `"topk_method": "greedy"`, `topk_method "greedy"`},
		{`"moe_layer_freq": 1`, `"moe_layer_freq": 2`, "moe_layer_freq 2"},
		{`"routed_scaling_factor": 2.5`, `"routed_scaling_factor": 0`, "routed_scaling_factor 0"},
		{`"max_position_embeddings": 64`, `"max_position_embeddings": 128`, "must agree"},
		{`"original_max_position_embeddings": 16, `, ``, "state it"},
		{`, "mscale_all_dim": 0.6`, ``, "state both"},
		{`"num_nextn_predict_layers": 1`, `"num_nextn_predict_layers": -1`, "num_nextn_predict_layers -1"},
		{`"attention_bias": false`, `"attention_bias": true`, "attention_bias true"},
		{`"kv_lora_rank": 16, `, ``, "kv_lora_rank missing: a deepseek_v3 config.json"},
		{`"n_routed_experts": 8`, `"n_routed_experts": null`, "n_routed_experts null: a deepseek_v3 model without experts"},
		{`"model_type": "deepseek_v3"`, `"model_type": "kimi_k2"`, "set model_type to deepseek_v3"},
	} {
		require.Contains(t, v3, tc.from)
		_, err := writeConfig(t, strings.Replace(v3, tc.from, tc.to, 1))
		require.ErrorContains(t, err, tc.err, tc.to)
	}
	for _, tc := range []struct {
		replace    []string // pairs of old and new text
		groups, gk int
		scaling    float64
		topK       int
	}{
		{replace: []string{`"routed_scaling_factor": 2.5`, `"routed_scaling_factor": 1.0`}, groups: 4, gk: 2, scaling: 0, topK: 4},
		{replace: []string{`"topk_group": 2`, `"topk_group": 4`}, scaling: 2.5, topK: 4},
		{replace: []string{`"n_group": 4, "topk_group": 2`, `"n_group": 1, "topk_group": 1`}, scaling: 2.5, topK: 4},
		{replace: []string{`"n_group": 4, "topk_group": 2`, `"n_group": null, "topk_group": null`}, scaling: 2.5, topK: 4},
		{replace: []string{`"num_experts_per_tok": 4`, `"num_experts_per_tok": 1`, `"topk_group": 2`, `"topk_group": 4`,
			`"norm_topk_prob": true`, `"norm_topk_prob": false`}, scaling: 2.5, topK: 1},
		// transformers' keys only.
		{replace: []string{`"scoring_func": "sigmoid",`, ``, `"topk_method": "noaux_tc", `, ``}, groups: 4, gk: 2, scaling: 2.5, topK: 4},
	} {
		for i := 0; i < len(tc.replace); i += 2 {
			require.Contains(t, v3, tc.replace[i])
		}
		m, err := writeConfig(t, strings.NewReplacer(tc.replace...).Replace(v3))
		require.NoError(t, err, tc.replace)
		c := m.Config
		require.Equal(t, []int{tc.groups, tc.gk, tc.topK}, []int{c.MoERouterNumGroups, c.MoERouterGroupTopK, c.MoERouterTopK}, tc.replace)
		require.Equal(t, tc.scaling, c.MoERouterTopKScaling, tc.replace)
		require.True(t, c.MoERouterEnableExpertBias && c.MoERouterScoreFunction == "sigmoid" && !c.MoERouterPreSoftmax, tc.replace)
	}

	// transformers ≥ 5 writes rope_parameters, with rope_theta.
	m, err := writeConfig(t, strings.Replace(hftest.TinyMoonlight, `"rope_scaling": null, "max_position_embeddings": 64`,
		`"rope_parameters": {"rope_type": "yarn", "factor": 32.0, "original_max_position_embeddings": 2, "mscale": 1.0, "mscale_all_dim": 1.0, "rope_theta": 5000.0}, "max_position_embeddings": 64`, 1))
	require.NoError(t, err)
	require.Equal(t, []float64{32, 2, 1, 1, 5000}, []float64{m.Config.YarnScalingFactor, float64(m.Config.YarnOrigMaxPositions),
		m.Config.YarnMScale, m.Config.YarnMScaleAllDim, m.Config.RotaryBase})

	// DeepseekV3Config's defaults (DeepSeek-V3's router and MoE sizes) fill absent keys.
	m, err = writeConfig(t, `{"model_type": "deepseek_v3", "hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 4,
		"vocab_size": 300, "q_lora_rank": 24, "kv_lora_rank": 16, "qk_nope_head_dim": 12, "qk_rope_head_dim": 16, "v_head_dim": 10}`)
	require.NoError(t, err)
	c := m.Config
	require.Equal(t, []int{256, 8, 8, 4, 2048, 18432, 2048, 4096}, []int{c.NumExperts, c.MoERouterTopK, c.MoERouterNumGroups, c.MoERouterGroupTopK,
		c.ExpertFFN(), c.FFNHiddenSize, c.MoESharedExpertIntermediateSize, c.MaxPositionEmbeddings})
	require.Equal(t, "[0, 0, 0, 1]", c.MoELayerFreq)
	require.Equal(t, []float64{2.5, 0, 10000, 1e-6}, []float64{c.MoERouterTopKScaling, c.MoEAuxLossCoeff, c.RotaryBase, c.NormEpsilon})
	require.Equal(t, "seq_aux_loss", c.MoERouterLoadBalancingType)
}

// TestDeepseekV3SavesAgain: a DeepSeek-V3 folder loads and saves back as the same tensors —
// the expert bias float32 even when the weights are bf16 — with the router's and
// attention's config.json keys stated, the remote code's auto_map kept, no
// multi-token-prediction layers; the multi-token-prediction layers stored after the model's
// own are dropped on reading, FP8 scales refused; a DeepSeek-V3 model saved as deepseek_v2,
// or DeepSeek-V2's as deepseek_v3, is refused.
func TestDeepseekV3SavesAgain(t *testing.T) {
	be := cpu.New()
	for name, conf := range map[string]string{"v3": hftest.TinyDeepseekV3, "moonlight": hftest.TinyMoonlight} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), name)
			require.NoError(t, hftest.Write(dir, conf, 0.1))
			ts := readAll(t, filepath.Join(dir, "model.safetensors"))
			require.Contains(t, ts, "model.layers.2.mlp.gate.e_score_correction_bias")
			require.NotContains(t, ts, "model.layers.0.mlp.gate.e_score_correction_bias", "the dense layer has no router")
			saved, out, base := requireSavesAgain(t, be, dir, conf, hf.DeepseekV3, ts)
			orig, err := hf.ReadConfig(dir)
			require.NoError(t, err)
			require.Equal(t, orig.Config, saved.Config)
			raw, err := os.ReadFile(filepath.Join(out, "config.json"))
			require.NoError(t, err)
			var c map[string]any
			require.NoError(t, json.Unmarshal(raw, &c))
			require.Equal(t, base["auto_map"], c["auto_map"], "the remote-code entry stays")
			require.Equal(t, []any{"DeepseekV3ForCausalLM"}, c["architectures"])
			for _, k := range []string{"q_lora_rank", "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim", "rope_scaling",
				"max_position_embeddings", "first_k_dense_replace", "n_shared_experts", "n_routed_experts", "num_experts_per_tok",
				"norm_topk_prob", "n_group", "topk_group", "routed_scaling_factor"} {
				require.Equal(t, base[k], c[k], k)
			}
			for k, v := range map[string]any{"scoring_func": "sigmoid", "topk_method": "noaux_tc", "rope_interleave": true, "num_nextn_predict_layers": 0.0} {
				require.Equal(t, v, c[k], k)
			}
			require.NotContains(t, c, "head_dim")

			// In bf16 the expert bias stays float32, as transformers keeps it.
			_, gm, err := hf.Load(be, dir)
			require.NoError(t, err)
			bf := filepath.Join(t.TempDir(), "bf16")
			_, err = hf.Save(be, gm, bf, hf.DeepseekV3, tensor.BF16, base)
			require.NoError(t, err)
			got := readAll(t, bf)
			require.Equal(t, tensor.BF16, got["model.layers.1.mlp.gate.weight"].DType())
			bias := got["model.layers.1.mlp.gate.e_score_correction_bias"]
			require.Equal(t, tensor.F32, bias.DType())
			require.Equal(t, ts["model.layers.1.mlp.gate.e_score_correction_bias"].Data, bias.Data)

			// Saved as deepseek_v2 (softmax routing), or as mixtral, it is refused.
			_, err = hf.Save(be, gm, t.TempDir(), hf.DeepseekV2, tensor.F32, nil)
			require.ErrorContains(t, err, "converts to deepseek_v3")
			_, err = hf.Save(be, gm, t.TempDir(), hf.Mixtral, tensor.F32, nil)
			require.ErrorContains(t, err, "multi-latent attention")
		})
	}

	// Megatron-Core's groups: all kept is no group limit; scored by other than their top 2,
	// they have no config.json.
	dir0 := filepath.Join(t.TempDir(), "v3")
	require.NoError(t, hftest.Write(dir0, hftest.TinyDeepseekV3, 0.1))
	orig, err := hf.ReadConfig(dir0)
	require.NoError(t, err)
	for _, tc := range []struct {
		groups, gk int
		err        string
	}{{4, 4, ""}, {2, 1, "scores a group by its top 2 experts"}} {
		cfg := orig.Config
		cfg.MoERouterNumGroups, cfg.MoERouterGroupTopK = tc.groups, tc.gk
		gm, err := layers.NewGPTModel(be, cfg, 0)
		require.NoError(t, err)
		out := t.TempDir()
		saved, err := hf.Save(be, gm, out, hf.DeepseekV3, tensor.F32, nil)
		if tc.err != "" {
			require.ErrorContains(t, err, tc.err)
			continue
		}
		require.NoError(t, err)
		require.Equal(t, []int{0, 0}, []int{saved.Config.MoERouterNumGroups, saved.Config.MoERouterGroupTopK})
	}

	// DeepSeek-V2's softmax router has no deepseek_v3 config.json.
	dir := filepath.Join(t.TempDir(), "v2")
	require.NoError(t, hftest.Write(dir, hftest.TinyDeepseekV2, 0.1))
	_, gm, err := hf.Load(be, dir)
	require.NoError(t, err)
	_, err = hf.Save(be, gm, t.TempDir(), hf.DeepseekV3, tensor.F32, nil)
	require.ErrorContains(t, err, "a deepseek_v3 model's router takes sigmoid scores with an expert bias")
}

// TestDeepseekV3DropsMTP: the multi-token-prediction layer DeepSeek-V3 stores as
// model.layers.{num_hidden_layers} (num_nextn_predict_layers 1) is dropped on reading, as
// transformers does; a layer past them, or a block-FP8 scale, is refused.
func TestDeepseekV3DropsMTP(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "v3")
	require.NoError(t, hftest.Write(dir, hftest.TinyDeepseekV3, 0.1))
	ts := readAll(t, dir)
	mtp := map[string]*tensor.Tensor{}
	for n, x := range ts {
		if rest, ok := strings.CutPrefix(n, "model.layers.2."); ok {
			mtp["model.layers.3."+rest] = x
		}
	}
	for _, n := range []string{"enorm.weight", "hnorm.weight", "shared_head.norm.weight"} {
		mtp["model.layers.3."+n] = tensor.FromF32(make([]float32, 48), 48)
	}
	mtp["model.layers.3.eh_proj.weight"] = tensor.FromF32(make([]float32, 48*96), 48, 96)
	with := func(extra map[string]*tensor.Tensor, conf string) string {
		d := filepath.Join(t.TempDir(), "v3")
		all := map[string]*tensor.Tensor{}
		for n, x := range ts {
			all[n] = x
		}
		for n, x := range extra {
			all[n] = x
		}
		writeFolder(t, d, conf, all)
		return d
	}

	r, err := hf.Open(with(mtp, hftest.TinyDeepseekV3))
	require.NoError(t, err)
	require.Equal(t, len(mtp), r.Dropped)
	require.NoError(t, r.Close())
	m, gm, err := hf.Load(cpu.New(), with(mtp, hftest.TinyDeepseekV3))
	require.NoError(t, err)
	require.Equal(t, 3, m.Config.NumLayers)
	require.Nil(t, gm.Params.ByName("decoder.layers.3.input_layernorm.weight"))

	// Without num_nextn_predict_layers the layer is not the model's.
	_, err = hf.Open(with(mtp, strings.Replace(hftest.TinyDeepseekV3, `"num_nextn_predict_layers": 1`, `"num_nextn_predict_layers": 0`, 1)))
	require.ErrorContains(t, err, "model.layers.3.")
	require.ErrorContains(t, err, "is not used by the deepseek_v3 mapping")

	_, err = hf.Open(with(map[string]*tensor.Tensor{"model.layers.1.self_attn.o_proj.weight_scale_inv": tensor.FromF32([]float32{1}, 1, 1)}, hftest.TinyDeepseekV3))
	require.ErrorContains(t, err, "quantization scale (block FP8 weights): convert a bf16 checkpoint")
}
