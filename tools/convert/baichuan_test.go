package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/ckpt/hf"
	"github.com/gomegatron/gomegatron/ckpt/hf/hftest"
	"github.com/gomegatron/gomegatron/ckpt/megatron"
	"github.com/gomegatron/gomegatron/ckpt/torchpickle"
	"github.com/gomegatron/gomegatron/tensor"
)

// TestBaichuanRoundTrip converts a Baichuan 2-13B-shaped folder (ALiBi, NormHead, W_pack)
// to Megatron at TP 2 and back: Megatron's fused QKV is W_pack regrouped per head, the args
// carry ALiBi and use_normhead, and the Hugging Face tensors and architecture come back
// unchanged (with the remote-code files and auto_map of --hf_ckpt_path's folder).
func TestBaichuanRoundTrip(t *testing.T) {
	tmp := t.TempDir()
	src, meg, back := filepath.Join(tmp, "baichuan2"), filepath.Join(tmp, "meg"), filepath.Join(tmp, "back")
	syntheticHF(t, src, `{"model_type": "baichuan", "architectures": ["BaichuanForCausalLM"],
		"auto_map": {"AutoConfig": "configuration_baichuan.BaichuanConfig", "AutoModelForCausalLM": "modeling_baichuan.BaichuanForCausalLM"},
		"hidden_size": 48, "intermediate_size": 96, "num_attention_heads": 6, "num_hidden_layers": 2, "vocab_size": 125696,
		"model_max_length": 16, "rms_norm_eps": 1e-06, "hidden_act": "silu", "tie_word_embeddings": false, "bos_token_id": 1}`)
	require.NoError(t, os.WriteFile(filepath.Join(src, "modeling_baichuan.py"), []byte("# remote code\n"), 0o644))
	orig := hfTensors(t, src)
	convertOK(t, "--load_path", src, "--save_path", meg, "--target_tensor_model_parallel_size", "2", "--model_name", "baichuan2-13b")
	c, _ := megatronFull(t, meg)
	require.Equal(t, "alibi", c.Config.PositionEmbeddingType)
	require.True(t, c.Config.UseNormHead, "args say use_normhead")
	require.Equal(t, "baichuan", c.Info.HFModelType)
	sf, err := megatron.LoadShard(megatron.Location{Root: meg, Release: true}, 1, 0, 1)
	require.NoError(t, err)
	defer sf.Close()
	ts, _, err := sf.Model()
	require.NoError(t, err)
	require.Equal(t, []int{3 * 48 / 2, 48}, ts["decoder.layers.0.self_attention.linear_qkv.weight"].Shape(), "3 of 6 heads' q, k, v")

	convertOK(t, "--load_path", meg, "--save_path", back, "--convert_checkpoint_from_megatron_to_transformers", "--hf_ckpt_path", src)
	requireSameHF(t, src, back, orig, hf.Baichuan)
	conf, err := readJSONMap(filepath.Join(back, "config.json"))
	require.NoError(t, err)
	require.Equal(t, []any{"BaichuanForCausalLM"}, conf["architectures"])
	require.NotNil(t, conf["auto_map"])
	require.FileExists(t, filepath.Join(back, "modeling_baichuan.py"), "the remote code is copied")
}

