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

// longRows are two 48-token rows of vocabulary 300 for the RoPE-scaling tests: past the
// 16 and 32 original positions of TinyDeepseekV2's and the Qwen2.5 test's YaRN.
func longRows() [][]int64 {
	var rows [][]int64
	for r := range 2 {
		row := make([]int64, 48)
		for i := range row {
			row[i] = int64((i*37 + r*101 + 5) % 300)
		}
		rows = append(rows, row)
	}
	return rows
}

// TestDeepseekV2MatchesTorch: DeepSeek-V2 (a query latent, YaRN with mscale ≠
// mscale_all_dim, values narrower than the query/key heads, a dense first layer, shared
// experts) and DeepSeek-V2-Lite's shape (one q_proj, plain RoPE) against DeepSeek-V2's
// remote code transcribed in float64 torch (testdata/hf_forward.py): loss and logits.
func TestDeepseekV2MatchesTorch(t *testing.T) {
	hftest.NeedTorch(t)
	// DeepSeek-V2 236B's routed_scaling_factor (16 there) scales the weights it does not
	// renormalise: --moe-router-topk-scaling-factor.
	scaled := strings.Replace(hftest.TinyDeepseekV2, `"routed_scaling_factor": 1.0`, `"routed_scaling_factor": 3.0`, 1)
	for name, conf := range map[string]string{"v2": hftest.TinyDeepseekV2, "v2-lite": hftest.TinyDeepseekV2Lite, "v2-scaled": scaled} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), name)
			require.NoError(t, hftest.Write(dir, conf, 0.1))
			m := requireTorchForward(t, dir, longRows(), 300)
			c := m.Config
			require.Equal(t, hf.DeepseekV2, m.Family)
			require.True(t, c.MultiLatentAttention && c.QKLayernorm && !c.GroupQueryAttention)
			require.Equal(t, "[0, 1, 1]", c.MoELayerFreq)
			require.Equal(t, []int{96, 32, 64}, []int{c.FFNHiddenSize, c.ExpertFFN(), c.MoESharedExpertIntermediateSize})
			require.True(t, c.MoERouterPreSoftmax && !c.MoESharedExpertGate)
			require.Equal(t, map[string]float64{"v2-scaled": 3}[name], c.MoERouterTopKScaling)
			if name != "v2-lite" {
				require.Equal(t, []int{24, 16, 12, 16, 10, 28}, []int{c.QLoRARank, c.KVLoRARank, c.QKHeadDim, c.QKPosEmbHeadDim, c.VHeadDim, c.KVChannels})
				require.True(t, c.YaRN())
				require.Equal(t, []float64{4, 16, 2, 0.25, 0.9, 0.6}, []float64{c.YarnScalingFactor, float64(c.YarnOrigMaxPositions),
					c.YarnBetaFast, c.YarnBetaSlow, c.YarnMScale, c.YarnMScaleAllDim})
			} else {
				require.Equal(t, []int{0, 24, 16, 8, 16}, []int{c.QLoRARank, c.KVLoRARank, c.QKHeadDim, c.QKPosEmbHeadDim, c.VHeadDim})
				require.False(t, c.YaRN())
				require.Equal(t, "rope", c.RopeType)
			}
		})
	}
}

