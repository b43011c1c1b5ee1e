package main

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/data/tokenizer"
	"github.com/gomegatron/gomegatron/generate"
	"github.com/gomegatron/gomegatron/kernels/cpu"
	"github.com/gomegatron/gomegatron/layers"
)

// byteLevelTokenizer is a GPT-2-style byte-level BPE without merges: bytes 0–254 are ids
// 0–254 (GPT-2's bytes_to_unicode spelling) and <|endoftext|> is id 255, the eos, so it
// fits the fixtures' vocabulary of 256.
func byteLevelTokenizer() (tokJSON, cfgJSON []byte) {
	var bs []int
	for b := '!'; b <= '~'; b++ {
		bs = append(bs, int(b))
	}
	for b := '¡'; b <= '¬'; b++ {
		bs = append(bs, int(b))
	}
	for b := '®'; b <= 'ÿ'; b++ {
		bs = append(bs, int(b))
	}
	in := map[int]bool{}
	for _, b := range bs {
		in[b] = true
	}
	cs := map[int]rune{}
	for _, b := range bs {
		cs[b] = rune(b)
	}
	n := 0
	for b := 0; b < 256; b++ {
		if !in[b] {
			cs[b] = rune(256 + n)
			n++
		}
	}
	vocab := map[string]int{}
	for b := 0; b < 255; b++ {
		vocab[string(cs[b])] = b
	}
	bl := map[string]any{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}
	tok := map[string]any{
		"version": "1.0",
		"added_tokens": []any{map[string]any{"id": 255, "content": "<|endoftext|>", "single_word": false,
			"lstrip": false, "rstrip": false, "normalized": false, "special": true}},
		"normalizer": nil, "pre_tokenizer": bl, "post_processor": nil, "decoder": bl,
		"model": map[string]any{"type": "BPE", "vocab": vocab, "merges": []string{}},
	}
	a, _ := json.Marshal(tok)
	b, _ := json.Marshal(map[string]any{"eos_token": "<|endoftext|>", "bos_token": "<|endoftext|>"})
	return a, b
}

// hfDirWithTokenizer is a Hugging Face directory: the llama-gqa fixture's weights plus the
// byte-level tokenizer.
func hfDirWithTokenizer(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{"config.json", "model.safetensors"} {
		src, err := filepath.Abs(filepath.Join("..", "..", "testdata", "hf", "llama-gqa", f))
		require.NoError(t, err)
		require.NoError(t, os.Symlink(src, filepath.Join(dir, f)))
	}
	tj, cj := byteLevelTokenizer()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "tokenizer.json"), tj, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "tokenizer_config.json"), cj, 0o644))
	return dir
}

var queries = []string{
	"Hello, world",
	"The quick brown fox jumps over the lazy dog and keeps running far away",
	"a<|endoftext|>b",
}

func writeQueries(t *testing.T, path string, qs []string) {
	t.Helper()
	var buf bytes.Buffer
	for _, q := range qs {
		b, err := json.Marshal(map[string]string{"query": q, "other": "ignored"})
		require.NoError(t, err)
		buf.Write(b)
		buf.WriteByte('\n')
	}
	require.NoError(t, os.WriteFile(path, buf.Bytes(), 0o644))
}

// paiFlags are the flags run_text_generation_megatron_llama.sh passes (model shape of the
// llama-gqa fixture), in its order.
func paiFlags(load, in, out string, topK int, topP float64) []string {
	return []string{"--micro-batch-size", "2", "--num-layers", "2", "--hidden-size", "64",
		"--num-attention-heads", "4", "--ffn-hidden-size", "172", "--seq-length", "40",
		"--max-position-embeddings", "128", "--tensor-model-parallel-size", "1",
		"--pipeline-model-parallel-size", "1", "--no-load-optim", "--no-load-rng",
		"--top-p", strconv.FormatFloat(topP, 'g', -1, 64), "--temperature", "1.0",
		"--top-k", jsonNum(float64(topK)), "--input-len", "1", "--out-seq-length", "6",
		"--extra-vocab-size", "0", "--max-padding-length", "80", "--use-distributed-optimizer",
		"--swiglu", "--use-llama2-rotary-position-embeddings", "--position-embedding-type", "rope",
		"--untie-embeddings-and-output-weights", "--patch-tokenizer-type", "LLamaTokenizer",
		"--normalization", "RMSNorm", "--repetition-penalty", "1.2", "--disable-bias-linear",
		"--load", load, "--text-generate-output-file", out, "--text-generate-input-file", in,
		"--bf16", "--group-query-attention", "--num-query-groups", "2"}
}