// TestQwen1RoundTrip converts a Qwen (1.0) folder as Pai's Qwen1.0 branch does (legacy
// keys, --model_name qwen-7b) at TP 2 and back: the tensors and the architecture return.
func TestQwen1RoundTrip(t *testing.T) {
	tmp := t.TempDir()
	src, meg, back := filepath.Join(tmp, "qwen"), filepath.Join(tmp, "meg"), filepath.Join(tmp, "back")
	syntheticHF(t, src, `{"model_type": "qwen", "architectures": ["QWenLMHeadModel"], "hidden_size": 48, "intermediate_size": 192,
		"num_attention_heads": 6, "num_hidden_layers": 2, "kv_channels": 8, "vocab_size": 300, "layer_norm_epsilon": 1e-06,
		"rotary_emb_base": 10000, "rotary_pct": 1.0, "seq_length": 32, "max_position_embeddings": 32, "no_bias": true,
		"tie_word_embeddings": false, "use_dynamic_ntk": true, "use_logn_attn": true}`)
	orig := hfTensors(t, src)
	convertOK(t, "--load_path", src, "--save_path", meg, "--target_tensor_model_parallel_size", "2", "--model_name", "qwen-7b",
		"--megatron-format", "legacy", "--make_vocab_size_divisible_by", "1")
	c, _ := megatronFull(t, meg)
	require.Equal(t, megatron.Legacy, c.Format)
	require.True(t, c.Config.AddQKVBias)
	require.Equal(t, 96, c.Config.FFNHiddenSize, "w1 and w2 hold half of intermediate_size each")
	require.Equal(t, "qwen", c.Info.HFModelType)
	convertOK(t, "--load_path", meg, "--save_path", back, "--convert_checkpoint_from_megatron_to_transformers", "--hf_ckpt_path", src)
	requireSameHF(t, src, back, orig, hf.Qwen)
}

// requireSameHF: the folder back holds src's tensors orig, and its config.json describes
// src's architecture as family.
func requireSameHF(t *testing.T, src, back string, orig map[string]*tensor.Tensor, family hf.Family) {
	t.Helper()
	requireSameTensors(t, orig, hfTensors(t, back))
	m, err := hf.ReadConfig(back)
	require.NoError(t, err)
	want, err := hf.ReadConfig(src)
	require.NoError(t, err)
	require.Equal(t, family, m.Family)
	require.Equal(t, want.Config, m.Config)
}

// TestModelNameChoosesGuessedFamily: a Megatron checkpoint that does not record its Hugging
// Face family (Pai's convertors write none) converts back as the family --model_name names,
// where the architecture fits it: a QKV-biased Llama is Qwen2 by default, Qwen (1.0) as
// qwen-7b.
func TestModelNameChoosesGuessedFamily(t *testing.T) {
	tmp := t.TempDir()
	src, meg := filepath.Join(tmp, "qwen"), filepath.Join(tmp, "meg")
	syntheticHF(t, src, `{"model_type": "qwen", "architectures": ["QWenLMHeadModel"], "hidden_size": 48, "intermediate_size": 192,
		"num_attention_heads": 6, "num_hidden_layers": 2, "kv_channels": 8, "vocab_size": 300, "layer_norm_epsilon": 1e-06,
		"seq_length": 32, "no_bias": true, "tie_word_embeddings": false}`)
	convertOK(t, "--load_path", src, "--save_path", meg, "--megatron-format", "legacy", "--make_vocab_size_divisible_by", "1")
	// Forget the family, as a Pai-written checkpoint has none.
	path := filepath.Join(meg, "release", megatron.ShardDirName(0, 0, 1), megatron.ModelFile)
	v, err := torchpickle.Load(path)
	require.NoError(t, err)
	ns, _ := v.(*torchpickle.Dict).Get("args")
	ns.(*torchpickle.Namespace).Set("hf_model_type", nil)
	require.NoError(t, torchpickle.Save(path, v))
	for name, fam := range map[string]hf.Family{"": hf.Qwen2, "qwen-7b": hf.Qwen} {
		out := filepath.Join(tmp, "back-"+string(fam))
		args := []string{"--load_path", meg, "--save_path", out, "--convert_checkpoint_from_megatron_to_transformers"}
		if name != "" {
			args = append(args, "--model_name", name)
		}
		convertOK(t, args...)
		m, err := hf.ReadConfig(out)
		require.NoError(t, err)
		require.Equal(t, fam, m.Family, "--model_name %q", name)
	}
}