// TestDeepseekV2Config: DeepSeek-V2's router and attention keys that gomegatron's model
// cannot express are refused, naming the key; those with no effect on the forward pass are
// read.
func TestDeepseekV2Config(t *testing.T) {
	v2 := hftest.TinyDeepseekV2
	for _, tc := range []struct{ from, to, err string }{
		{`"routed_scaling_factor": 1.0`, `"routed_scaling_factor": 0`, "routed_scaling_factor 0"},
		{`"topk_method": "greedy", "n_group": 1, "topk_group": 1`, `"topk_method": "group_limited_greedy", "n_group": 8, "topk_group": 3`, "topk_method group_limited_greedy"},
		{`"topk_method": "greedy"`, `"topk_method": "noaux_tc"`, `topk_method "noaux_tc"`},
		{`"scoring_func": "softmax"`, `"scoring_func": "sigmoid"`, `scoring_func "sigmoid"`},
		{`"attention_bias": false`, `"attention_bias": true`, "attention_bias true"},
		{`"kv_lora_rank": 16, `, ``, "kv_lora_rank missing"},
		{`"q_lora_rank": 24`, `"q_lora_rank": 0`, "q_lora_rank 0"},
		{`"v_head_dim": 10`, `"v_head_dim": null`, "v_head_dim null"},
		{`"type": "yarn"`, `"type": "linear"`, "rope_scaling"},
		{`"type": "yarn", "factor": 4.0`, `"type": "yarn"`, "factor ≥ 1"},
		// DeepSeek-V2's softmax router is not DeepSeek-V3's.
		{`"model_type": "deepseek_v2"`, `"model_type": "deepseek_v3"`, `scoring_func "softmax" is not supported (DeepSeek-V3's`},
	} {
		require.Contains(t, v2, tc.from)
		_, err := writeConfig(t, strings.Replace(v2, tc.from, tc.to, 1))
		require.ErrorContains(t, err, tc.err, tc.to)
	}
	for _, tc := range [][]string{
		// Renormalised weights are not scaled; groups that are all kept do not limit routing.
		{`"norm_topk_prob": false`, `"norm_topk_prob": true`, `"routed_scaling_factor": 1.0`, `"routed_scaling_factor": 16.0`},
		{`"topk_method": "greedy", "n_group": 1, "topk_group": 1`, `"topk_method": "group_limited_greedy", "n_group": 4, "topk_group": 4`},
		// DeepseekV2YarnRotaryEmbedding's defaults.
		{`"original_max_position_embeddings": 16,` + "\n\t" + `"beta_fast": 2.0, "beta_slow": 0.25, "mscale": 0.9, "mscale_all_dim": 0.6`, `"original_max_position_embeddings": 4096`},
	} {
		for i := 0; i < len(tc); i += 2 {
			require.Contains(t, v2, tc[i])
		}
		m, err := writeConfig(t, strings.NewReplacer(tc...).Replace(v2))
		require.NoError(t, err, tc)
		c := m.Config
		require.Equal(t, tc[1] != `"norm_topk_prob": true`, c.MoERouterPreSoftmax)
		if strings.Contains(tc[1], "4096") {
			require.Equal(t, []float64{32, 1, 1, 0}, []float64{c.YarnBetaFast, c.YarnBetaSlow, c.YarnMScale, c.YarnMScaleAllDim})
			require.Equal(t, 4096, c.YarnOrigMaxPositions)
		}
	}
	// transformers ≥ 5 writes rope_parameters, with rope_theta.
	m, err := writeConfig(t, strings.Replace(hftest.TinyDeepseekV2Lite, `"rope_scaling": null`,
		`"rope_parameters": {"rope_type": "yarn", "factor": 40.0, "mscale": 0.707, "mscale_all_dim": 0.707, "rope_theta": 5000.0}`, 1))
	require.NoError(t, err)
	require.Equal(t, []float64{40, 0.707, 0.707, 5000}, []float64{m.Config.YarnScalingFactor, m.Config.YarnMScale, m.Config.YarnMScaleAllDim, m.Config.RotaryBase})
}

// TestDeepseekV2SavesAgain: a DeepSeek-V2 folder loads and saves back as the same tensors,
// with config.json's attention keys and rope_scaling stated, the remote code's auto_map
// kept; an MLA model without the latent norms (no --qk-layernorm), or as another family, is
// refused.
func TestDeepseekV2SavesAgain(t *testing.T) {
	be := cpu.New()
	scaled := strings.Replace(hftest.TinyDeepseekV2, `"routed_scaling_factor": 1.0`, `"routed_scaling_factor": 3.0`, 1)
	for name, conf := range map[string]string{"v2": hftest.TinyDeepseekV2, "v2-lite": hftest.TinyDeepseekV2Lite, "v2-scaled": scaled} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), name)
			require.NoError(t, hftest.Write(dir, conf, 0.1))
			ts := readAll(t, filepath.Join(dir, "model.safetensors"))
			_, hasQProj := ts["model.layers.0.self_attn.q_proj.weight"]
			require.Equal(t, name == "v2-lite", hasQProj)
			saved, out, base := requireSavesAgain(t, be, dir, conf, hf.DeepseekV2, ts)
			orig, err := hf.ReadConfig(dir)
			require.NoError(t, err)
			require.Equal(t, orig.Config, saved.Config)
			raw, err := os.ReadFile(filepath.Join(out, "config.json"))
			require.NoError(t, err)
			var c map[string]any
			require.NoError(t, json.Unmarshal(raw, &c))
			require.Equal(t, base["auto_map"], c["auto_map"], "the remote-code entry stays")
			require.Equal(t, []any{"DeepseekV2ForCausalLM"}, c["architectures"])
			for _, k := range []string{"q_lora_rank", "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim", "rope_scaling",
				"first_k_dense_replace", "n_shared_experts", "norm_topk_prob", "routed_scaling_factor"} {
				require.Equal(t, base[k], c[k], k)
			}
			require.NotContains(t, c, "head_dim")

			// The same model without the latent norms, or saved as deepseek, is refused.
			cfg := orig.Config
			_, gm, err := hf.Load(be, dir)
			require.NoError(t, err)
			_, err = hf.Save(be, gm, t.TempDir(), hf.Deepseek, tensor.F32, nil)
			require.ErrorContains(t, err, "converts to deepseek_v2")
			cfg.QKLayernorm = false
			gm, err = layers.NewGPTModel(be, cfg, 0)
			require.NoError(t, err)
			_, err = hf.Save(be, gm, t.TempDir(), hf.DeepseekV2, tensor.F32, nil)
			require.ErrorContains(t, err, "--qk-layernorm")
		})
	}
}
