package hf_test

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/ckpt/hf"
	"github.com/gomegatron/gomegatron/ckpt/hf/hftest"
	"github.com/gomegatron/gomegatron/kernels/cpu"
	"github.com/gomegatron/gomegatron/optim"
	"github.com/gomegatron/gomegatron/tensor"
)

// TestBaichuanIsLlamaWithWPack: Baichuan-7B is Llama (multi-head) with one W_pack [q; k; v]
// projection. The llama-mha fixture repacked that way, under a Baichuan config.json, gives
// transformers' Llama loss, logits and gradients (W_pack's being [dq; dk; dv]), and saves
// back as the same tensors and config.
func TestBaichuanIsLlamaWithWPack(t *testing.T) {
	src := fixtureDir("llama-mha")
	orig := readAll(t, filepath.Join(src, "model.safetensors"))
	dir := filepath.Join(t.TempDir(), "baichuan-7b")
	ts := map[string]*tensor.Tensor{}
	for n, x := range orig {
		ts[n] = x
	}
	for l := 0; l < 2; l++ {
		p := fmt.Sprintf("model.layers.%d.self_attn.", l)
		var pack []float32
		for _, k := range []string{"q_proj", "k_proj", "v_proj"} {
			pack = append(pack, orig[p+k+".weight"].ToF32()...)
			delete(ts, p+k+".weight")
		}
		ts[p+"W_pack.weight"] = tensor.FromF32(pack, 3*64, 64)
	}
	conf := `{"model_type": "baichuan", "architectures": ["BaiChuanForCausalLM"], "auto_map": {"AutoModelForCausalLM": "modeling_baichuan.BaiChuanForCausalLM"},
		"hidden_size": 64, "intermediate_size": 172, "num_attention_heads": 4, "num_hidden_layers": 2, "vocab_size": 256,
		"max_position_embeddings": 128, "rms_norm_eps": 1e-05, "hidden_act": "silu", "tie_word_embeddings": false, "bos_token_id": 1, "eos_token_id": 2}`
	writeFolder(t, dir, conf, ts)

	be := cpu.New()
	m, ref, grads := fixtureStep(t, be, dir, src)
	require.Equal(t, hf.Baichuan, m.Family)
	require.Equal(t, "rope", m.Config.PositionEmbeddingType)
	require.False(t, m.Config.UseNormHead)
	for l := 0; l < 2; l++ {
		p := fmt.Sprintf("model.layers.%d.self_attn.", l)
		var dpack []float32
		for _, k := range []string{"q_proj", "k_proj", "v_proj"} {
			dpack = append(dpack, ref["grad."+p+k+".weight"].ToF32()...)
		}
		require.LessOrEqual(t, relL2(grads[p+"W_pack.weight"].F32(), dpack), 1e-4, "grad W_pack = [dq; dk; dv]")
	}
	require.LessOrEqual(t, relL2(grads["lm_head.weight"].F32(), ref["grad.lm_head.weight"].ToF32()), 1e-4)

	saved, out, base := requireSavesAgain(t, be, dir, conf, hf.Baichuan, ts)
	require.Equal(t, hf.Baichuan, saved.Family)
	raw, err := os.ReadFile(filepath.Join(out, "config.json"))
	require.NoError(t, err)
	var c map[string]any
	require.NoError(t, json.Unmarshal(raw, &c))
	require.Equal(t, []any{"BaiChuanForCausalLM"}, c["architectures"])
	require.Equal(t, base["auto_map"], c["auto_map"], "the remote-code entry stays")
}

