package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/data/tokenizer"
)

// largeFile returns a file under testdata/large (filled by `make testdata`) or skips.
func largeFile(t *testing.T, rel string) string {
	p := filepath.Join("..", "..", "testdata", "large", rel)
	if _, err := os.Stat(p); err != nil {
		t.Skipf("%s missing: run `make testdata`", p)
	}
	return p
}

// needPython skips unless /usr/bin/python3 can import the modules.
func needPython(t *testing.T, modules ...string) string {
	py := "/usr/bin/python3"
	for _, m := range modules {
		if err := exec.Command(py, "-c", "import "+m).Run(); err != nil {
			t.Skipf("needs %s with %s (apt-get install python3-%s)", py, m, m)
		}
	}
	return py
}

// TestLlama2MatchesPythonPeer runs the command with Megatron's Llama2Tokenizer on a mixed
// Chinese/English corpus and compares its .bin/.idx byte for byte with the benchmark's
// Python peer (python3-sentencepiece on the real Llama-2 tokenizer.model, Megatron's
// Pool.imap pipeline and builder layout), for --workers 1 and 3.
func TestLlama2MatchesPythonPeer(t *testing.T) {
	model := largeFile(t, "tokenizers/sentencepiece/llama2_tokenizer.model")
	py := needPython(t, "sentencepiece", "numpy")
	dir := t.TempDir()
	corpus := filepath.Join(dir, "corpus.jsonl")
	run := func(args ...string) {
		cmd := exec.Command(py, args...)
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, string(out))
	}
	run("../../scripts/bench/preprocess_corpus.py", "../../data/wudao/testdata/corpus.jsonl", corpus, "0.4")
	peer := filepath.Join(dir, "peer")
	run("../../scripts/bench/preprocess_peer.py", corpus, model, peer, "2")
	for _, workers := range []string{"1", "3"} {
		out := filepath.Join(dir, "go"+workers)
		var so, se bytes.Buffer
		code := runMain([]string{"--input", corpus, "--output-prefix", out, "--tokenizer-type", "Llama2Tokenizer",
			"--tokenizer-model", model, "--append-eod", "--workers", workers, "--progress", "none"}, &so, &se)
		require.Equal(t, 0, code, se.String())
		assert.Equal(t, fileHash(t, peer+"_text_document.idx"), fileHash(t, out+"_text_document.idx"), "idx, workers %s", workers)
		assert.Equal(t, fileHash(t, peer+"_text_document.bin"), fileHash(t, out+"_text_document.bin"), "bin, workers %s", workers)
	}
}

// TestQwenMatchesFixture preprocesses the fixture strings with the Qwen3 tokenizer.json
// (--tokenizer-type HuggingFaceTokenizer, whose Megatron tokenize is tokenizer(text) with
// special tokens) and checks every document against the reference ids plus eod.
func TestQwenMatchesFixture(t *testing.T) {
	tj := largeFile(t, "tokenizers/qwen3/tokenizer.json")
	f, err := os.Open("testdata/qwen3.expected.jsonl")
	require.NoError(t, err)
	defer f.Close()
	type exp struct {
		Text string `json:"text"`
		IDs  []int  `json:"ids_with_special"`
	}
	var exps []exp
	var in bytes.Buffer
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<22)
	for sc.Scan() {
		var e exp
		require.NoError(t, json.Unmarshal(sc.Bytes(), &e))
		exps = append(exps, e)
		b, _ := json.Marshal(map[string]string{"text": e.Text})
		in.Write(b)
		in.WriteByte('\n')
	}
	require.NoError(t, sc.Err())
	dir := t.TempDir()
	corpus := filepath.Join(dir, "c.jsonl")
	require.NoError(t, os.WriteFile(corpus, in.Bytes(), 0o644))
	// a Hugging Face folder: the large tokenizer.json and the small tokenizer_config.json
	hf := filepath.Join(dir, "qwen3")
	require.NoError(t, os.Mkdir(hf, 0o755))
	abs, err := filepath.Abs(tj)
	require.NoError(t, err)
	require.NoError(t, os.Symlink(abs, filepath.Join(hf, "tokenizer.json")))
	cfg, err := os.ReadFile("testdata/qwen3_tokenizer_config.json")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(hf, "tokenizer_config.json"), cfg, 0o644))
	tok, err := tokenizer.Build(tokenizer.Config{TokenizerType: "HuggingFaceTokenizer", TokenizerModel: hf})
	require.NoError(t, err)
	out := filepath.Join(dir, "q")
	var so, se bytes.Buffer
	code := runMain([]string{"--input", corpus, "--output-prefix", out, "--tokenizer-type", "HuggingFaceTokenizer",
		"--tokenizer-model", hf, "--append-eod", "--workers", "2", "--progress", "none"}, &so, &se)
	require.Equal(t, 0, code, se.String())
	docs := readDocs(t, out+"_text_document")
	require.Len(t, docs, len(exps))
	for i, e := range exps {
		var want [][]int64
		if len(e.IDs) > 0 {
			var seq []int64
			for _, id := range e.IDs {
				seq = append(seq, int64(id))
			}
			want = append(want, append(seq, int64(tok.EOD())))
		}
		assert.Equal(t, normDocs([][][]int64{want}), normDocs([][][]int64{docs[i]}), "document %d %q", i, e.Text)
	}
	require.GreaterOrEqual(t, tok.EOD(), 0)
	assert.GreaterOrEqual(t, tok.VocabSize(), 65500, "Qwen's vocab needs int32 tokens")
}

