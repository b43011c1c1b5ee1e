package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/ckpt/hf"
	"github.com/gomegatron/gomegatron/ckpt/hf/hftest"
	"github.com/gomegatron/gomegatron/ckpt/megatron"
	"github.com/gomegatron/gomegatron/ckpt/safetensors"
	"github.com/gomegatron/gomegatron/tensor"
)

// withMTPLayer adds a multi-token-prediction layer to the Hugging Face folder dir (one
// model.safetensors of num_hidden_layers 3): model.layers.3, a copy of layer 2 with
// DeepSeek-V3's enorm, hnorm, eh_proj and shared_head.norm. It returns the tensors added.
func withMTPLayer(t *testing.T, dir string) map[string]bool {
	t.Helper()
	ts := hfTensors(t, dir)
	var named []safetensors.Named
	added := map[string]bool{}
	for n, x := range ts {
		named = append(named, safetensors.Named{Name: n, T: x})
		if rest, ok := strings.CutPrefix(n, "model.layers.2."); ok {
			named = append(named, safetensors.Named{Name: "model.layers.3." + rest, T: x})
			added["model.layers.3."+rest] = true
		}
	}
	for _, n := range []string{"enorm.weight", "hnorm.weight", "shared_head.norm.weight"} {
		named = append(named, safetensors.Named{Name: "model.layers.3." + n, T: tensor.FromF32(make([]float32, 48), 48)})
		added["model.layers.3."+n] = true
	}
	named = append(named, safetensors.Named{Name: "model.layers.3.eh_proj.weight", T: tensor.FromF32(make([]float32, 48*96), 48, 96)})
	added["model.layers.3.eh_proj.weight"] = true
	require.NoError(t, safetensors.Write(filepath.Join(dir, safetensors.SingleFile), named, map[string]string{"format": "pt"}))
	return added
}

// TestDeepseekV3RoundTrip: DeepSeek-V3 (a query latent, YaRN, 8 experts in 4 groups with
// the expert bias, a multi-token-prediction layer stored after the model's 3) to
// Megatron-Core (local spec) at TP 2 × EP 2 and back, in float32 and in bf16: the
// multi-token-prediction layer is dropped (and said so); the args carry the sigmoid router,
// the expert bias, the groups and the scaling; mlp.router.expert_bias is e_score_correction_bias,
// float32 in every shard, whole on both TP ranks; the Hugging Face tensors (the bias
// float32 in a bf16 folder too), architecture, router and attention keys and remote code
// come back.
func TestDeepseekV3RoundTrip(t *testing.T) {
	for _, dtype := range []string{"fp32", "bf16"} {
		t.Run(dtype, func(t *testing.T) {
			tmp := t.TempDir()
			src, meg, back := filepath.Join(tmp, "src"), filepath.Join(tmp, "meg"), filepath.Join(tmp, "back")
			syntheticHFScaled(t, src, hftest.TinyDeepseekV3, 0.1)
			code := []byte("# DeepSeek-V3's remote code\n")
			require.NoError(t, os.WriteFile(filepath.Join(src, "modeling_deepseek.py"), code, 0o644))
			mtp := withMTPLayer(t, src)
			orig := hfTensors(t, src)
			for n := range mtp {
				delete(orig, n)
			}
			out := convertOK(t, "--load_path", src, "--save_path", meg, "--target_tensor_model_parallel_size", "2",
				"--target_expert_model_parallel_size", "2", "--transformer-impl", "local", "--target_params_dtype", dtype)
			require.Contains(t, out, fmt.Sprintf("dropped %d tensors of the multi-token-prediction layers", len(mtp)))
			c, full := megatronFull(t, meg)
			cfg := c.Config
			require.Equal(t, string(hf.DeepseekV3), c.Info.HFModelType)
			require.Equal(t, string(hf.DeepseekV3), inferFamily(&cfg))
			require.Equal(t, 3, cfg.NumLayers)
			require.True(t, cfg.MultiLatentAttention && cfg.QKLayernorm && cfg.MoERouterEnableExpertBias)
			require.Equal(t, "sigmoid", cfg.MoERouterScoreFunction)
			require.Equal(t, []int{8, 4, 4, 2}, []int{cfg.NumExperts, cfg.MoERouterTopK, cfg.MoERouterNumGroups, cfg.MoERouterGroupTopK})
			require.Equal(t, 2.5, cfg.MoERouterTopKScaling)
			require.Contains(t, full, "decoder.layers.2.mlp.router.expert_bias")
			require.NotContains(t, full, "decoder.layers.0.mlp.router.expert_bias")
			for tp := range 2 {
				for ep := range 2 {
					sf, err := megatron.LoadShard(megatron.Location{Root: meg, Release: true, ExpertSize: 2, ExpertRank: ep}, tp, 0, 1)
					require.NoError(t, err)
					model, _, err := sf.Model()
					require.NoError(t, err)
					for _, L := range []string{"1", "2"} {
						b := model["decoder.layers."+L+".mlp.router.expert_bias"]
						require.NotNil(t, b)
						require.Equal(t, tensor.F32, b.DType())
						require.Equal(t, orig["model.layers."+L+".mlp.gate.e_score_correction_bias"].Data, b.Data)
					}
					sf.Close()
				}
			}

			convertOK(t, "--load_path", meg, "--save_path", back, "--convert_checkpoint_from_megatron_to_transformers", "--hf_ckpt_path", src)
			got := hfTensors(t, back)
			if dtype == "fp32" {
				requireSameHF(t, src, back, orig, hf.DeepseekV3)
			} else {
				require.Equal(t, len(orig), len(got))
				for n, w := range orig {
					g := got[n]
					require.NotNil(t, g, n)
					require.Equal(t, w.Shape(), g.Shape(), n)
					if strings.HasSuffix(n, ".e_score_correction_bias") {
						require.Equal(t, tensor.F32, g.DType(), n)
						require.Equal(t, w.Data, g.Data, n)
					} else {
						require.Equal(t, tensor.BF16, g.DType(), n)
					}
				}
			}
			want, err := readJSONMap(filepath.Join(src, "config.json"))
			require.NoError(t, err)
			gotConf, err := readJSONMap(filepath.Join(back, "config.json"))
			require.NoError(t, err)
			for _, k := range []string{"architectures", "auto_map", "q_lora_rank", "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim",
				"v_head_dim", "rope_scaling", "rope_theta", "max_position_embeddings", "first_k_dense_replace", "n_shared_experts",
				"n_routed_experts", "num_experts_per_tok", "norm_topk_prob", "topk_method", "scoring_func", "routed_scaling_factor",
				"n_group", "topk_group", "rope_interleave", "aux_loss_alpha", "seq_aux"} {
				require.Equal(t, want[k], gotConf[k], k)
			}
			require.Equal(t, 0.0, gotConf["num_nextn_predict_layers"], "the multi-token-prediction layers are not written back")
			b, err := os.ReadFile(filepath.Join(back, "modeling_deepseek.py"))
			require.NoError(t, err)
			require.Equal(t, code, b)
		})
	}
}