// TestBaichuanMatchesTorch: the 13B models' ALiBi (6 heads: slopes beyond a power of two)
// with Baichuan 2's NormHead (vocabulary 125696), and Baichuan-7B's RoPE, against Baichuan's
// remote code transcribed in float64 torch (testdata/hf_forward.py): loss and logits.
func TestBaichuanMatchesTorch(t *testing.T) {
	hftest.NeedTorch(t)
	rows := [][]int64{{1, 17, 42, 199, 3, 3, 88, 120, 7, 64}, {2, 5, 125000, 33, 61, 61, 0, 14, 100, 77}}
	for _, tc := range []struct {
		name, conf  string
		pos         string
		normHead    bool
		vocab, cols int
	}{
		{"baichuan2-13b", `{"model_type": "baichuan", "architectures": ["BaichuanForCausalLM"], "hidden_size": 48,
			"intermediate_size": 96, "num_attention_heads": 6, "num_hidden_layers": 2, "vocab_size": 125696,
			"model_max_length": 16, "rms_norm_eps": 1e-06, "hidden_act": "silu", "tie_word_embeddings": false}`, "alibi", true, 125696, 400},
		{"baichuan-7b", `{"model_type": "baichuan", "architectures": ["BaiChuanForCausalLM"], "hidden_size": 48,
			"intermediate_size": 96, "num_attention_heads": 6, "num_hidden_layers": 2, "vocab_size": 125001,
			"max_position_embeddings": 16, "rms_norm_eps": 1e-06, "hidden_act": "silu", "tie_word_embeddings": false}`, "rope", false, 125001, 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), tc.name)
			require.NoError(t, hftest.Write(dir, tc.conf, 0.1))
			m := requireTorchForward(t, dir, rows, tc.cols)
			require.Equal(t, tc.pos, m.Config.PositionEmbeddingType)
			require.Equal(t, tc.normHead, m.Config.UseNormHead)
			require.Equal(t, tc.vocab, m.Config.PaddedVocabSize)
		})
	}
}

// TestQwenIsLlamaWithCAttn: Qwen (1.0) is Llama (multi-head) with a biased c_attn [q; k; v],
// w2 as the gate and w1 as the up projection (intermediate_size counting both). The
// llama-mha fixture repacked that way, with zero c_attn biases, gives transformers' Llama
// loss, logits and gradients, and saves back as the same tensors.
func TestQwenIsLlamaWithCAttn(t *testing.T) {
	src := fixtureDir("llama-mha")
	orig := readAll(t, filepath.Join(src, "model.safetensors"))
	ts := map[string]*tensor.Tensor{
		"transformer.wte.weight": orig["model.embed_tokens.weight"], "transformer.ln_f.weight": orig["model.norm.weight"],
		"lm_head.weight": orig["lm_head.weight"],
	}
	ren := map[string]string{"input_layernorm": "ln_1", "post_attention_layernorm": "ln_2", "self_attn.o_proj": "attn.c_proj",
		"mlp.gate_proj": "mlp.w2", "mlp.up_proj": "mlp.w1", "mlp.down_proj": "mlp.c_proj"}
	for l := 0; l < 2; l++ {
		p, q := fmt.Sprintf("model.layers.%d.", l), fmt.Sprintf("transformer.h.%d.", l)
		for a, b := range ren {
			ts[q+b+".weight"] = orig[p+a+".weight"]
		}
		var pack []float32
		for _, k := range []string{"q_proj", "k_proj", "v_proj"} {
			pack = append(pack, orig[p+"self_attn."+k+".weight"].ToF32()...)
		}
		ts[q+"attn.c_attn.weight"] = tensor.FromF32(pack, 3*64, 64)
		ts[q+"attn.c_attn.bias"] = tensor.FromF32(make([]float32, 3*64), 3*64)
	}
	conf := `{"model_type": "qwen", "architectures": ["QWenLMHeadModel"], "hidden_size": 64, "intermediate_size": 344,
		"num_attention_heads": 4, "num_hidden_layers": 2, "kv_channels": 16, "vocab_size": 256, "layer_norm_epsilon": 1e-05,
		"rotary_emb_base": 10000, "rotary_pct": 1.0, "seq_length": 128, "max_position_embeddings": 128, "no_bias": true,
		"use_dynamic_ntk": true, "use_logn_attn": true, "tie_word_embeddings": false}`
	dir := filepath.Join(t.TempDir(), "qwen")
	writeFolder(t, dir, conf, ts)

	be := cpu.New()
	m, ref, grads := fixtureStep(t, be, dir, src)
	require.Equal(t, hf.Qwen, m.Family)
	require.Equal(t, 172, m.Config.FFNHiddenSize)
	for l := 0; l < 2; l++ {
		p, q := fmt.Sprintf("model.layers.%d.", l), fmt.Sprintf("transformer.h.%d.", l)
		var dpack []float32
		for _, k := range []string{"q_proj", "k_proj", "v_proj"} {
			dpack = append(dpack, ref["grad."+p+"self_attn."+k+".weight"].ToF32()...)
		}
		require.LessOrEqual(t, relL2(grads[q+"attn.c_attn.weight"].F32(), dpack), 1e-4, "grad c_attn = [dq; dk; dv]")
		for a, b := range ren {
			require.LessOrEqual(t, relL2(grads[q+b+".weight"].F32(), ref["grad."+p+a+".weight"].ToF32()), 1e-4, b)
		}
	}

	saved, _, _ := requireSavesAgain(t, be, dir, conf, hf.Qwen, ts)
	require.Equal(t, m.Config, saved.Config)
}