// BenchmarkLlama2 is the end-to-end run (read, JSON, Llama2Tokenizer, write) on a 5 MB mixed
// corpus with 1 and 2 workers; scripts/bench/preprocess.sh measures it beside the Python peer.
func BenchmarkLlama2(b *testing.B) {
	model := filepath.Join("..", "..", "testdata", "large", "tokenizers", "sentencepiece", "llama2_tokenizer.model")
	if _, err := os.Stat(model); err != nil {
		b.Skipf("%s missing: run `make testdata`", model)
	}
	dir := b.TempDir()
	corpus := filepath.Join(dir, "corpus.jsonl")
	if out, err := exec.Command("/usr/bin/python3", "../../scripts/bench/preprocess_corpus.py", "../../data/wudao/testdata/corpus.jsonl", corpus, "5").CombinedOutput(); err != nil {
		b.Skipf("corpus generation needs /usr/bin/python3: %v %s", err, out)
	}
	st, _ := os.Stat(corpus)
	tok, err := tokenizer.Build(tokenizer.Config{TokenizerType: "Llama2Tokenizer", TokenizerModel: model})
	require.NoError(b, err)
	for _, w := range []int{1, 2} {
		b.Run(fmt.Sprintf("workers=%d", w), func(b *testing.B) {
			b.SetBytes(st.Size())
			for i := 0; i < b.N; i++ {
				_, err := Run(context.Background(), Config{Input: corpus, OutputPrefix: filepath.Join(dir, "o"), JSONKeys: []string{"text"},
					AppendEOD: true, Workers: w, Partitions: 1, LogInterval: 1000, Progress: "none"}, tok, io.Discard)
				require.NoError(b, err)
			}
		})
	}
}

// pyPaiLlama is Pai's preprocess_data.py path for --patch-tokenizer-type LLamaTokenizer with
// the slow tokenizer's ids emulated by python3-sentencepiece: lm_dataformat's text (lists
// joined with "\n\n"), empty texts filtered out, tokenizer(text, add_special_tokens=False)
// = sp.encode(text), then eos (--append-eod).
const pyPaiLlama = `
import json, sys
import sentencepiece as spm
sp = spm.SentencePieceProcessor(model_file=sys.argv[2])
docs = []
for line in open(sys.argv[1], encoding='utf-8'):
    text = json.loads(line)['text']
    if isinstance(text, list):
        text = '\n\n'.join(text)
    if not text:
        continue
    docs.append([sp.encode(text) + [sp.eos_id()]])
print(json.dumps(docs))
`