// TestQwen3RoundTrip converts a Qwen3 folder (q_norm/k_norm, GQA, head_dim ≠ hidden/heads,
// tied embeddings) to Megatron-Core at TP 2 and back: the head norms become
// self_attention.q_layernorm/k_layernorm (whole on each rank), args say qk_layernorm, and
// the tensors and architecture come back unchanged. The legacy layout, which has no head
// norms, is refused.
func TestQwen3RoundTrip(t *testing.T) {
	tmp := t.TempDir()
	src, meg, back := filepath.Join(tmp, "qwen3"), filepath.Join(tmp, "meg"), filepath.Join(tmp, "back")
	syntheticHF(t, src, hftest.TinyQwen3)
	orig := hfTensors(t, src)
	convertOK(t, "--load_path", src, "--save_path", meg, "--target_tensor_model_parallel_size", "2", "--model_name", "qwen3-0.6b")
	c, _ := megatronFull(t, meg)
	require.True(t, c.Config.QKLayernorm, "args say qk_layernorm")
	require.Equal(t, 16, c.Config.KVChannels)
	sf, err := megatron.LoadShard(megatron.Location{Root: meg, Release: true}, 1, 0, 1)
	require.NoError(t, err)
	defer sf.Close()
	ts, _, err := sf.Model()
	require.NoError(t, err)
	require.Equal(t, []int{16}, ts["decoder.layers.1.self_attention.k_layernorm.weight"].Shape(), "whole on every TP rank")
	convertOK(t, "--load_path", meg, "--save_path", back, "--convert_checkpoint_from_megatron_to_transformers", "--hf_ckpt_path", src)
	requireSameHF(t, src, back, orig, hf.Qwen3)

	var so, se bytes.Buffer
	err = run([]string{"--load_path", src, "--save_path", filepath.Join(tmp, "legacy"), "--megatron-format", "legacy", "--progress", "none"}, &so, &se)
	require.Error(t, err)
	require.Contains(t, err.Error(), "q_layernorm")
}

// TestQwen3MoERoundTrip converts a Qwen3-MoE folder to Megatron-Core at TP 2 with expert
// parallelism 2 and back: the router and experts take Megatron's MoE names, args carry the
// experts and qk_layernorm, and the tensors and architecture come back unchanged.
func TestQwen3MoERoundTrip(t *testing.T) {
	tmp := t.TempDir()
	src, meg, back := filepath.Join(tmp, "qwen3moe"), filepath.Join(tmp, "meg"), filepath.Join(tmp, "back")
	syntheticHF(t, src, hftest.TinyQwen3MoE)
	orig := hfTensors(t, src)
	convertOK(t, "--load_path", src, "--save_path", meg, "--target_tensor_model_parallel_size", "2",
		"--target_expert_model_parallel_size", "2", "--model_name", "qwen3-30b-a3b")
	c, _ := megatronFull(t, meg)
	require.True(t, c.Config.QKLayernorm)
	require.Equal(t, 4, c.Config.NumExperts)
	convertOK(t, "--load_path", meg, "--save_path", back, "--convert_checkpoint_from_megatron_to_transformers", "--hf_ckpt_path", src)
	requireSameHF(t, src, back, orig, hf.Qwen3MoE)
	conf, err := readJSONMap(filepath.Join(back, "config.json"))
	require.NoError(t, err)
	require.Equal(t, true, conf["norm_topk_prob"])
	require.Equal(t, 32.0, conf["moe_intermediate_size"])
}