func jsonNum(v float64) string { b, _ := json.Marshal(v); return string(b) }

// expected runs the library on the same prompts: the command's output must be exactly
// this (prompt cut to --seq-length 40 characters, batches of 2, one sampler stream).
func expected(t *testing.T, dir string, qs []string, o generate.Options, seed uint64) []string {
	t.Helper()
	tok, err := tokenizer.Build(tokenizer.Config{TokenizerType: "LLamaTokenizer", TokenizerModel: dir})
	require.NoError(t, err)
	m, _, err := generate.Load(cpu.New(), dir, layers.Parallel{})
	require.NoError(t, err)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	var lines []string
	for lo := 0; lo < len(qs); lo += 2 {
		var ids [][]int64
		for _, q := range qs[lo:min(lo+2, len(qs))] {
			if r := []rune(q); len(r) > 40 {
				q = string(r[:40])
			}
			var row []int64
			for _, id := range tok.Encode(q) {
				row = append(row, int64(id))
			}
			ids = append(ids, row)
		}
		out, err := generate.Generate(m, ids, o, rng)
		require.NoError(t, err)
		for _, row := range out {
			ints := make([]int, len(row))
			for i, id := range row {
				ints[i] = int(id)
			}
			lines = append(lines, strings.ReplaceAll(tok.Decode(ints), "<|endoftext|>", ""))
		}
	}
	return lines
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	require.True(t, strings.HasSuffix(string(b), "\n"))
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

// TestGenerateFilesRoundTrip runs `golaunch generate` in-process with the Pai script's
// flags on a jsonl input file and checks the output file: one line per query, the query
// (cut to --seq-length characters) followed by the generation, '<|endoftext|>' removed,
// and exactly the library's result, greedy and with top-k sampling.
func TestGenerateFilesRoundTrip(t *testing.T) {
	dir := hfDirWithTokenizer(t)
	in := filepath.Join(t.TempDir(), "in.jsonl")
	writeQueries(t, in, queries)
	for _, tc := range []struct {
		topK int
		topP float64
	}{{1, 0}, {5, 0}, {0, 0.8}} {
		out := filepath.Join(t.TempDir(), "out.txt")
		var stdout bytes.Buffer
		require.NoError(t, runGenerate(paiFlags(dir, in, out, tc.topK, tc.topP), &stdout))
		got := readLines(t, out)
		require.Len(t, got, len(queries))
		o := generate.Options{Sampling: generate.Sampling{TopK: tc.topK, TopP: tc.topP, Temperature: 1},
			RepetitionPenalty: 1.2, OutSeqLength: 6, EOS: 255, Pad: 255, Vocab: 256, MaxPositions: 128}
		require.Equal(t, expected(t, dir, queries, o, 1234), got, "top-k %d top-p %v", tc.topK, tc.topP)
		for i, q := range queries {
			q = strings.ReplaceAll(q, "<|endoftext|>", "")
			if len(q) > 40 {
				q = q[:40]
			}
			require.True(t, strings.HasPrefix(got[i], q), "line %d %q starts with its query %q", i, got[i], q)
			require.Greater(t, len(got[i]), len(q), "line %d has a generation", i)
			require.NotContains(t, got[i], "<|endoftext|>")
		}
		require.Contains(t, stdout.String(), "3 prompts")
	}
}

// TestGeneratePromptsToStdout checks --prompt with a NullTokenizer: one line of ids per
// prompt on stdout, greedy equal to the library's.
func TestGeneratePromptsToStdout(t *testing.T) {
	load := filepath.Join("..", "..", "testdata", "hf", "gpt2")
	var stdout bytes.Buffer
	require.NoError(t, runGenerate([]string{"--load", load, "--tokenizer-type", "NullTokenizer", "--vocab-size", "255",
		"--prompt", "1 2 3", "--prompt", "200 7", "--greedy", "--out-seq-length", "4", "--repetition-penalty", "1"}, &stdout))
	m, _, err := generate.Load(cpu.New(), load, layers.Parallel{})
	require.NoError(t, err)
	want, err := generate.Generate(m, [][]int64{{1, 2, 3}}, generate.Options{Sampling: generate.Sampling{TopK: 1}, RepetitionPenalty: 1, OutSeqLength: 4, EOS: 255, Pad: 255}, nil)
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	require.Len(t, lines, 2)
	var ids []string
	for _, id := range want[0] {
		ids = append(ids, jsonNum(float64(id)))
	}
	require.Equal(t, strings.Join(ids, " "), lines[0])
	require.True(t, strings.HasPrefix(lines[1], "200 7 "), lines[1])
}

// TestGenerateTensorParallelLaunch runs the command under golaunch with 2 processes and
// --tensor-model-parallel-size 2: the output file equals the single-process one.
func TestGenerateTensorParallelLaunch(t *testing.T) {
	dir := hfDirWithTokenizer(t)
	tmp := t.TempDir()
	in := filepath.Join(tmp, "in.jsonl")
	writeQueries(t, in, queries)
	for _, k := range []int{1, 5} {
		one, two := filepath.Join(tmp, "one.txt"), filepath.Join(tmp, "two.txt")
		require.NoError(t, runGenerate(paiFlags(dir, in, one, k, 0), &bytes.Buffer{}))
		args := append([]string{"--standalone", "--nproc-per-node", "2", "generate"}, paiFlags(dir, in, two, k, 0)...)
		for i, a := range args {
			if a == "--tensor-model-parallel-size" {
				args[i+1] = "2"
			}
		}
		cmd := exec.Command(golaunchBin, args...)
		cmd.Env = append(cleanEnv(nil), "GOLAUNCH_GRACE_PERIOD=2")
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s", out)
		require.Equal(t, readLines(t, one), readLines(t, two), "top-k %d", k)
	}
}

// TestGenerateBadInput checks that bad flags and files fail with an error naming them.
func TestGenerateBadInput(t *testing.T) {
	dir := hfDirWithTokenizer(t)
	tmp := t.TempDir()
	in := filepath.Join(tmp, "in.jsonl")
	writeQueries(t, in, queries)
	out := filepath.Join(tmp, "out.txt")
	bad := filepath.Join(tmp, "bad.jsonl")
	require.NoError(t, os.WriteFile(bad, []byte("{\"query\": \"ok\"}\n{not json}\n"), 0o644))
	noq := filepath.Join(tmp, "noq.jsonl")
	require.NoError(t, os.WriteFile(noq, []byte("{\"prompt\": \"x\"}\n"), 0o644))
	set := func(args []string, kv ...string) []string {
		args = append([]string(nil), args...)
		for i := 0; i < len(kv); i += 2 {
			found := false
			for j, a := range args {
				if a == kv[i] {
					args[j+1], found = kv[i+1], true
				}
			}
			if !found {
				args = append(args, kv[i], kv[i+1])
			}
		}
		return args
	}
	base := paiFlags(dir, in, out, 1, 0)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{set(base, "--text-generate-input-file", filepath.Join(tmp, "missing.jsonl")), "missing.jsonl"},
		{set(base, "--text-generate-input-file", bad), "bad.jsonl:2"},
		{set(base, "--text-generate-input-file", noq), "noq.jsonl:1: no \"query\""},
		{set(base, "--max-position-embeddings", "20"), "more than --max-position-embeddings 20"},
		{set(base, "--hidden-size", "4096"), "--hidden-size 4096 does not match"},
		{set(base, "--num-query-groups", "4"), "--num-query-groups 4 does not match"},
		{set(base, "--tensor-model-parallel-size", "2"), "--tensor-model-parallel-size 2, but 1 processes"},
		{set(base, "--pipeline-model-parallel-size", "2"), "--pipeline-model-parallel-size 2"},
		{set(base, "--top-k", "5", "--top-p", "0.5"), "one of them must be 0"},
		{set(base, "--load", tmp), "neither a Megatron checkpoint"},
		{set(base, "--text-generate-output-file", filepath.Join(tmp, "no", "such", "dir", "o.txt")), "--text-generate-output-file"},
		{set(base, "--max-tokens-to-oom", "10"), "--max-tokens-to-oom 10"},
		{append(append([]string(nil), base...), "--use-alibi-mask", "--no-query-key-layer-scaling"), "the flags ask for alibi position embeddings, but " + dir + " was trained with rope"},
		{[]string{"--load", dir, "--patch-tokenizer-type", "LLamaTokenizer"}, "no prompts"},
		{[]string{"--load", dir, "--patch-tokenizer-type", "LLamaTokenizer", "--text-generate-input-file", in}, "needs --text-generate-output-file"},
		{[]string{"--load", dir, "--prompt", "x"}, "--tokenizer-type"},
	} {
		err := runGenerate(tc.args, &bytes.Buffer{})
		require.ErrorContains(t, err, tc.want, "%v", tc.args)
	}
}