// requireSavesAgain loads the folder dir (config.json text conf, tensors ts) and saves it as
// family with conf as the base config: the saved tensors are ts, bit for bit. It returns
// the saved model, its folder and the base.
func requireSavesAgain(t *testing.T, be *cpu.Backend, dir, conf string, family hf.Family, ts map[string]*tensor.Tensor) (*hf.Model, string, map[string]any) {
	t.Helper()
	_, gm, err := hf.Load(be, dir)
	require.NoError(t, err)
	var base map[string]any
	require.NoError(t, json.Unmarshal([]byte(conf), &base))
	out := filepath.Join(t.TempDir(), "saved")
	saved, err := hf.Save(be, gm, out, family, tensor.F32, base)
	require.NoError(t, err)
	got := readAll(t, out)
	require.Len(t, got, len(ts))
	for n, x := range ts {
		require.Equal(t, x.Data, got[n].Data, n)
	}
	return saved, out, base
}

// torchRows are the token rows the torch comparisons of vocabulary-300 models run.
var torchRows = [][]int64{{1, 17, 42, 199, 3, 3, 88, 120, 7, 64}, {2, 5, 290, 33, 61, 61, 0, 14, 100, 77}}

// TestQwenMatchesTorch: Qwen (1.0) with c_attn biases and half-rotary heads (rotary_pct
// 0.5) against Qwen's code transcribed in float64 torch (testdata/hf_forward.py).
func TestQwenMatchesTorch(t *testing.T) {
	hftest.NeedTorch(t)
	dir := filepath.Join(t.TempDir(), "qwen")
	require.NoError(t, hftest.Write(dir, `{"model_type": "qwen", "architectures": ["QWenLMHeadModel"], "hidden_size": 48,
		"intermediate_size": 192, "num_attention_heads": 6, "num_hidden_layers": 2, "kv_channels": 8, "vocab_size": 300,
		"layer_norm_epsilon": 1e-06, "rotary_emb_base": 10000, "rotary_pct": 0.5, "seq_length": 16, "no_bias": true,
		"tie_word_embeddings": false}`, 0.1))
	m := requireTorchForward(t, dir, torchRows, 300)
	require.Equal(t, 0.5, m.Config.RotaryPercent)
}

// fixtureStep loads the folder dir, a repacking of the fixture folder src, runs src's
// inputs forward and backward, requires src's loss and logits, and returns the model, the
// fixture's outputs and the gradients under the folder's names.
func fixtureStep(t *testing.T, be *cpu.Backend, dir, src string) (*hf.Model, map[string]*tensor.Tensor, map[string]*tensor.Tensor) {
	t.Helper()
	m, gm, err := hf.Load(be, dir)
	require.NoError(t, err)
	optim.Attach(be, gm.Params, 1)
	ref := readAll(t, filepath.Join(src, "outputs.safetensors"))
	ids := readAll(t, filepath.Join(src, "inputs.safetensors"))["input_ids"]
	b, s := ids.Dim(0), ids.Dim(1)
	st := gm.NewStash(s, b)
	sum, n, err := gm.Forward(st, hfBatch(append([]int64(nil), ids.I64()...), b, s), 0, 0)
	require.NoError(t, err)
	require.InDelta(t, float64(ref["loss"].ToF32()[0]), sum/n, 1e-5)
	v, logits, want := m.Config.PaddedVocabSize, st.Logits.F32(), ref["logits"].ToF32()
	for i := range b {
		for j := range s {
			for k := range v {
				require.InDelta(t, want[(i*s+j)*v+k], logits[(j*b+i)*v+k], 1e-4)
			}
		}
	}
	require.NoError(t, gm.Backward(st, float32(1/n), nil))
	grads, err := m.Export(be, gm, true)
	require.NoError(t, err)
	return m, ref, grads
}

