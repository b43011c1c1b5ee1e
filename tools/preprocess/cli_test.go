package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/alecthomas/kong"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/data/tokenizer"
)

func TestNormalizeArgs(t *testing.T) {
	cases := []struct{ in, want []string }{
		{[]string{"--json-keys", "text", "title", "--workers", "2"}, []string{"--json-keys=text,title", "--workers", "2"}},
		{[]string{"--jsonl-keys", "content"}, []string{"--jsonl-keys=content"}},
		{[]string{"--json-keys=a,b", "--append-eod"}, []string{"--json-keys=a,b", "--append-eod"}},
		{[]string{"--json-keys", "--append-eod"}, []string{"--json-keys", "--append-eod"}},
	}
	for _, c := range cases {
		assert.Equal(t, c.want, normalizeArgs(c.in))
	}
}

// TestTokenizerFlags checks that Megatron's and Pai's tokenizer flags reach tokenizer.Config.
func TestTokenizerFlags(t *testing.T) {
	cases := []struct {
		args []string
		want tokenizer.Config
	}{
		{[]string{"--tokenizer-type", "GPT2BPETokenizer", "--vocab-file", "v.json", "--merge-file", "m.txt"},
			tokenizer.Config{TokenizerType: "GPT2BPETokenizer", VocabFile: "v.json", MergeFile: "m.txt", TikToken: tokenizer.TikTokenConfig{NumSpecialTokens: 1000}}},
		{[]string{"--patch-tokenizer-type", "LLamaTokenizer", "--load", "/ckpt/llama"},
			tokenizer.Config{TokenizerType: "LLamaTokenizer", TokenizerModel: "/ckpt/llama", TikToken: tokenizer.TikTokenConfig{NumSpecialTokens: 1000}}},
		{[]string{"--tokenizer-type", "NullTokenizer", "--vocab-size", "512"},
			tokenizer.Config{TokenizerType: "NullTokenizer", VocabSize: 512, TikToken: tokenizer.TikTokenConfig{NumSpecialTokens: 1000}}},
		{[]string{"--tokenizer-type", "TikTokenizer", "--tokenizer-model", "r.json", "--tiktoken-pattern", "v1", "--tiktoken-num-special-tokens", "8", "--tiktoken-special-tokens", "<unk>", "<s>", "</s>"},
			tokenizer.Config{TokenizerType: "TikTokenizer", TokenizerModel: "r.json", TikToken: tokenizer.TikTokenConfig{Pattern: "v1", NumSpecialTokens: 8, SpecialTokens: []string{"<unk>", "<s>", "</s>"}}}},
	}
	for _, c := range cases {
		var cl cli
		p, err := kong.New(&cl, kong.Vars{"ncpu": "2"})
		require.NoError(t, err)
		_, err = p.Parse(normalizeArgs(append([]string{"--input", "x"}, c.args...)))
		require.NoError(t, err)
		assert.Equal(t, c.want, cl.tokenizerConfig(), "%v", c.args)
		cfg, err := cl.config()
		require.NoError(t, err)
		assert.Equal(t, tokenizer.IsPai(c.want.TokenizerType), cfg.Pai, "Pai mode for %v", c.args)
	}
}

// TestCLIPaiFastTokenizers runs Pai's preprocess_data.py command line with its Falcon,
// StarCoder and BLOOM tokenizer types on a folder holding a tokenizer.json with each
// model's pre-tokenizer chain (data/tokenizer/testdata/pretok, ids from HF tokenizers):
// every document is HF's ids without specials and then eos; the empty text is left out.
func TestCLIPaiFastTokenizers(t *testing.T) {
	for _, tc := range []struct{ typ, chain, eos string }{
		{"FalconTokenizer", "falcon", "<|endoftext|>"},
		{"StarcoderTokenizerFromHF", "starcoder", "<|endoftext|>"},
		{"BloomTokenizerFromHF", "bloom", "</s>"},
	} {
		t.Run(tc.typ, func(t *testing.T) {
			dir := t.TempDir()
			src := filepath.Join("..", "..", "data", "tokenizer", "testdata", "pretok")
			tj, err := os.ReadFile(filepath.Join(src, tc.chain+".tokenizer.json"))
			require.NoError(t, err)
			hf := filepath.Join(dir, "hf")
			require.NoError(t, os.MkdirAll(hf, 0o755))
			require.NoError(t, os.WriteFile(filepath.Join(hf, "tokenizer.json"), tj, 0o644))
			require.NoError(t, os.WriteFile(filepath.Join(hf, "tokenizer_config.json"), []byte(`{"eos_token": "`+tc.eos+`"}`), 0o644))
			tok, err := tokenizer.LoadHF(hf)
			require.NoError(t, err)
			eos, ok := tok.TokenID(tc.eos)
			require.True(t, ok)

			// The fixture's strings, with an empty text among them.
			f, err := os.Open(filepath.Join(src, tc.chain+".expected.jsonl"))
			require.NoError(t, err)
			defer f.Close()
			dec := json.NewDecoder(f)
			var texts []any
			var want [][][]int64
			for len(texts) < 60 {
				var r struct {
					Text string `json:"text"`
					IDs  []int  `json:"ids"`
				}
				require.NoError(t, dec.Decode(&r))
				if len(texts) == 5 {
					texts = append(texts, "")
				}
				texts = append(texts, r.Text)
				doc := make([]int64, 0, len(r.IDs)+1)
				for _, id := range r.IDs {
					doc = append(doc, int64(id))
				}
				want = append(want, [][]int64{append(doc, int64(eos))})
			}
			in := filepath.Join(dir, "in.jsonl")
			writeJSONL(t, in, []string{"text"}, texts)
			prefix := filepath.Join(dir, "wudao_"+tc.chain+"bpe")
			var so, se bytes.Buffer
			code := runMain([]string{"--input", in, "--language", "zh", "--output-prefix", prefix, "--dataset-impl", "mmap",
				"--patch-tokenizer-type", tc.typ, "--load", hf, "--workers", "3", "--append-eod", "--progress", "none"}, &so, &se)
			require.Equal(t, 0, code, se.String())
			assert.Contains(t, se.String(), "1 records with empty text left out")
			assert.Equal(t, want, readDocs(t, prefix+"_text_document"))
		})
	}
}