// TestGenerateMegatronAndFlagModels checks the two other model sources: a real Megatron
// checkpoint saved at TP = 2 (--load, greedy equal to the library's, also launched with
// 2 processes), and no --load (a model built from the flags, as the script's
// CHECKPOINT_PATH none).
func TestGenerateMegatronAndFlagModels(t *testing.T) {
	ckpt := filepath.Join("..", "..", "generate", "testdata", "megatron", "legacy_tp2")
	tmp := t.TempDir()
	in := filepath.Join(tmp, "in.jsonl")
	writeQueries(t, in, []string{"5 17 42", "99 3 8 60 1", "7"})
	flags := []string{"--load", ckpt, "--tokenizer-type", "NullTokenizer", "--vocab-size", "99",
		"--text-generate-input-file", in, "--micro-batch-size", "2", "--greedy", "--out-seq-length", "5",
		"--repetition-penalty", "1", "--num-layers", "2", "--hidden-size", "64"}
	one := filepath.Join(tmp, "one.txt")
	require.NoError(t, runGenerate(append(flags, "--text-generate-output-file", one), &bytes.Buffer{}))
	m, _, err := generate.Load(cpu.New(), ckpt, layers.Parallel{})
	require.NoError(t, err)
	o := generate.Options{Sampling: generate.Sampling{TopK: 1}, RepetitionPenalty: 1, OutSeqLength: 5, EOS: 99, Pad: 99}
	var want []string
	for _, batch := range [][][]int64{{{5, 17, 42}, {99, 3, 8, 60, 1}}, {{7}}} {
		out, err := generate.Generate(m, batch, o, nil)
		require.NoError(t, err)
		for _, row := range out {
			var ids []string
			for _, id := range row {
				ids = append(ids, strconv.Itoa(int(id)))
			}
			want = append(want, strings.Join(ids, " "))
		}
	}
	require.Equal(t, want, readLines(t, one))

	two := filepath.Join(tmp, "two.txt")
	args := append([]string{"--standalone", "--nproc-per-node", "2", "generate", "--tensor-model-parallel-size", "2"}, flags...)
	cmd := exec.Command(golaunchBin, append(args, "--text-generate-output-file", two)...)
	cmd.Env = append(cleanEnv(nil), "GOLAUNCH_GRACE_PERIOD=2")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Equal(t, want, readLines(t, two))

	var stdout bytes.Buffer
	require.NoError(t, runGenerate([]string{"--tokenizer-type", "NullTokenizer", "--vocab-size", "99",
		"--num-layers", "2", "--hidden-size", "32", "--num-attention-heads", "4", "--seq-length", "64",
		"--max-position-embeddings", "64", "--swiglu", "--normalization", "RMSNorm",
		"--use-llama2-rotary-position-embeddings", "--disable-bias-linear", "--untie-embeddings-and-output-weights",
		"--prompt", "1 2 3", "--top-k", "3", "--out-seq-length", "4"}, &stdout))
	fields := strings.Fields(stdout.String())
	require.GreaterOrEqual(t, len(fields), 4, stdout.String())
	require.LessOrEqual(t, len(fields), 7, stdout.String())
	require.Equal(t, []string{"1", "2", "3"}, fields[:3])
}