// TestPaiLLamaTokenizer runs the command as Pai's run_make_pretraining_dataset.sh calls
// preprocess_data.py (--patch-tokenizer-type LLamaTokenizer --load DIR) and compares the
// documents with Pai's encoding done by python3-sentencepiece on the real Llama-2 model.
func TestPaiLLamaTokenizer(t *testing.T) {
	model := largeFile(t, "tokenizers/sentencepiece/llama2_tokenizer.model")
	py := needPython(t, "sentencepiece")
	dir := t.TempDir()
	load := filepath.Join(dir, "Llama-2-7b-hf")
	require.NoError(t, os.Mkdir(load, 0o755))
	abs, err := filepath.Abs(model)
	require.NoError(t, err)
	require.NoError(t, os.Symlink(abs, filepath.Join(load, "tokenizer.model")))
	in := filepath.Join(dir, "cleaned.jsonl")
	writeJSONL(t, in, []string{"text"}, append(corpusText(200, 12), "", []string{"第一段", "second paragraph"}))
	out := filepath.Join(dir, "wudao_llamabpe")
	var so, se bytes.Buffer
	code := runMain([]string{"--input", in, "--language", "zh", "--output-prefix", out, "--dataset-impl", "mmap",
		"--patch-tokenizer-type", "LLamaTokenizer", "--load", load, "--workers", "2", "--append-eod", "--progress", "none"}, &so, &se)
	require.Equal(t, 0, code, se.String())
	assert.Contains(t, se.String(), "left out, as Pai's preprocess_data.py does")
	cmd := exec.Command(py, "-c", pyPaiLlama, in, model)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	res, err := cmd.Output()
	require.NoError(t, err, stderr.String())
	var want [][][]int64
	require.NoError(t, json.Unmarshal(res, &want))
	assert.Equal(t, normDocs(want), normDocs(readDocs(t, out+"_text_document")))
}

// TestWuDaoLLamaMatchesPythonPeer runs --wudao with Pai's LLamaTokenizer on a raw WuDao folder
// and compares the .bin/.idx byte for byte with Pai's two-step pipeline done in CPython
// (scripts/bench/preprocess_peer_wudao.py: preprocess_wudao2.py's cleaning, then
// preprocess_data.py's encoding with python3-sentencepiece on the real Llama-2 model).
func TestWuDaoLLamaMatchesPythonPeer(t *testing.T) {
	model := largeFile(t, "tokenizers/sentencepiece/llama2_tokenizer.model")
	py := needPython(t, "sentencepiece", "numpy")
	dir := t.TempDir()
	raw := filepath.Join(dir, "raw")
	out, err := exec.Command(py, "../../scripts/bench/preprocess_corpus.py", "../../data/wudao/testdata/corpus.jsonl",
		filepath.Join(dir, "c.jsonl"), "0.3", raw).CombinedOutput()
	require.NoError(t, err, string(out))
	// a record whose content cleans to nothing, which Pai leaves out
	extra := `[{"id": 0, "title": "t", "content": "😀 https://x.cn/a"}, {"id": 1, "title": "t", "content": "最后一篇。"}]`
	require.NoError(t, os.WriteFile(filepath.Join(raw, "zz.json"), []byte(extra), 0o644))
	load := filepath.Join(dir, "load")
	require.NoError(t, os.Mkdir(load, 0o755))
	abs, err := filepath.Abs(model)
	require.NoError(t, err)
	require.NoError(t, os.Symlink(abs, filepath.Join(load, "tokenizer.model")))
	peer := filepath.Join(dir, "peer")
	out, err = exec.Command(py, "../../scripts/bench/preprocess_peer_wudao.py", raw, model, peer, "2").CombinedOutput()
	require.NoError(t, err, string(out))
	prefix := filepath.Join(dir, "wudao_llamabpe")
	var so, se bytes.Buffer
	code := runMain([]string{"--wudao", "--input", raw, "--output-prefix", prefix, "--patch-tokenizer-type", "LLamaTokenizer",
		"--load", load, "--append-eod", "--workers", "3", "--progress", "none"}, &so, &se)
	require.Equal(t, 0, code, se.String())
	assert.Contains(t, se.String(), "1 records with empty text left out")
	assert.Equal(t, fileHash(t, peer+"_text_document.idx"), fileHash(t, prefix+"_text_document.idx"))
	assert.Equal(t, fileHash(t, peer+"_text_document.bin"), fileHash(t, prefix+"_text_document.bin"))
}
