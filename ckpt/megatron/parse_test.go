package megatron

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/ckpt/torchpickle"
	"github.com/gomegatron/gomegatron/tensor"
)

// TestLegacyAliases reads older legacy spellings (input_layernorm, post_attention_layernorm,
// final_layernorm, the "transformer" encoder key, pre-2021 "attention.") and Pai's extra
// copies (lm_head, word_embeddings_for_head beside an untied output layer) into our names.
func TestLegacyAliases(t *testing.T) {
	w := tensor.New(tensor.F32, 2)
	enc := torchpickle.NewDict(true)
	for _, k := range []string{"layers.0.input_layernorm.weight", "layers.0.attention.query_key_value.weight",
		"layers.0.attention.dense.weight", "layers.0.post_attention_layernorm.weight", "layers.0.mlp.dense_h_to_4h.weight",
		"layers.0.mlp.dense_4h_to_h.weight", "final_layernorm.weight", "layers.0.self_attention.rotary_emb.inv_freq"} {
		enc.Set(k, w)
	}
	model := torchpickle.NewDict(true)
	setPath(model, []string{"language_model", "embedding", "word_embeddings", "weight"}, w)
	setPath(model, []string{"language_model", "transformer"}, enc)
	setPath(model, []string{"language_model", "output_layer", "weight"}, w)
	setPath(model, []string{"lm_head", "weight"}, w)
	setPath(model, []string{"word_embeddings_for_head", "weight"}, w)
	ts, f, err := ModelTensors(model)
	require.NoError(t, err)
	require.Equal(t, Legacy, f)
	var names []string
	for n := range ts {
		if !ignoredPai(n) {
			names = append(names, n)
		}
	}
	require.ElementsMatch(t, []string{"embedding.word_embeddings.weight", "decoder.layers.0.input_layernorm.weight",
		"decoder.layers.0.self_attention.linear_qkv.weight", "decoder.layers.0.self_attention.linear_proj.weight",
		"decoder.layers.0.pre_mlp_layernorm.weight", "decoder.layers.0.mlp.linear_fc1.weight", "decoder.layers.0.mlp.linear_fc2.weight",
		"decoder.final_layernorm.weight", "output_layer.weight"}, names)
}

// TestQKVOrderByCheckpointVersion stores a legacy MHA checkpoint's query_key_value rows in
// the checkpoint_version 0 ([3, np, hn]) and 1.0 ([np, hn, 3]) orders and requires Full
// to return the ≥ 2.0 order [np, 3, hn] the model uses.
func TestQKVOrderByCheckpointVersion(t *testing.T) {
	cfg := testConfig(false)
	cfg.GroupQueryAttention, cfg.NumQueryGroups = false, 4
	for _, version := range []float64{0, 1} {
		loc := Location{Root: t.TempDir(), Iteration: 1}
		full := saveTestCheckpoint(t, loc, cfg, 2, 1, Legacy)
		want := full["decoder.layers.0.self_attention.linear_qkv.weight"]
		cfg2 := cfg
		cfg2.TensorModelParallelSize = 2
		require.NoError(t, cfg2.Finalize())
		hn, cols := cfg2.KVChannels, cfg2.HiddenSize
		for r := 0; r < 2; r++ {
			path := loc.ShardFile(r, 0, 1, ModelFile)
			v, err := torchpickle.Load(path)
			require.NoError(t, err)
			d := v.(*torchpickle.Dict)
			d.Set("checkpoint_version", version)
			m, _ := d.Get("model")
			enc := walkDict(t, m, "language_model", "encoder")
			for _, l := range []string{"0", "1", "2", "3"} {
				key := "layers." + l + ".self_attention.query_key_value.weight"
				x, _ := enc.Get(key)
				src := x.(*tensor.Tensor).ToF32()
				np := len(src) / (3 * hn * cols)
				old := make([]float32, len(src))
				for h := 0; h < np; h++ {
					for s := 0; s < 3; s++ {
						for c := 0; c < hn; c++ {
							in := h*3*hn + s*hn + c // ≥ 2.0 row
							out := h*hn*3 + c*3 + s // version 1.0 row
							if version == 0 {
								out = s*np*hn + h*hn + c
							}
							copy(old[out*cols:(out+1)*cols], src[in*cols:(in+1)*cols])
						}
					}
				}
				enc.Set(key, tensor.FromF32Values(tensor.BF16, old, x.(*tensor.Tensor).Shape()...))
			}
			require.NoError(t, torchpickle.Save(path, d))
		}
		c, err := Open(loc.Root)
		require.NoError(t, err)
		got, _, err := c.Full("decoder.layers.0.self_attention.linear_qkv.weight")
		require.NoError(t, err)
		require.Equal(t, want, got, "checkpoint_version %v", version)
		c.Close()
	}
}

func walkDict(t *testing.T, v any, keys ...string) *torchpickle.Dict {
	for _, k := range keys {
		d, ok := v.(*torchpickle.Dict)
		require.True(t, ok)
		v, ok = d.Get(k)
		require.True(t, ok, k)
	}
	return v.(*torchpickle.Dict)
}