// requireTorchForward loads the folder dir and requires the loss and each row's first cols
// logits of hf_forward.py's float64 transcription on rows (equal-length token rows).
func requireTorchForward(t *testing.T, dir string, rows [][]int64, cols int) *hf.Model {
	t.Helper()
	wantLoss, wantLogits := hftest.PyForward(t, dir, rows, cols)
	m, gm, err := hf.Load(cpu.New(), dir)
	require.NoError(t, err)
	b, s, v := len(rows), len(rows[0]), m.Config.PaddedVocabSize
	var ids []int64
	for _, r := range rows {
		ids = append(ids, r...)
	}
	st := gm.NewStash(s, b)
	sum, n, err := gm.Forward(st, hfBatch(ids, b, s), 0, 0)
	require.NoError(t, err)
	require.InDelta(t, wantLoss, sum/n, 1e-5*wantLoss, "loss")
	logits := st.Logits.F32() // [s, b, V]
	var worst float64
	for i := range b {
		for j := range s {
			for k := range cols {
				worst = max(worst, math.Abs(wantLogits[i][j][k]-float64(logits[(j*b+i)*v+k])))
			}
		}
	}
	t.Logf("loss %.7f (torch %.7f), max |Δlogit| %.2g", sum/n, wantLoss, worst)
	require.Less(t, worst, 1e-4)
	return m
}

// TestQwen3MatchesTorch: Qwen3 (RMSNorm on each head's queries and keys before RoPE, GQA,
// head_dim 16 ≠ hidden/heads, tied embeddings) against Qwen3's code transcribed in float64
// torch (testdata/hf_forward.py); the norms' weights are drawn away from 1 so they count.
func TestQwen3MatchesTorch(t *testing.T) {
	hftest.NeedTorch(t)
	dir := filepath.Join(t.TempDir(), "qwen3")
	require.NoError(t, hftest.Write(dir, hftest.TinyQwen3, 0.1))
	m := requireTorchForward(t, dir, torchRows, 300)
	require.True(t, m.Config.QKLayernorm)
	require.Equal(t, 16, m.Config.KVChannels)
	require.Equal(t, hf.Qwen3, m.Family)
}

// TestQwen3MoEMatchesTorch: Qwen3-MoE against its forward transcribed in float64 torch
// (testdata/hf_forward.py), and the configurations Megatron's router cannot express refused.
func TestQwen3MoEMatchesTorch(t *testing.T) {
	hftest.NeedTorch(t)
	dir := filepath.Join(t.TempDir(), "qwen3moe")
	require.NoError(t, hftest.Write(dir, hftest.TinyQwen3MoE, 0.1))
	m := requireTorchForward(t, dir, torchRows, 300)
	c := m.Config
	require.Equal(t, hf.Qwen3MoE, m.Family)
	require.True(t, c.QKLayernorm)
	require.Equal(t, []int{4, 2, 32, 16}, []int{c.NumExperts, c.MoERouterTopK, c.FFNHiddenSize, c.KVChannels})
	require.Equal(t, 0.001, c.MoEAuxLossCoeff)

	// Dense layers among the MoE ones: mlp_only_layers, or every decoder_sparse_step-th
	// layer (1-based) with experts.
	for from, want := range map[string]string{`"mlp_only_layers": [1]`: "[1, 0]", `"decoder_sparse_step": 2`: "[0, 1]"} {
		old := map[bool]string{true: `"mlp_only_layers": []`, false: `"decoder_sparse_step": 1`}[strings.Contains(from, "mlp_only")]
		m, err := writeConfig(t, strings.Replace(hftest.TinyQwen3MoE, old, from, 1))
		require.NoError(t, err)
		require.Equal(t, want, m.Config.MoELayerFreq, from)
	}
	_, err := writeConfig(t, strings.Replace(hftest.TinyQwen3MoE, `"decoder_sparse_step": 1`, `"decoder_sparse_step": 0`, 1))
	require.ErrorContains(t, err, "decoder_sparse_step 0")
	// norm_topk_prob false (transformers' default) is Megatron-Core's pre-softmax routing.
	dir = filepath.Join(t.TempDir(), "qwen3moe-pre")
	require.NoError(t, hftest.Write(dir, strings.Replace(hftest.TinyQwen3MoE, `"norm_topk_prob": true`, `"norm_topk_prob": false`, 1), 0.1))
	require.True(t, requireTorchForward(t, dir, torchRows, 300).Config.MoERouterPreSoftmax)
}

