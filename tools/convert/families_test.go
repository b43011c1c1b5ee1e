package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/ckpt/hf"
	"github.com/gomegatron/gomegatron/ckpt/hf/hftest"
	"github.com/gomegatron/gomegatron/ckpt/megatron"
	"github.com/gomegatron/gomegatron/ckpt/torchpickle"
	"github.com/gomegatron/gomegatron/kernels/cpu"
)

// syntheticHF writes a random-weight Hugging Face folder for config.json text: every
// tensor the family's mapping reads, with the shapes Hugging Face uses, N(0, 1) values.
func syntheticHF(t *testing.T, dir, config string) { syntheticHFScaled(t, dir, config, 1) }

// syntheticHFScaled is syntheticHF with N(0, std²) matrices and norm weights 1 + N(0, std²)
// when std < 1: the scale of a trained model, whose forward pass stays well conditioned.
func syntheticHFScaled(t *testing.T, dir, config string, std float64) {
	t.Helper()
	require.NoError(t, hftest.Write(dir, config, std))
}

// TestOtherFamiliesRoundTrip covers the families without transformers fixtures — Qwen2
// (QKV bias, tied), Mistral (sliding window), Falcon-7B style (multi-query, parallel
// attention, rotary, LayerNorm), Falcon-40B and Falcon 2 (grouped QKV, two or one
// layernorms), StarCoder 2 (LayerNorm, biased GQA with RoPE, GeLU MLP) and StarCoder (gpt_bigcode multi-query) — with synthetic
// weights: HF → Megatron (TP × PP, legacy and mcore) → HF must be bit-identical with the
// same architecture.
func TestOtherFamiliesRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name, config, tp, pp string
	}{
		{"qwen2", `{"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], "hidden_size": 64, "intermediate_size": 96,
			"num_attention_heads": 4, "num_key_value_heads": 2, "num_hidden_layers": 2, "vocab_size": 200,
			"max_position_embeddings": 128, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "tie_word_embeddings": true,
			"hidden_act": "silu", "use_sliding_window": false, "sliding_window": 4096}`, "2", "2"},
		{"mistral", `{"model_type": "mistral", "architectures": ["MistralForCausalLM"], "hidden_size": 64, "intermediate_size": 96,
			"num_attention_heads": 4, "num_key_value_heads": 2, "num_hidden_layers": 2, "vocab_size": 200,
			"max_position_embeddings": 128, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": false,
			"hidden_act": "silu", "sliding_window": 16}`, "2", "2"},
		{"falcon", `{"model_type": "falcon", "architectures": ["FalconForCausalLM"], "hidden_size": 64, "num_attention_heads": 4,
			"num_hidden_layers": 2, "vocab_size": 200, "layer_norm_epsilon": 1e-5, "multi_query": true, "parallel_attn": true,
			"bias": false, "alibi": false, "new_decoder_architecture": false}`, "1", "2"},
		{"falcon-40b", `{"model_type": "falcon", "architectures": ["FalconForCausalLM"], "hidden_size": 64, "num_attention_heads": 4,
			"num_kv_heads": 2, "num_hidden_layers": 2, "vocab_size": 200, "layer_norm_epsilon": 1e-5, "parallel_attn": true,
			"bias": false, "alibi": false, "new_decoder_architecture": true}`, "2", "2"},
		{"falcon2", `{"model_type": "falcon", "architectures": ["FalconForCausalLM"], "hidden_size": 64, "num_attention_heads": 4,
			"num_kv_heads": 2, "num_ln_in_parallel_attn": 1, "num_hidden_layers": 2, "vocab_size": 200, "layer_norm_epsilon": 1e-5,
			"parallel_attn": true, "bias": false, "alibi": false, "new_decoder_architecture": true}`, "2", "1"},
		{"phi3", `{"model_type": "phi3", "architectures": ["Phi3ForCausalLM"], "hidden_size": 64, "intermediate_size": 96,
			"num_attention_heads": 4, "num_key_value_heads": 2, "num_hidden_layers": 2, "vocab_size": 200, "rms_norm_eps": 1e-05,
			"rope_theta": 10000.0, "max_position_embeddings": 64, "tie_word_embeddings": false, "sliding_window": 6,
			"partial_rotary_factor": 0.75}`, "2", "2"},
		{"chatglm", strings.Replace(hftest.TinyChatGLM, `"padded_vocab_size": 300`, `"padded_vocab_size": 200`, 1), "2", "2"},
		{"starcoder2", strings.Replace(hftest.TinyStarcoder2, `"vocab_size": 300`, `"vocab_size": 200`, 1), "2", "2"},
		{"starcoder2-no-bias-untied", `{"model_type": "starcoder2", "architectures": ["Starcoder2ForCausalLM"], "hidden_size": 48,
			"intermediate_size": 96, "num_attention_heads": 4, "num_key_value_heads": 4, "num_hidden_layers": 2, "vocab_size": 200,
			"norm_epsilon": 1e-05, "rope_theta": 10000.0, "max_position_embeddings": 64, "hidden_act": "gelu", "use_bias": false,
			"sliding_window": 4, "tie_word_embeddings": false}`, "2", "1"},
		{"gpt_bigcode", `{"model_type": "gpt_bigcode", "architectures": ["GPTBigCodeForCausalLM"], "n_embd": 64, "n_head": 4,
			"n_layer": 2, "n_positions": 128, "vocab_size": 200, "layer_norm_epsilon": 1e-5,
			"activation_function": "gelu_pytorch_tanh", "multi_query": true}`, "1", "2"},
	} {
		for _, format := range []string{"mcore", "legacy"} {
			t.Run(tc.name+"/"+format, func(t *testing.T) {
				tmp := t.TempDir()
				src, meg, back := filepath.Join(tmp, "hf"), filepath.Join(tmp, "meg"), filepath.Join(tmp, "back")
				syntheticHF(t, src, tc.config)
				convertOK(t, "--load_path", src, "--save_path", meg, "--megatron-format", format,
					"--target_tensor_model_parallel_size", tc.tp, "--target_pipeline_model_parallel_size", tc.pp)
				c, _ := megatronFull(t, meg)
				require.Equal(t, 256, c.Config.PaddedVocabSize, "vocabulary padded to 128·TP")
				convertOK(t, "--load_path", meg, "--save_path", back, "--convert_checkpoint_from_megatron_to_transformers")
				requireSameTensors(t, hfTensors(t, src), hfTensors(t, back))
				want, err := hf.ReadConfig(src)
				require.NoError(t, err)
				got, err := hf.ReadConfig(back)
				require.NoError(t, err)
				require.Equal(t, want.Family, got.Family)
				require.Equal(t, want.Config, got.Config)
				require.Equal(t, string(want.Family), inferFamily(&want.Config), "family inferred from the architecture")
			})
		}
	}
}