// TestCLIErrors checks that bad flags give exit status 2 and a missing input 1, with a
// message naming the flag.
func TestCLIErrors(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.jsonl")
	os.WriteFile(in, []byte(`{"text": "a"}`+"\n"), 0o644)
	cases := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"no input", []string{"--output-prefix", "x"}, 2, "--input"},
		{"split sentences", []string{"--input", in, "--output-prefix", "x", "--split-sentences"}, 2, "--split-sentences is not supported"},
		{"dataset impl", []string{"--input", in, "--output-prefix", "x", "--dataset-impl", "lazy"}, 2, "--dataset-impl lazy"},
		{"bad progress", []string{"--input", in, "--output-prefix", "x", "--progress", "fancy"}, 2, "--progress"},
		{"no output", []string{"--input", in}, 2, "--output-prefix is required"},
		{"duplicate keys", []string{"--input", in, "--output-prefix", "x", "--json-keys", "text", "text"}, 2, "keys must be distinct"},
		{"jsonl without wudao", []string{"--input", in, "--wudao-jsonl", filepath.Join(dir, "o.json")}, 2, "--wudao-jsonl needs --wudao"},
		{"wudao two keys", []string{"--input", in, "--wudao", "--wudao-jsonl", filepath.Join(dir, "o.json"), "--json-keys", "a", "b"}, 2, "--wudao writes one key"},
		{"missing input", []string{"--input", filepath.Join(dir, "nope*.jsonl"), "--wudao", "--wudao-jsonl", filepath.Join(dir, "o.json")}, 1, "no such file"},
		{"bad workers", []string{"--input", in, "--wudao", "--wudao-jsonl", filepath.Join(dir, "o.json"), "--workers", "0"}, 2, "--workers 0"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := runMain(c.args, &out, &errb)
			assert.Equal(t, c.code, code, errb.String())
			assert.Contains(t, errb.String(), c.msg)
		})
	}
}

// TestCLIWuDaoJSONL runs the command end to end for the cleaning-only mode, with --strict
// turning a skipped record into exit status 3 while the output is still written.
func TestCLIWuDaoJSONL(t *testing.T) {
	dir := t.TempDir()
	raw := filepath.Join(dir, "raw")
	os.Mkdir(raw, 0o755)
	os.WriteFile(filepath.Join(raw, "x.json"), []byte(`[{"content": "你好 https://a.cn 世界"}, {"title": "t"}]`), 0o644)
	out := filepath.Join(dir, "cleaned.json")
	var so, se bytes.Buffer
	args := []string{"--input", raw, "--wudao", "--wudao-jsonl", out, "--progress", "log", "--log-interval", "1"}
	assert.Equal(t, 0, runMain(args, &so, &se), se.String())
	b, err := os.ReadFile(out)
	assert.NoError(t, err)
	assert.Equal(t, `{"instruction": "", "input": "", "text": "你好 世界"}`+"\n", string(b))
	assert.Contains(t, se.String(), "Processed 1 documents")
	assert.Contains(t, se.String(), "x.json: element 1: no \"content\" field")
	se.Reset()
	assert.Equal(t, 3, runMain(append(args, "--strict"), &so, &se), se.String())
}

// TestProgressModes runs the bar and the log reporters to the end on a small input.
func TestProgressModes(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.jsonl")
	writeJSONL(t, in, []string{"text"}, corpusText(50, 9))
	for _, mode := range []string{"bar", "log", "none"} {
		var w bytes.Buffer
		cfg := Config{Input: in, OutputPrefix: filepath.Join(dir, mode), JSONKeys: []string{"text"}, Workers: 2, Partitions: 1, LogInterval: 20, Progress: mode}
		sum, err := Run(context.Background(), cfg, fakeTok{1000}, &w)
		assert.NoError(t, err)
		assert.EqualValues(t, 50, sum.Documents)
		switch mode {
		case "bar":
			assert.Contains(t, w.String(), "50 docs")
		case "log":
			assert.Equal(t, 3, strings.Count(w.String(), "Processed "), w.String())
			assert.Contains(t, w.String(), "Processed 40 documents")
			assert.Contains(t, w.String(), "Processed 50 documents")
		case "none":
			assert.Empty(t, w.String())
		}
	}
}