// TestQwen2MoEMatchesTorch: Qwen1.5/Qwen2-MoE (QKV biases, top-k of the softmax not
// renormalised, a gated shared expert) against its forward transcribed in float64 torch.
func TestQwen2MoEMatchesTorch(t *testing.T) {
	hftest.NeedTorch(t)
	dir := filepath.Join(t.TempDir(), "qwen2moe")
	require.NoError(t, hftest.Write(dir, hftest.TinyQwen2MoE, 0.1))
	m := requireTorchForward(t, dir, torchRows, 300)
	c := m.Config
	require.Equal(t, hf.Qwen2MoE, m.Family)
	require.True(t, c.AddQKVBias && c.MoERouterPreSoftmax && c.MoESharedExpertGate)
	require.Equal(t, []int{4, 2, 32, 64}, []int{c.NumExperts, c.MoERouterTopK, c.FFNHiddenSize, c.MoESharedExpertIntermediateSize})
	_, err := writeConfig(t, strings.Replace(hftest.TinyQwen2MoE, `"shared_expert_intermediate_size": 64`, `"shared_expert_intermediate_size": 0`, 1))
	require.ErrorContains(t, err, "shared_expert_intermediate_size 0")

	// A dense first layer (mlp_only_layers [0]) with the dense intermediate_size MLP.
	dir = filepath.Join(t.TempDir(), "qwen2moe-dense0")
	require.NoError(t, hftest.Write(dir, strings.Replace(hftest.TinyQwen2MoE, `"mlp_only_layers": []`, `"mlp_only_layers": [0]`, 1), 0.1))
	c = requireTorchForward(t, dir, torchRows, 300).Config
	require.Equal(t, "[0, 1]", c.MoELayerFreq)
	require.Equal(t, []int{96, 32}, []int{c.FFNHiddenSize, c.ExpertFFN()})
}

// TestLlama31MatchesTorch: a Llama 3.1-shaped model (rope_scaling llama3, factor 8, the
// official bands; rope_theta 500000, head_dim 32 so every band holds frequencies) against
// the float64 torch transcription over 48 positions, where the scaled frequencies turn
// visibly.
func TestLlama31MatchesTorch(t *testing.T) {
	hftest.NeedTorch(t)
	dir := filepath.Join(t.TempDir(), "llama31")
	require.NoError(t, hftest.Write(dir, `{"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 64,
		"intermediate_size": 128, "num_attention_heads": 2, "num_key_value_heads": 1, "num_hidden_layers": 2, "vocab_size": 300,
		"rms_norm_eps": 1e-05, "rope_theta": 500000.0, "max_position_embeddings": 131072, "tie_word_embeddings": false,
		"rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
		"original_max_position_embeddings": 8192}}`, 0.3))
	rows := longRows()
	m := requireTorchForward(t, dir, rows, 300)
	require.True(t, m.Config.UseRopeScaling)
	require.Equal(t, 8.0, m.Config.RopeScalingFactor)
}

