package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/ckpt/hf"
	"github.com/gomegatron/gomegatron/ckpt/hf/hftest"
	"github.com/gomegatron/gomegatron/ckpt/megatron"
	"github.com/gomegatron/gomegatron/tensor"
)

// TestDeepseekV2RoundTrip: DeepSeek-V2 (a query latent, YaRN) to Megatron-Core (local spec)
// at TP 2 × EP 2 × PP 3 and back, and DeepSeek-V2-Lite's shape (one q_proj, plain RoPE) at
// TP 2 in the default layout: the multi-latent attention's tensors are copied as they are,
// split over TP by rows (the four projections, the down projections included) or by
// columns (linear_proj), the latent norms replicated; the args carry the MLA and YaRN
// settings; the Hugging Face tensors, architecture, config keys and remote code come back.
func TestDeepseekV2RoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name, conf string
		args       []string
	}{
		{"v2", hftest.TinyDeepseekV2, []string{"--transformer-impl", "local", "--target_expert_model_parallel_size", "2",
			"--target_pipeline_model_parallel_size", "3", "--model_name", "deepseek-v2-chat"}},
		{"v2-lite", hftest.TinyDeepseekV2Lite, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tmp := t.TempDir()
			src, meg, back := filepath.Join(tmp, "src"), filepath.Join(tmp, "meg"), filepath.Join(tmp, "back")
			syntheticHF(t, src, tc.conf)
			code := []byte("# DeepSeek-V2's remote code\n")
			require.NoError(t, os.WriteFile(filepath.Join(src, "modeling_deepseek.py"), code, 0o644))
			orig := hfTensors(t, src)
			convertOK(t, append([]string{"--load_path", src, "--save_path", meg, "--target_tensor_model_parallel_size", "2"}, tc.args...)...)
			c, full := megatronFull(t, meg)
			cfg := c.Config
			require.Equal(t, string(hf.DeepseekV2), c.Info.HFModelType)
			require.Equal(t, string(hf.DeepseekV2), inferFamily(&cfg))
			require.True(t, cfg.MultiLatentAttention && cfg.QKLayernorm)
			lite := tc.name == "v2-lite"
			if lite {
				require.Equal(t, []int{0, 24, 16, 8, 16}, []int{cfg.QLoRARank, cfg.KVLoRARank, cfg.QKHeadDim, cfg.QKPosEmbHeadDim, cfg.VHeadDim})
				require.Equal(t, "rope", cfg.RopeType)
				require.Equal(t, orig["model.layers.1.self_attn.q_proj.weight"].Data, full["decoder.layers.1.self_attention.linear_q_proj.weight"].Data)
			} else {
				require.Equal(t, []int{24, 16, 12, 16, 10}, []int{cfg.QLoRARank, cfg.KVLoRARank, cfg.QKHeadDim, cfg.QKPosEmbHeadDim, cfg.VHeadDim})
				require.Equal(t, "yarn", cfg.RopeType)
				require.Equal(t, []float64{4, 16, 2, 0.25, 0.9, 0.6}, []float64{cfg.YarnScalingFactor, float64(cfg.YarnOrigMaxPositions),
					cfg.YarnBetaFast, cfg.YarnBetaSlow, cfg.YarnMScale, cfg.YarnMScaleAllDim})
				require.Equal(t, orig["model.layers.2.self_attn.q_a_layernorm.weight"].Data, full["decoder.layers.2.self_attention.q_layernorm.weight"].Data)
				requireMLAShards(t, meg, orig)
			}
			require.Equal(t, orig["model.layers.2.self_attn.kv_b_proj.weight"].Data, full["decoder.layers.2.self_attention.linear_kv_up_proj.weight"].Data)

			convertOK(t, "--load_path", meg, "--save_path", back, "--convert_checkpoint_from_megatron_to_transformers", "--hf_ckpt_path", src)
			requireSameHF(t, src, back, orig, hf.DeepseekV2)
			want, err := readJSONMap(filepath.Join(src, "config.json"))
			require.NoError(t, err)
			got, err := readJSONMap(filepath.Join(back, "config.json"))
			require.NoError(t, err)
			for _, k := range []string{"architectures", "auto_map", "q_lora_rank", "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim",
				"v_head_dim", "rope_scaling", "rope_theta", "first_k_dense_replace", "n_shared_experts", "n_routed_experts", "norm_topk_prob",
				"topk_method", "routed_scaling_factor"} {
				require.Equal(t, want[k], got[k], k)
			}
			b, err := os.ReadFile(filepath.Join(back, "modeling_deepseek.py"))
			require.NoError(t, err)
			require.Equal(t, code, b)
		})
	}

	// Megatron's legacy GPT has neither experts nor multi-latent attention.
	tmp := t.TempDir()
	src := filepath.Join(tmp, "src")
	syntheticHF(t, src, hftest.TinyDeepseekV2Lite)
	var o, e bytes.Buffer
	err := run([]string{"--load_path", src, "--save_path", filepath.Join(tmp, "legacy"), "--megatron-format", "legacy", "--progress", "none"}, &o, &e)
	require.ErrorContains(t, err, "has Megatron-Core keys only")
}

// requireMLAShards checks TinyDeepseekV2's layer 0 (pipeline stage 0 of 3) in both TP
// ranks' local-spec shards: the projections hold their rank's rows, linear_proj its
// columns, the latent norms all of theirs.
func requireMLAShards(t *testing.T, meg string, orig map[string]*tensor.Tensor) {
	t.Helper()
	const h = 48
	for tp := range 2 {
		sf, err := megatron.LoadShard(megatron.Location{Root: meg, Release: true, ExpertSize: 2}, tp, 0, 3)
		require.NoError(t, err)
		model, _, err := sf.Model()
		require.NoError(t, err)
		rows := func(hfName string, n, cols int) []byte { // rank tp's n rows of a [2n, cols] float32 matrix
			return orig[hfName].Data[tp*n*cols*4 : (tp+1)*n*cols*4]
		}
		a, s := "model.layers.0.self_attn.", "decoder.layers.0.self_attention."
		for _, r := range []struct {
			meg, hf    string
			rows, cols int
		}{
			{"linear_q_down_proj.weight", "q_a_proj.weight", 12, h},
			{"linear_q_up_proj.weight", "q_b_proj.weight", 2 * 28, 24},
			{"linear_kv_down_proj.weight", "kv_a_proj_with_mqa.weight", 16, h},
			{"linear_kv_up_proj.weight", "kv_b_proj.weight", 2 * 22, 16},
		} {
			x := model[s+r.meg]
			require.NotNil(t, x, r.meg)
			require.Equal(t, []int{r.rows, r.cols}, x.Shape(), r.meg)
			require.Equal(t, rows(a+r.hf, r.rows, r.cols), x.Data, r.meg)
		}
		for meg, hf := range map[string]string{"q_layernorm.weight": "q_a_layernorm.weight", "kv_layernorm.weight": "kv_a_layernorm.weight"} {
			require.Equal(t, orig[a+hf].Data, model[s+meg].Data, meg)
		}
		proj := model[s+"linear_proj.weight"]
		require.Equal(t, []int{h, 20}, proj.Shape(), "linear_proj: the rank's 2 heads × 10 value channels")
		o := orig[a+"o_proj.weight"].Data
		for i := range h {
			require.Equal(t, o[(i*40+tp*20)*4:(i*40+tp*20+20)*4], proj.Data[i*20*4:(i+1)*20*4])
		}
		sf.Close()
	}
}
