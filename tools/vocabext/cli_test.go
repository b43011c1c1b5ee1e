package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/ckpt/safetensors"
	"github.com/gomegatron/gomegatron/tensor"
)

// TestBadInput: each bad input fails with an error naming the flag, file or key at fault,
// and nothing is written where the output folder's check failed.
func TestBadInput(t *testing.T) {
	pieces := filepath.Join(t.TempDir(), "pieces.txt")
	require.NoError(t, os.WriteFile(pieces, []byte("天气\n"), 0o644))
	garbage := filepath.Join(t.TempDir(), "bad.model")
	require.NoError(t, os.WriteFile(garbage, []byte{0x0a, 0xff, 0xff, 0xff, 0x7f, 1}, 0o644))

	tests := []struct {
		name   string
		modify func(t *testing.T, dir string) // edits the model folder
		args   func(dir, out string) []string
		want   []string
	}{
		{name: "output not empty", args: func(dir, out string) []string {
			require.NoError(t, os.MkdirAll(out, 0o755))
			require.NoError(t, os.WriteFile(filepath.Join(out, "x"), nil, 0o644))
			return []string{"--model-dir", dir, "--new-pieces", pieces, "--output-dir", out}
		}, want: []string{"--output-dir", "not empty", "--force"}},
		{name: "output is model dir", args: func(dir, out string) []string {
			return []string{"--model-dir", dir, "--new-pieces", pieces, "--output-dir", dir, "--force"}
		}, want: []string{"--output-dir", "is --model-dir"}},
		{name: "no tokenizer.model", modify: func(t *testing.T, dir string) {
			require.NoError(t, os.Remove(filepath.Join(dir, "tokenizer.model")))
		}, want: []string{"--model-dir", "tokenizer.model"}},
		{name: "vocab_size differs", modify: func(t *testing.T, dir string) {
			p := filepath.Join(dir, "config.json")
			b := mustRead(t, p)
			require.NoError(t, os.WriteFile(p, bytes.Replace(b, []byte(`"vocab_size": 2000`), []byte(`"vocab_size": 2001`), 1), 0o644))
		}, want: []string{"config.json", "vocab_size 2001", "2000 pieces"}},
		{name: "added token after the pieces", modify: func(t *testing.T, dir string) {
			require.NoError(t, os.WriteFile(filepath.Join(dir, "tokenizer_config.json"),
				[]byte(`{"added_tokens_decoder": {"2000": {"content": "[PAD]"}}}`), 0o644))
		}, want: []string{"tokenizer_config.json", `"[PAD]"`, "id 2000"}},
		{name: "not llama", modify: func(t *testing.T, dir string) {
			require.NoError(t, os.WriteFile(filepath.Join(dir, "config.json"),
				[]byte(`{"model_type": "gpt2", "vocab_size": 2000, "n_embd": 64, "n_head": 4, "n_layer": 2, "n_positions": 128}`), 0o644))
		}, want: []string{"--model-dir"}},
		{name: "no lm_head", modify: func(t *testing.T, dir string) {
			set, err := safetensors.OpenDir(dir)
			require.NoError(t, err)
			var ts []safetensors.Named
			for _, n := range set.Names() {
				if n != lmHeadName {
					x, err := set.Tensor(n)
					require.NoError(t, err)
					ts = append(ts, safetensors.Named{Name: n, T: x.Clone()})
				}
			}
			set.Close()
			require.NoError(t, safetensors.Write(filepath.Join(dir, safetensors.SingleFile), ts, nil))
		}, want: []string{"lm_head.weight", "tie_word_embeddings"}},
		{name: "missing pieces file", args: func(dir, out string) []string {
			return []string{"--model-dir", dir, "--new-pieces", filepath.Join(dir, "nope.txt"), "--output-dir", out}
		}, want: []string{"--new-pieces", "nope.txt"}},
		{name: "pieces model corrupt", args: func(dir, out string) []string {
			return []string{"--model-dir", dir, "--new-pieces", garbage, "--output-dir", out}
		}, want: []string{"--new-pieces", "bad.model", "not a SentencePiece model"}},
		{name: "bad init", args: func(dir, out string) []string {
			return []string{"--model-dir", dir, "--new-pieces", pieces, "--output-dir", out, "--init", "zeros"}
		}, want: []string{"--init"}},
		{name: "negative padding", args: func(dir, out string) []string {
			return []string{"--model-dir", dir, "--new-pieces", pieces, "--output-dir", out, "--pad-to-multiple-of", "-8"}
		}, want: []string{"--pad-to-multiple-of"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := makeHFDir(t, fixtureOpts{dtype: tensor.F32})
			if tc.modify != nil {
				tc.modify(t, dir)
			}
			out := filepath.Join(t.TempDir(), "out")
			args := []string{"--model-dir", dir, "--new-pieces", pieces, "--output-dir", out}
			if tc.args != nil {
				args = tc.args(dir, out)
			}
			var stdout, stderr bytes.Buffer
			err := run(args, &stdout, &stderr)
			require.Error(t, err)
			for _, w := range tc.want {
				assert.Contains(t, err.Error(), w)
			}
			assert.NoFileExists(t, filepath.Join(out, "config.json"), "no complete-looking output")
		})
	}
}