// TestFalconMatchesTorch: Falcon's layer variants against FalconForCausalLM transcribed in
// float64 torch (testdata/hf_forward.py): Falcon-7B's multi-query parallel attention
// (tied head), the per-head RW layout with a post-attention layernorm and biases
// (untied head), and the new architecture's grouped QKV with ln_attn and ln_mlp (40B,
// 180B) or one layernorm (Falcon 2).
func TestFalconMatchesTorch(t *testing.T) {
	hftest.NeedTorch(t)
	for name, conf := range map[string]string{
		"7b-mqa-parallel": `{"model_type": "falcon", "architectures": ["FalconForCausalLM"], "hidden_size": 64, "num_attention_heads": 4,
			"num_hidden_layers": 2, "vocab_size": 300, "layer_norm_epsilon": 1e-5, "multi_query": true, "parallel_attn": true,
			"bias": false, "alibi": false, "new_decoder_architecture": false, "rope_theta": 10000.0}`,
		"rw-mha-sequential-bias": `{"model_type": "falcon", "architectures": ["FalconForCausalLM"], "hidden_size": 64,
			"num_attention_heads": 4, "num_hidden_layers": 2, "vocab_size": 300, "layer_norm_epsilon": 1e-5, "multi_query": false,
			"parallel_attn": false, "bias": true, "alibi": false, "new_decoder_architecture": false, "tie_word_embeddings": false}`,
		"40b-new-arch": `{"model_type": "falcon", "architectures": ["FalconForCausalLM"], "hidden_size": 64, "num_attention_heads": 4,
			"num_kv_heads": 2, "num_hidden_layers": 2, "vocab_size": 300, "layer_norm_epsilon": 1e-5, "parallel_attn": true,
			"bias": false, "alibi": false, "new_decoder_architecture": true}`,
		"falcon2-one-ln": `{"model_type": "falcon", "architectures": ["FalconForCausalLM"], "hidden_size": 64, "num_attention_heads": 4,
			"num_kv_heads": 2, "num_ln_in_parallel_attn": 1, "num_hidden_layers": 2, "vocab_size": 300, "layer_norm_epsilon": 1e-5,
			"parallel_attn": true, "bias": false, "alibi": false, "new_decoder_architecture": true, "tie_word_embeddings": false}`,
	} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "falcon")
			require.NoError(t, hftest.Write(dir, conf, 0.1))
			m := requireTorchForward(t, dir, torchRows, 300)
			require.Equal(t, hf.Falcon, m.Family)
		})
	}
}

// TestStarcoder2MatchesTorch: StarCoder 2 (LayerNorm with biases, biased GQA with RoPE and
// a sliding window, the tanh GeLU MLP, tied embeddings) against its forward transcribed in
// float64 torch, and with exact GeLU, no biases and an untied head.
func TestStarcoder2MatchesTorch(t *testing.T) {
	hftest.NeedTorch(t)
	for name, conf := range map[string]string{
		"starcoder2": hftest.TinyStarcoder2,
		"exact-gelu-no-bias-untied": strings.NewReplacer(`"gelu_pytorch_tanh"`, `"gelu"`, `"use_bias": true`, `"use_bias": false`,
			`"sliding_window": 6`, `"sliding_window": null, "tie_word_embeddings": false`).Replace(hftest.TinyStarcoder2),
	} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "sc2")
			require.NoError(t, hftest.Write(dir, conf, 0.1))
			m := requireTorchForward(t, dir, torchRows, 300)
			require.Equal(t, hf.Starcoder2, m.Family)
			c := m.Config
			require.Equal(t, name == "starcoder2", c.OpenAIGeLU && c.AddBiasLinear() && c.SlidingWindow == 6 && !c.UntieEmbeddingsAndOutputWeights)
		})
	}
}

// TestInternlm2MatchesTorch: InternLM2 (wqkv fused per KV group, its own names) against
// its forward transcribed in float64 torch; bias true is refused.
func TestInternlm2MatchesTorch(t *testing.T) {
	hftest.NeedTorch(t)
	dir := filepath.Join(t.TempDir(), "internlm2")
	require.NoError(t, hftest.Write(dir, hftest.TinyInternlm2, 0.1))
	m := requireTorchForward(t, dir, torchRows, 300)
	require.Equal(t, hf.Internlm2, m.Family)
	require.Equal(t, 2, m.Config.NumQueryGroups)
	_, err := writeConfig(t, strings.Replace(hftest.TinyInternlm2, `"bias": false`, `"bias": true`, 1))
	require.ErrorContains(t, err, "bias true")
}

// TestGLMMatchesTorch: ChatGLM3 (remote code: [q | k | v] multi-query, QKV biases) and
// transformers' GLM-4 (q/k/v biases, fused gate_up_proj), both with RoPE on half of each
// head in interleaved pairs, against their forward transcribed in float64 torch.
func TestGLMMatchesTorch(t *testing.T) {
	hftest.NeedTorch(t)
	for name, conf := range map[string]string{"chatglm": hftest.TinyChatGLM, "glm": hftest.TinyGLM} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), name)
			require.NoError(t, hftest.Write(dir, conf, 0.1))
			m := requireTorchForward(t, dir, torchRows, 300)
			require.Equal(t, hf.Family(name), m.Family)
			c := m.Config
			require.True(t, c.RotaryInterleaved && c.AddQKVBias && !c.AddBiasLinear())
			require.Equal(t, []float64{0.5, 2}, []float64{c.RotaryPercent, float64(c.NumQueryGroups)})
		})
	}
	_, err := writeConfig(t, strings.Replace(hftest.TinyChatGLM, `"original_rope": true`, `"original_rope": false`, 1))
	require.ErrorContains(t, err, "original_rope false")
}