// TestQwen2MoERoundTrip converts a Qwen1.5-MoE-shaped folder to Megatron-Core at TP 2
// with expert parallelism 2 and back: the shared expert and its gate take Megatron-Core's
// shared_experts names, the args carry pre-softmax routing and the shared experts, and the
// tensors and config come back unchanged. A Qwen3-MoE without renormalised scores keeps
// norm_topk_prob false.
func TestQwen2MoERoundTrip(t *testing.T) {
	tmp := t.TempDir()
	src, meg, back := filepath.Join(tmp, "qwen2moe"), filepath.Join(tmp, "meg"), filepath.Join(tmp, "back")
	syntheticHF(t, src, hftest.TinyQwen2MoE)
	orig := hfTensors(t, src)
	convertOK(t, "--load_path", src, "--save_path", meg, "--target_tensor_model_parallel_size", "2",
		"--target_expert_model_parallel_size", "2", "--model_name", "qwen1.5-moe-a2.7b")
	c, full := megatronFull(t, meg)
	require.True(t, c.Config.MoERouterPreSoftmax && c.Config.MoESharedExpertGate && c.Config.AddQKVBias)
	require.Equal(t, 64, c.Config.MoESharedExpertIntermediateSize)
	require.Equal(t, []int{1, 48}, full["decoder.layers.1.mlp.shared_experts.gate_weight"].Shape())
	require.Equal(t, []int{128, 48}, full["decoder.layers.1.mlp.shared_experts.linear_fc1.weight"].Shape())
	require.Equal(t, string(hf.Qwen2MoE), inferFamily(&c.Config))
	convertOK(t, "--load_path", meg, "--save_path", back, "--convert_checkpoint_from_megatron_to_transformers")
	requireSameHF(t, src, back, orig, hf.Qwen2MoE)
	conf, err := readJSONMap(filepath.Join(back, "config.json"))
	require.NoError(t, err)
	require.Equal(t, false, conf["norm_topk_prob"])
	require.Equal(t, 64.0, conf["shared_expert_intermediate_size"])
	require.Equal(t, []any{"Qwen2MoeForCausalLM"}, conf["architectures"])

	// A dense first layer (mlp_only_layers [0]): moe_layer_freq [0, 1] and both FFN sizes.
	mixed, megMixed, backMixed := filepath.Join(tmp, "mixed"), filepath.Join(tmp, "meg-mixed"), filepath.Join(tmp, "back-mixed")
	syntheticHF(t, mixed, strings.Replace(hftest.TinyQwen2MoE, `"mlp_only_layers": []`, `"mlp_only_layers": [0]`, 1))
	convertOK(t, "--load_path", mixed, "--save_path", megMixed, "--target_tensor_model_parallel_size", "2", "--target_expert_model_parallel_size", "2")
	cm, fullMixed := megatronFull(t, megMixed)
	require.Equal(t, "[0, 1]", cm.Config.MoELayerFreq)
	require.Equal(t, []int{2 * 96, 48}, fullMixed["decoder.layers.0.mlp.linear_fc1.weight"].Shape())
	convertOK(t, "--load_path", megMixed, "--save_path", backMixed, "--convert_checkpoint_from_megatron_to_transformers")
	requireSameHF(t, mixed, backMixed, hfTensors(t, mixed), hf.Qwen2MoE)

	pre := filepath.Join(tmp, "qwen3moe-pre")
	syntheticHF(t, pre, strings.Replace(hftest.TinyQwen3MoE, `"norm_topk_prob": true`, `"norm_topk_prob": false`, 1))
	convertOK(t, "--load_path", pre, "--save_path", filepath.Join(tmp, "meg3"), "--target_tensor_model_parallel_size", "2")
	convertOK(t, "--load_path", filepath.Join(tmp, "meg3"), "--save_path", filepath.Join(tmp, "back3"), "--convert_checkpoint_from_megatron_to_transformers")
	requireSameHF(t, pre, filepath.Join(tmp, "back3"), hfTensors(t, pre), hf.Qwen3MoE)
	conf, err = readJSONMap(filepath.Join(tmp, "back3", "config.json"))
	require.NoError(t, err)
	require.Equal(t, false, conf["norm_topk_prob"])
}

// TestInternlm2RoundTrip: an InternLM2 folder to Megatron-Core at TP 2 × PP 2 (its wqkv is
// Megatron's linear_qkv as it is) and back, the tensors, the architecture and the base
// config's remote-code auto_map unchanged.
func TestInternlm2RoundTrip(t *testing.T) {
	tmp := t.TempDir()
	src, meg, back := filepath.Join(tmp, "internlm2"), filepath.Join(tmp, "meg"), filepath.Join(tmp, "back")
	syntheticHF(t, src, hftest.TinyInternlm2)
	orig := hfTensors(t, src)
	convertOK(t, "--load_path", src, "--save_path", meg, "--target_tensor_model_parallel_size", "2",
		"--target_pipeline_model_parallel_size", "2", "--model_name", "internlm2-chat-7b")
	_, full := megatronFull(t, meg)
	require.Equal(t, orig["model.layers.1.attention.wqkv.weight"].Data, full["decoder.layers.1.self_attention.linear_qkv.weight"].Data)
	convertOK(t, "--load_path", meg, "--save_path", back, "--convert_checkpoint_from_megatron_to_transformers", "--hf_ckpt_path", src)
	requireSameHF(t, src, back, orig, hf.Internlm2)
	conf, err := readJSONMap(filepath.Join(back, "config.json"))
	require.NoError(t, err)
	require.Equal(t, "modeling_internlm2.InternLM2ForCausalLM", conf["auto_map"].(map[string]any)["AutoModelForCausalLM"])
	require.Equal(t, []any{"InternLM2ForCausalLM"}, conf["architectures"])
}