// TestFixtureToHF converts the real Megatron checkpoints (no hf_model_type in their args)
// to Hugging Face: the family is inferred (llama), the padding rows dropped, every tensor
// equal to the checkpoint's joined shards, and hf.Load accepts the folder.
func TestFixtureToHF(t *testing.T) {
	root, trackers := fixtureDir(t)
	for _, name := range []string{"legacy_tp2", "mcore_tp1"} {
		t.Run(name, func(t *testing.T) {
			src := fixturePath(root, name, trackers)
			out := filepath.Join(t.TempDir(), "hf")
			convertOK(t, "--load_path", src, "--save_path", out, "--convert_checkpoint_from_megatron_to_transformers")
			c, full := megatronFull(t, src)
			m, err := hf.ReadConfig(out)
			require.NoError(t, err)
			require.Equal(t, hf.Llama, m.Family)
			require.Equal(t, 100, m.Config.VocabSize)
			got := hfTensors(t, out)
			h := c.Config.HiddenSize
			emb := full["embedding.word_embeddings.weight"]
			require.Equal(t, emb.Data[:100*h*emb.DType().Size()], got["model.embed_tokens.weight"].Data)
			require.Equal(t, c.DType, got["model.embed_tokens.weight"].DType())
			fc1 := full["decoder.layers.1.mlp.linear_fc1.weight"]
			gate, up := got["model.layers.1.mlp.gate_proj.weight"], got["model.layers.1.mlp.up_proj.weight"]
			require.Equal(t, fc1.Data, append(append([]byte(nil), gate.Data...), up.Data...), "fc1 = [gate; up]")
			_, _, err = hf.Load(cpu.New(), out)
			require.NoError(t, err)
		})
	}
}

