package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/ckpt/safetensors"
	"github.com/gomegatron/gomegatron/tensor"
)

// tinyConfig is testdata/hf/llama-mha/config.json (repository root) with the vocabulary of
// testdata/sp_bpe2k.model (2000 pieces).
const tinyConfig = `{
  "architectures": [
    "LlamaForCausalLM"
  ],
  "attention_bias": false,
  "bos_token_id": 1,
  "eos_token_id": 2,
  "hidden_act": "silu",
  "hidden_size": 64,
  "initializer_range": 0.02,
  "intermediate_size": 172,
  "max_position_embeddings": 128,
  "model_type": "llama",
  "num_attention_heads": 4,
  "num_hidden_layers": 2,
  "num_key_value_heads": 4,
  "pretraining_tp": 1,
  "rms_norm_eps": 1e-05,
  "rope_scaling": null,
  "rope_theta": 10000.0,
  "tie_word_embeddings": %s,
  "torch_dtype": "float32",
  "transformers_version": "4.35.0.dev0",
  "use_cache": true,
  "vocab_size": %d
}
`

const tinyTokenizerConfig = `{"add_bos_token": true, "add_eos_token": false, "bos_token": "<s>", "eos_token": "</s>", "legacy": false, "tokenizer_class": "LlamaTokenizer", "unk_token": "<unk>"}
`

type fixtureOpts struct {
	dtype   tensor.DType // of every weight
	tied    bool         // tie_word_embeddings: no lm_head.weight
	sharded bool         // several shards and model.safetensors.index.json
	spModel string       // tokenizer.model to use (default testdata/sp_bpe2k.model)
	vocab   int          // its number of pieces (default 2000)
}

// makeHFDir writes a tiny Llama (the llama-mha shapes, vocab 2000) with random weights,
// sp_bpe2k.model (or o.spModel) as tokenizer.model, a tokenizer_config.json, a special_tokens_map.json
// and a placeholder tokenizer.json.
func makeHFDir(t *testing.T, o fixtureOpts) string {
	t.Helper()
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(7, 11))
	if o.spModel == "" {
		o.spModel, o.vocab = filepath.Join("testdata", "sp_bpe2k.model"), 2000
	}
	v := o.vocab
	const h, f, layers = 64, 172, 2
	mk := func(shape ...int) *tensor.Tensor {
		n := 1
		for _, d := range shape {
			n *= d
		}
		vals := make([]float32, n)
		for i := range vals {
			vals[i] = float32(rng.NormFloat64() * 0.05)
		}
		return tensor.FromF32Values(o.dtype, vals, shape...)
	}
	ts := []safetensors.Named{{Name: embedName, T: mk(v, h)}}
	for l := 0; l < layers; l++ {
		p := fmt.Sprintf("model.layers.%d.", l)
		for _, nt := range []struct {
			n     string
			shape []int
		}{
			{"input_layernorm.weight", []int{h}}, {"post_attention_layernorm.weight", []int{h}},
			{"self_attn.q_proj.weight", []int{h, h}}, {"self_attn.k_proj.weight", []int{h, h}},
			{"self_attn.v_proj.weight", []int{h, h}}, {"self_attn.o_proj.weight", []int{h, h}},
			{"mlp.gate_proj.weight", []int{f, h}}, {"mlp.up_proj.weight", []int{f, h}}, {"mlp.down_proj.weight", []int{h, f}},
		} {
			ts = append(ts, safetensors.Named{Name: p + nt.n, T: mk(nt.shape...)})
		}
	}
	ts = append(ts, safetensors.Named{Name: "model.norm.weight", T: mk(h)})
	if !o.tied {
		ts = append(ts, safetensors.Named{Name: lmHeadName, T: mk(v, h)})
	}
	meta := map[string]string{"format": "pt"}
	if o.sharded {
		require.NoError(t, safetensors.WriteSharded(dir, ts, 200_000, meta))
	} else {
		require.NoError(t, safetensors.Write(filepath.Join(dir, safetensors.SingleFile), ts, meta))
	}
	tied := "false"
	if o.tied {
		tied = "true"
	}
	write := func(name, content string) {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644))
	}
	write("config.json", fmt.Sprintf(tinyConfig, tied, v))
	write("tokenizer_config.json", tinyTokenizerConfig)
	write("special_tokens_map.json", `{"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}`+"\n")
	write("tokenizer.json", `{"version": "1.0", "added_tokens": [{"id": 0, "content": "<unk>"}], "model": {"type": "BPE"}}`+"\n")
	sp, err := os.ReadFile(o.spModel)
	require.NoError(t, err)
	write("tokenizer.model", string(sp))
	return dir
}

// corpusCase is one line of testdata/sp-bpe2k.expected.jsonl: a text and the ids
// python3-sentencepiece 0.1.97 gives it with sp_bpe2k.model.
type corpusCase struct {
	Text   string   `json:"text"`
	IDs    []int    `json:"ids"`
	Tokens []string `json:"tokens"`
}

func loadCorpus(t *testing.T, path string) []corpusCase {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var out []corpusCase
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var c corpusCase
		require.NoError(t, json.Unmarshal([]byte(line), &c))
		out = append(out, c)
	}
	return out
}