// TestGLMRoundTrip: transformers' GLM-4 (interleaved partial RoPE, q/k/v biases, fused
// gate_up_proj) to Megatron-Core at TP 2 and back; the checkpoint records glm, not the
// chatglm its architecture is inferred as.
func TestGLMRoundTrip(t *testing.T) {
	tmp := t.TempDir()
	src, meg, back := filepath.Join(tmp, "glm"), filepath.Join(tmp, "meg"), filepath.Join(tmp, "back")
	syntheticHF(t, src, hftest.TinyGLM)
	orig := hfTensors(t, src)
	convertOK(t, "--load_path", src, "--save_path", meg, "--target_tensor_model_parallel_size", "2")
	c, _ := megatronFull(t, meg)
	require.True(t, c.Config.RotaryInterleaved)
	require.Equal(t, string(hf.GLM), c.Info.HFModelType)
	convertOK(t, "--load_path", meg, "--save_path", back, "--convert_checkpoint_from_megatron_to_transformers", "--hf_ckpt_path", src)
	requireSameHF(t, src, back, orig, hf.GLM)
}

// TestDeepseekMoERoundTrip: DeepSeek-MoE (a dense first layer, ungated shared experts) to
// Megatron-Core at TP 2 × EP 2 × PP 3 and back; its family is inferred from the
// architecture too.
func TestDeepseekMoERoundTrip(t *testing.T) {
	tmp := t.TempDir()
	src, meg, back := filepath.Join(tmp, "deepseek"), filepath.Join(tmp, "meg"), filepath.Join(tmp, "back")
	syntheticHF(t, src, hftest.TinyDeepseekMoE)
	orig := hfTensors(t, src)
	convertOK(t, "--load_path", src, "--save_path", meg, "--target_tensor_model_parallel_size", "2",
		"--target_expert_model_parallel_size", "2", "--target_pipeline_model_parallel_size", "3", "--model_name", "deepseek-moe-16b-base")
	c, full := megatronFull(t, meg)
	require.Equal(t, string(hf.Deepseek), inferFamily(&c.Config))
	require.Equal(t, []int{2 * 64, 48}, full["decoder.layers.2.mlp.shared_experts.linear_fc1.weight"].Shape())
	_, gated := full["decoder.layers.2.mlp.shared_experts.gate_weight"]
	require.False(t, gated)
	convertOK(t, "--load_path", meg, "--save_path", back, "--convert_checkpoint_from_megatron_to_transformers", "--hf_ckpt_path", src)
	requireSameHF(t, src, back, orig, hf.Deepseek)
	conf, err := readJSONMap(filepath.Join(back, "config.json"))
	require.NoError(t, err)
	require.Equal(t, []any{1.0, 2.0}, []any{conf["first_k_dense_replace"], conf["n_shared_experts"]})
}