// TestPaiLegacyCheckpoint rewrites a converted checkpoint into what Pai's v1 convertor
// writes — SimpleNamespace args with only its few fields, model_rng.pt, the older
// input_layernorm/post_attention_layernorm/final_layernorm names, extra lm_head and
// word_embeddings_for_head copies, no iteration — and converts it back to Hugging Face
// with --model_name: the Llama architecture is assumed, the FFN width and query groups
// come from the shapes, and the tensors are bit-identical to the original.
func TestPaiLegacyCheckpoint(t *testing.T) {
	src := filepath.Join(hfFixtures, "llama-gqa")
	tmp := t.TempDir()
	meg := filepath.Join(tmp, "meg")
	convertOK(t, "--load_path", src, "--save_path", meg, "--megatron-format", "legacy", "--target_tensor_model_parallel_size", "2",
		"--make_vocab_size_divisible_by", "1")
	for tp := 0; tp < 2; tp++ {
		dir := filepath.Join(meg, "release", megatron.ShardDirName(tp, 0, 1))
		v, err := torchpickle.Load(filepath.Join(dir, megatron.ModelFile))
		require.NoError(t, err)
		d := v.(*torchpickle.Dict)
		a, _ := d.Get("args")
		old := a.(*torchpickle.Namespace)
		ns := &torchpickle.Namespace{Class: torchpickle.Global{Module: "types", Name: "SimpleNamespace"}, Attrs: torchpickle.NewDict(false)}
		for _, k := range []string{"orig_vocab_size", "hidden_size", "num_layers", "num_attention_heads", "tensor_model_parallel_size",
			"pipeline_model_parallel_size", "data_parallel_size", "make_vocab_size_divisible_by", "rank", "params_dtype", "padded_vocab_size"} {
			x, ok := old.Get(k)
			require.True(t, ok, k)
			ns.Set(k, x)
		}
		ns.Set("tokenizer_type", "GPT2BPETokenizer")
		m, _ := d.Get("model")
		lm, _ := m.(*torchpickle.Dict).Get("language_model")
		encV, _ := lm.(*torchpickle.Dict).Get("encoder")
		enc := encV.(*torchpickle.Dict)
		renamed := torchpickle.NewDict(true)
		for i, k := range enc.Keys {
			ks := k.(string)
			for _, r := range [][2]string{{"input_norm", "input_layernorm"}, {"post_attention_norm", "post_attention_layernorm"}, {"final_norm", "final_layernorm"}} {
				ks = strings.Replace(ks, r[0], r[1], 1)
			}
			renamed.Set(ks, enc.Values[i])
		}
		lm.(*torchpickle.Dict).Set("encoder", renamed)
		outW, _ := lm.(*torchpickle.Dict).Get("output_layer")
		w, _ := outW.(*torchpickle.Dict).Get("weight")
		head := torchpickle.NewDict(false)
		head.Set("weight", w)
		m.(*torchpickle.Dict).Set("lm_head", head)
		m.(*torchpickle.Dict).Set("word_embeddings_for_head", head)
		pai := torchpickle.NewDict(false)
		pai.Set("model", m)
		pai.Set("checkpoint_version", 3.0)
		pai.Set("args", ns)
		require.NoError(t, torchpickle.Save(filepath.Join(dir, "model_rng.pt"), pai))
		require.NoError(t, os.Remove(filepath.Join(dir, megatron.ModelFile)))
	}
	back := filepath.Join(tmp, "hf")
	var o, e bytes.Buffer
	err := run([]string{"--load_path", filepath.Join(meg, "release"), "--save_path", back, "--convert_checkpoint_from_megatron_to_transformers", "--progress", "none"}, &o, &e)
	require.ErrorContains(t, err, "--model_name")
	convertOK(t, "--load_path", filepath.Join(meg, "release"), "--save_path", back, "--convert_checkpoint_from_megatron_to_transformers",
		"--model_name", "llama2-7b")
	requireSameTensors(t, hfTensors(t, src), hfTensors(t, back))
	want, err := hf.ReadConfig(src)
	require.NoError(t, err)
	got, err := hf.ReadConfig(back)
	require.NoError(t, err)
	require.Equal(t, want.Config, got.Config)
}

// TestPytorchBinInput converts a Hugging Face folder stored as sharded pytorch_model*.bin
// files (torch.save'd OrderedDicts, as older save_pretrained wrote) and requires the same
// tensors back as safetensors.
func TestPytorchBinInput(t *testing.T) {
	src := filepath.Join(hfFixtures, "llama-mha")
	orig := hfTensors(t, src)
	dir := filepath.Join(t.TempDir(), "bin")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	b, err := os.ReadFile(filepath.Join(src, "config.json"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "config.json"), b, 0o644))
	names := make([]string, 0, len(orig))
	for n := range orig {
		names = append(names, n)
	}
	sort.Strings(names)
	parts := [2]*torchpickle.Dict{torchpickle.NewDict(true), torchpickle.NewDict(true)}
	for i, n := range names {
		parts[i%2].Set(n, orig[n])
	}
	for i, p := range parts {
		require.NoError(t, torchpickle.Save(filepath.Join(dir, fmt.Sprintf("pytorch_model-%05d-of-00002.bin", i+1)), p))
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, "pytorch_model.bin.index.json"), []byte(`{"metadata": {}, "weight_map": {}}`), 0o644))
	meg, back := filepath.Join(t.TempDir(), "meg"), filepath.Join(t.TempDir(), "hf")
	convertOK(t, "--load_path", dir, "--save_path", meg, "--target_tensor_model_parallel_size", "2", "--target_pipeline_model_parallel_size", "2")
	convertOK(t, "--load_path", meg, "--save_path", back, "--convert_checkpoint_from_megatron_to_transformers")
	requireSameTensors(t, orig, hfTensors(t, back))
}