// TestDeepseekMoEMatchesTorch: DeepSeek-MoE (a dense first layer, routed experts with the
// top k of the softmax, ungated shared experts) against its forward transcribed in float64
// torch.
func TestDeepseekMoEMatchesTorch(t *testing.T) {
	hftest.NeedTorch(t)
	dir := filepath.Join(t.TempDir(), "deepseek")
	require.NoError(t, hftest.Write(dir, hftest.TinyDeepseekMoE, 0.1))
	m := requireTorchForward(t, dir, torchRows, 300)
	c := m.Config
	require.Equal(t, hf.Deepseek, m.Family)
	require.Equal(t, "[0, 1, 1]", c.MoELayerFreq)
	require.Equal(t, []int{96, 32, 64}, []int{c.FFNHiddenSize, c.ExpertFFN(), c.MoESharedExpertIntermediateSize})
	require.True(t, c.MoERouterPreSoftmax && !c.MoESharedExpertGate)
	require.Equal(t, "seq_aux_loss", c.MoERouterLoadBalancingType, "seq_aux")
	noSeq, err := writeConfig(t, strings.Replace(hftest.TinyDeepseekMoE, `"seq_aux": true`, `"seq_aux": false`, 1))
	require.NoError(t, err)
	require.Equal(t, "aux_loss", noSeq.Config.MoERouterLoadBalancingType)
}

// TestYaRNMatchesTorch: a Qwen2.5-shaped model with rope_scaling yarn (factor 4 over 32
// original positions, so the 48 here are past them; and DeepSeek's mscale pair) against the
// float64 transcription of transformers' YaRN: --position-embedding-type yarn.
func TestYaRNMatchesTorch(t *testing.T) {
	hftest.NeedTorch(t)
	rows := longRows()
	for name, yarn := range map[string]string{
		"qwen2.5":         `{"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32}`,
		"mscale-no-round": `{"rope_type": "yarn", "factor": 8.0, "original_max_position_embeddings": 16, "mscale": 0.9, "mscale_all_dim": 0.5, "truncate": false, "beta_fast": 16}`,
	} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "yarn")
			require.NoError(t, hftest.Write(dir, `{"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], "hidden_size": 64,
				"intermediate_size": 128, "num_attention_heads": 2, "num_key_value_heads": 1, "num_hidden_layers": 2, "vocab_size": 300,
				"rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "max_position_embeddings": 128, "tie_word_embeddings": false,
				"rope_scaling": `+yarn+`}`, 0.3))
			m := requireTorchForward(t, dir, rows, 300)
			require.Equal(t, "yarn", m.Config.PositionEmbeddingType)
		})
	}
}

// TestPhi3MatchesTorch: Phi-3 (fused qkv_proj and gate_up_proj, GQA, a sliding window of 6
// keys over 10 positions) and Phi-4-mini's partial rotary factor against the float64
// transcription of Phi3ForCausalLM.
func TestPhi3MatchesTorch(t *testing.T) {
	hftest.NeedTorch(t)
	for name, extra := range map[string]string{"phi3-window": `"sliding_window": 6`, "phi4-partial-rope": `"partial_rotary_factor": 0.75, "sliding_window": null`} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "phi3")
			require.NoError(t, hftest.Write(dir, `{"model_type": "phi3", "architectures": ["Phi3ForCausalLM"], "hidden_size": 64,
				"intermediate_size": 96, "num_attention_heads": 4, "num_key_value_heads": 2, "num_hidden_layers": 2, "vocab_size": 300,
				"rms_norm_eps": 1e-05, "rope_theta": 10000.0, "max_position_embeddings": 64, "tie_word_embeddings": false, `+extra+`}`, 0.1))
			m := requireTorchForward(t, dir, torchRows, 300)
			require.Equal(t, hf.Phi3, m.Family)
		})
	}
}
