package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/ckpt/hf"
	"github.com/gomegatron/gomegatron/ckpt/megatron"
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
	requireSameTensors(t, orig, hfTensors(t, back))
	m, err := hf.ReadConfig(back)
	require.NoError(t, err)
	want, err := hf.ReadConfig(src)
	require.NoError(t, err)
	require.Equal(t, hf.Baichuan, m.Family)
	require.Equal(t, want.Config, m.Config)
	conf, err := readJSONMap(filepath.Join(back, "config.json"))
	require.NoError(t, err)
	require.Equal(t, []any{"BaichuanForCausalLM"}, conf["architectures"])
	require.NotNil(t, conf["auto_map"])
	require.FileExists(t, filepath.Join(back, "modeling_baichuan.py"), "the remote code is copied")
}