// TestForce: --force writes into a non-empty folder and removes a stale tokenizer.json,
// index and shards, which would otherwise win over what is written.
func TestForce(t *testing.T) {
	dir := makeHFDir(t, fixtureOpts{dtype: tensor.F32})
	pieces := filepath.Join(t.TempDir(), "pieces.txt")
	require.NoError(t, os.WriteFile(pieces, []byte("天气\n"), 0o644))
	out := t.TempDir()
	for _, stale := range []string{"tokenizer.json", safetensors.IndexFile, "model-00001-of-00002.safetensors"} {
		require.NoError(t, os.WriteFile(filepath.Join(out, stale), []byte("{}"), 0o644))
	}
	var stdout bytes.Buffer
	require.NoError(t, run([]string{"--model-dir", dir, "--new-pieces", pieces, "--output-dir", out, "--force"}, &stdout, &stdout))
	assert.NoFileExists(t, filepath.Join(out, "tokenizer.json"))
	assert.NoFileExists(t, filepath.Join(out, safetensors.IndexFile))
	assert.NoFileExists(t, filepath.Join(out, "model-00001-of-00002.safetensors"))
	assert.FileExists(t, filepath.Join(out, safetensors.SingleFile))
	assert.Contains(t, stdout.String(), "1 new pieces added")
	assert.Contains(t, stdout.String(), "not copied: tokenizer.json")
}

// TestShardedIndex: the index of a sharded output maps every tensor to a written shard
// and its total_size is the sum of the tensors' bytes (as save_pretrained computes it).
func TestShardedIndex(t *testing.T) {
	_, out, _ := runCase(t, extendCases[1])
	var idx struct {
		Metadata  map[string]int64  `json:"metadata"`
		WeightMap map[string]string `json:"weight_map"`
	}
	require.NoError(t, json.Unmarshal(mustRead(t, filepath.Join(out, safetensors.IndexFile)), &idx))
	set, err := safetensors.OpenDir(out)
	require.NoError(t, err)
	defer set.Close()
	var total int64
	for _, n := range set.Names() {
		info, ok := set.Info(n)
		require.True(t, ok)
		total += info.End - info.Begin
		assert.FileExists(t, filepath.Join(out, idx.WeightMap[n]))
	}
	assert.Len(t, idx.WeightMap, len(set.Names()))
	assert.Equal(t, total, idx.Metadata["total_size"])
}

func TestSetTopLevelInt(t *testing.T) {
	tests := []struct {
		in, want, err string
	}{
		{in: `{"a": {"vocab_size": 1}, "vocab_size": 32000, "b": [1]}`, want: `{"a": {"vocab_size": 1}, "vocab_size": 49953, "b": [1]}`},
		{in: "{\n  \"vocab_size\":32000\n}\n", want: "{\n  \"vocab_size\":49953\n}\n"},
		{in: `{"a": 1}`, err: `no top-level "vocab_size"`},
		{in: `{"vocab_size": "x"}`, err: "want an integer"},
		{in: `[1]`, err: "not a JSON object"},
	}
	for _, tc := range tests {
		got, err := setTopLevelInt([]byte(tc.in), "vocab_size", 49953)
		if tc.err != "" {
			require.Error(t, err, tc.in)
			assert.Contains(t, err.Error(), tc.err)
			continue
		}
		require.NoError(t, err)
		assert.Equal(t, tc.want, string(got))
	}
}

func TestHelp(t *testing.T) {
	var stdout bytes.Buffer
	require.NoError(t, run([]string{"--help"}, &stdout, &stdout))
	for _, f := range []string{"--model-dir", "--new-pieces", "--output-dir", "--init", "--pad-to-multiple-of", "--seed", "--force", "--progress"} {
		assert.True(t, strings.Contains(stdout.String(), f), f)
	}
}