// TestYaRNRoundTrip: Qwen2.5's rope_scaling yarn becomes --position-embedding-type yarn
// with Megatron-Core's yarn_* args and comes back as the same rope_scaling.
func TestYaRNRoundTrip(t *testing.T) {
	tmp := t.TempDir()
	src, meg, back := filepath.Join(tmp, "qwen25"), filepath.Join(tmp, "meg"), filepath.Join(tmp, "back")
	syntheticHF(t, src, `{"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], "hidden_size": 64, "intermediate_size": 128,
		"num_attention_heads": 4, "num_key_value_heads": 2, "num_hidden_layers": 2, "vocab_size": 300, "rms_norm_eps": 1e-06,
		"rope_theta": 1000000.0, "max_position_embeddings": 131072, "tie_word_embeddings": true,
		"rope_scaling": {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}}`)
	orig := hfTensors(t, src)
	convertOK(t, "--load_path", src, "--save_path", meg, "--target_tensor_model_parallel_size", "2")
	c, _ := megatronFull(t, meg)
	require.Equal(t, "yarn", c.Config.PositionEmbeddingType)
	require.Equal(t, []float64{4, 32768}, []float64{c.Config.YarnScalingFactor, float64(c.Config.YarnOrigMaxPositions)})
	convertOK(t, "--load_path", meg, "--save_path", back, "--convert_checkpoint_from_megatron_to_transformers")
	requireSameHF(t, src, back, orig, hf.Qwen2)
}

// TestUpcycleQwen3: a dense Qwen3 upcycled with --num-experts is Qwen3-MoE's architecture:
// the Megatron checkpoint records qwen3_moe, and it converts to a Qwen3-MoE folder whose
// experts are the dense MLP and whose head norms are the Qwen3's.
func TestUpcycleQwen3(t *testing.T) {
	tmp := t.TempDir()
	src, moe, back := filepath.Join(tmp, "qwen3"), filepath.Join(tmp, "moe"), filepath.Join(tmp, "back")
	syntheticHF(t, src, hftest.TinyQwen3)
	orig := hfTensors(t, src)
	convertOK(t, "--load_path", src, "--save_path", moe, "--num-experts", "2", "--moe-router-topk", "1", "--model_name", "qwen3-8b")
	c, _ := megatronFull(t, moe)
	require.Equal(t, string(hf.Qwen3MoE), c.Info.HFModelType)
	convertOK(t, "--load_path", moe, "--save_path", back, "--convert_checkpoint_from_megatron_to_transformers", "--model_name", "qwen3-8b")
	got := hfTensors(t, back)
	m, err := hf.ReadConfig(back)
	require.NoError(t, err)
	require.Equal(t, hf.Qwen3MoE, m.Family)
	for e := 0; e < 2; e++ {
		require.Equal(t, orig["model.layers.1.mlp.up_proj.weight"].Data, got[fmt.Sprintf("model.layers.1.mlp.experts.%d.up_proj.weight", e)].Data)
	}
	require.Equal(t, orig["model.layers.0.self_attn.k_norm.weight"].Data, got["model.layers.0.self_attn.k_norm.weight"].Data)
}

// TestLlama31RoundTrip: Llama 3.1's rope_scaling becomes --use-rope-scaling with its factor
// in the Megatron args and comes back as the same rope_scaling.
func TestLlama31RoundTrip(t *testing.T) {
	tmp := t.TempDir()
	src, meg, back := filepath.Join(tmp, "llama32"), filepath.Join(tmp, "meg"), filepath.Join(tmp, "back")
	syntheticHF(t, src, `{"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 64, "intermediate_size": 128,
		"num_attention_heads": 4, "num_key_value_heads": 2, "num_hidden_layers": 2, "vocab_size": 300, "rms_norm_eps": 1e-05,
		"rope_theta": 500000.0, "max_position_embeddings": 131072, "tie_word_embeddings": true,
		"rope_scaling": {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
		"original_max_position_embeddings": 8192}}`)
	orig := hfTensors(t, src)
	convertOK(t, "--load_path", src, "--save_path", meg, "--target_tensor_model_parallel_size", "2", "--model_name", "llama3.2-1b")
	c, _ := megatronFull(t, meg)
	require.True(t, c.Config.UseRopeScaling)
	require.Equal(t, 32.0, c.Config.RopeScalingFactor)
	convertOK(t, "--load_path", meg, "--save_path", back, "--convert_checkpoint_from_megatron_to_transformers", "--hf_ckpt_path", src)
	requireSameHF(t, src, back, orig, hf.Llama)
	conf, err := readJSONMap(filepath.Join(back, "config.json"))
	require.NoError(t, err)
	require.Equal(t, map[string]any{"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
		"original_max_position_embeddings": 8192.0}, conf["rope_scaling"])
}
