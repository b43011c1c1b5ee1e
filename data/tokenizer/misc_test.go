package tokenizer

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

// python runs /usr/bin/python3 with a script reading JSON from stdin and writing JSON
// to stdout, or skips when it is not installed.
func python(t *testing.T, script string, in, out any, args ...string) {
	t.Helper()
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		t.Skip("/usr/bin/python3 is not installed")
	}
	data, err := json.Marshal(in)
	require.NoError(t, err)
	cmd := exec.Command("/usr/bin/python3", append([]string{"-c", script}, args...)...)
	cmd.Stdin = bytes.NewReader(data)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	res, err := cmd.Output()
	require.NoError(t, err, stderr.String())
	require.NoError(t, json.Unmarshal(res, out))
}

// TestNFCAgainstPython compares nfc with Python's unicodedata.normalize("NFC") (the
// Unicode version the tables were generated from) on the corpus and on random strings of
// starters, combining marks, Hangul jamo, singletons and composition exclusions.
func TestNFCAgainstPython(t *testing.T) {
	alphabet := []rune{'a', 'e', 'o', 'u', 'A', 'O', 'S', 'ṩ', 'é', 'Å', 'ǖ', 'x', '中',
		0x300, 0x301, 0x303, 0x308, 0x323, 0x327, 0x338, 0x344, 0x345, 0x5B0, 0x5B4, 0xF71, 0xF72, 0x0F73,
		0x1100, 0x1112, 0x1161, 0x1175, 0x11A8, 0x11C2, 0xAC00, 0xAC01, 0xD7A3,
		0x212B, 0x2126, 0x0958, 0x0915, 0x093C, 0xF900, 0x1E0A, 0x1D15E, 0x1D165, 0x1D16E, 0x2ADC, 0x0CCA, 0x0CC6, 0x0CC2, 0x0CD5}
	rng := rand.New(rand.NewPCG(3, 4))
	var in []string
	for range 2000 {
		rs := make([]rune, rng.IntN(10))
		for i := range rs {
			rs[i] = alphabet[rng.IntN(len(alphabet))]
		}
		in = append(in, string(rs))
	}
	for _, r := range readExpected(t, "corpus.jsonl") {
		in = append(in, r.Text)
	}
	var want []string
	python(t, `import json,sys,unicodedata; print(json.dumps([unicodedata.normalize("NFC", s) for s in json.load(sys.stdin)]))`, in, &want)
	require.Len(t, want, len(in))
	for i, s := range in {
		require.Equal(t, want[i], nfc(s), "NFC(%+q)", s)
	}
}

// TestLossyUTF8AgainstPython compares lossyUTF8 with Python's bytes.decode("utf-8",
// "replace"), which like Rust's from_utf8_lossy replaces each maximal ill-formed subpart
// with one U+FFFD.
func TestLossyUTF8AgainstPython(t *testing.T) {
	pieces := [][]byte{{'a'}, {0xC3}, {0xA9}, {0xE4, 0xB8}, {0xAD}, {0xF0, 0x9F}, {0x98, 0x80}, {0xF0}, {0xED, 0xA0, 0x80},
		{0xE0, 0x80}, {0xC0, 0xAF}, {0xF4, 0x90}, {0xFF}, {0x80}, {0xEF, 0xBF, 0xBD}, {0xF1, 0x80, 0x80}}
	rng := rand.New(rand.NewPCG(5, 6))
	var in []string
	for range 2000 {
		var b []byte
		for range rng.IntN(8) {
			b = append(b, pieces[rng.IntN(len(pieces))]...)
		}
		in = append(in, base64.StdEncoding.EncodeToString(b))
	}
	var want []string
	python(t, `import json,sys,base64; print(json.dumps([base64.b64decode(s).decode("utf-8","replace") for s in json.load(sys.stdin)]))`, in, &want)
	for i, s := range in {
		b, _ := base64.StdEncoding.DecodeString(s)
		require.Equal(t, want[i], lossyUTF8(b), "bytes % x", b)
	}
}

// TestBadInput: malformed files give errors naming the problem, never panics.
func TestBadInput(t *testing.T) {
	model, err := os.ReadFile("testdata/sp_unigram2k.model")
	require.NoError(t, err)
	for n := 0; n < len(model); n += 997 {
		_, _ = ParseSentencePiece(model[:n]) // must not panic
	}
	_, err = ParseSentencePiece([]byte("not a model"))
	require.Error(t, err)
	_, err = ParseSentencePiece(nil)
	require.ErrorContains(t, err, "no pieces")

	for _, tc := range []struct{ json, msg string }{
		{`{`, "parse tokenizer.json"},
		{`{"model":{"type":"WordPiece","vocab":{}}}`, `model.type "WordPiece"`},
		{`{"model":{"type":"BPE","vocab":{"a":0},"merges":["a b"]}}`, "model.merges[0]"},
		{`{"model":{"type":"BPE","vocab":{"a":0},"merges":[]},"normalizer":{"type":"NFKD"}}`, `normalizer type "NFKD"`},
		{`{"model":{"type":"BPE","vocab":{"a":0},"merges":[]},"pre_tokenizer":{"type":"Whatever"}}`, `pre_tokenizer type "Whatever"`},
		{`{"model":{"type":"BPE","vocab":{"a":0},"merges":[],"unk_token":"<unk>"}}`, "unk_token"},
	} {
		_, err := ParseHF([]byte(tc.json))
		require.ErrorContains(t, err, tc.msg, tc.json)
	}
	_, err = newCharsMap([]byte{0xFF, 0xFF, 0, 0, 1, 2})
	require.ErrorContains(t, err, "precompiled_charsmap")

	dir := t.TempDir()
	bad := filepath.Join(dir, "tokenizer.json")
	require.NoError(t, os.WriteFile(bad, []byte(`{"model":{"type":"BPE","vocab":{"a":0},"merges":[]}}`), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "tokenizer_config.json"), []byte(`{"eos_token":"</s>"}`), 0o644))
	_, err = LoadHF(dir)
	require.ErrorContains(t, err, `eos_token "</s>" is not in the vocab`)
}

// TestBuild checks every --tokenizer-type against the fixtures it can load.
func TestBuild(t *testing.T) {
	_, err := Build(Config{TokenizerType: "BertWordPieceLowerCase"})
	require.ErrorContains(t, err, `--tokenizer-type "BertWordPieceLowerCase"`)
	_, err = Build(Config{})
	require.ErrorContains(t, err, "--tokenizer-type is not set")
	_, err = Build(Config{TokenizerType: "Llama2Tokenizer"})
	require.ErrorContains(t, err, "--tokenizer-model")
	_, err = Build(Config{TokenizerType: "Llama2Tokenizer", TokenizerModel: "testdata/nope.model"})
	require.ErrorContains(t, err, "nope.model")

	null, err := Build(Config{TokenizerType: "NullTokenizer", VocabSize: 100})
	require.NoError(t, err)
	require.Equal(t, []int{5, 17, 99}, null.Encode("5 17 99"))
	require.Equal(t, "5 17 99", null.Decode([]int{5, 17, 99}))
	require.Equal(t, 101, null.VocabSize())
	require.Equal(t, 100, null.EOD())

	rows := readExpected(t, "sp-bpe2k.expected.jsonl")
	for _, typ := range []string{"GPTSentencePieceTokenizer", "Llama2Tokenizer", "SentencePieceTokenizer"} {
		tok, err := Build(Config{TokenizerType: typ, TokenizerModel: "testdata/sp_bpe2k.model"})
		require.NoError(t, err, typ)
		require.Equal(t, 1, tok.BOS())
		require.Equal(t, 2, tok.EOS())
		for _, r := range rows {
			want := r.IDs
			if typ == "Llama2Tokenizer" {
				want = r.IDsWithSpecial
			}
			if typ == "SentencePieceTokenizer" && strings.Contains(r.Text, "<") {
				continue // may hold Megatron's special tokens, see TestMegatronSentencePiece
			}
			require.Equal(t, want, tok.Encode(r.Text), "%s idx %d", typ, r.Idx)
			require.Equal(t, r.IDs, EncodeNoSpecial(tok, r.Text), "%s idx %d", typ, r.Idx)
		}
		switch typ {
		case "SentencePieceTokenizer":
			require.Equal(t, 2000+5, tok.VocabSize(), "<CLS> <SEP> <EOD> <MASK> <PAD> appended (the model has no pad piece)")
		default:
			require.Equal(t, 2000, tok.VocabSize())
			require.Equal(t, 2, tok.EOD())
			require.Equal(t, -1, tok.Pad())
		}
	}

	hf, err := Build(Config{TokenizerType: "HuggingFaceTokenizer", TokenizerModel: largeFile(t, "tokenizers/llama2/tokenizer.json")})
	require.NoError(t, err)
	r := readExpected(t, "llama2.expected.jsonl")[0]
	require.Equal(t, r.IDsWithSpecial, hf.Encode(r.Text), "HuggingFaceTokenizer encodes with add_special_tokens=True")
	require.Equal(t, r.IDs, EncodeNoSpecial(hf, r.Text))
	require.Equal(t, 32000, hf.VocabSize())
}

// TestMegatronSentencePiece checks _SentencePieceTokenizer's special tokens: appended
// after the model's pieces in Megatron's order, found in the text, written back with
// spaces around them.
func TestMegatronSentencePiece(t *testing.T) {
	sp, err := LoadSentencePiece("testdata/sp_bpe2k.model")
	require.NoError(t, err)
	tok := NewMegatronSentencePiece(sp, 2)
	// <CLS>=2000 <SEP>=2001 <EOD>=2002 <MASK>=2003 <PAD>=2004 (no pad piece), <s>=1, </s>=2,
	// <extra_id_0>=2005, <extra_id_1>=2006.
	require.Equal(t, 2007, tok.VocabSize())
	require.Equal(t, 2002, tok.EOD())
	require.Equal(t, 2004, tok.Pad())
	require.Equal(t, 1, tok.BOS())
	require.Equal(t, 2, tok.EOS())
	got := tok.Encode("Hello<EOD>world<s><extra_id_1>")
	want := append(append(append(sp.Encode("Hello"), 2002), sp.Encode("world")...), 1, 2006)
	require.Equal(t, want, got)
	require.Equal(t, "Hello <EOD> world <s>  <extra_id_1> ", tok.Decode(got))
}

// TestPaiLLamaTokenizer: Pai-Megatron-Patch's LLamaTokenizer on a Llama-2-style HF
// directory: pad is the id Pai's added "[PAD]" gets (32000), the vocab size stays the
// model's, eod = eos, and Encode adds BOS as tokenizer(text) does.
func TestPaiLLamaTokenizer(t *testing.T) {
	src := largeFile(t, "tokenizers/llama2/tokenizer.json")
	dir := t.TempDir()
	data, err := os.ReadFile(src)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "tokenizer.json"), data, 0o644))
	cfg, err := os.ReadFile("testdata/llama2.tokenizer_config.json")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "tokenizer_config.json"), cfg, 0o644))
	tok, err := Build(Config{TokenizerType: "LLamaTokenizer", TokenizerModel: dir})
	require.NoError(t, err)
	require.Equal(t, 32000, tok.Pad())
	require.Equal(t, 32000, tok.VocabSize())
	require.Equal(t, 1, tok.BOS())
	require.Equal(t, 2, tok.EOS())
	require.Equal(t, 2, tok.EOD())
	r := readExpected(t, "llama2.expected.jsonl")[0]
	require.Equal(t, r.IDsWithSpecial, tok.Encode(r.Text))
	require.Equal(t, r.IDs, EncodeNoSpecial(tok, r.Text))

	// Pai's MistralTokenizer (a Llama-style SentencePiece vocabulary like this one): pad 0.
	mis, err := Build(Config{TokenizerType: "MistralTokenizer", TokenizerModel: dir})
	require.NoError(t, err)
	require.Equal(t, 0, mis.Pad())
	require.Equal(t, 2, mis.EOD())
	require.Equal(t, 32000, PaiVocabSize(mis))
	require.True(t, IsPai("MistralTokenizer") && IsPai("LLamaTokenizer") && !IsPai("HuggingFaceTokenizer"))
}

// TestPaiLLama3Tokenizer: Pai-Megatron-Patch's LLama3Tokenizer (and its LLamaTokenizer) on
// Llama-3's HF directory: Pai's vocabulary is the model's 128000 ids without the 256 added
// specials (its scripts pass --extra-vocab-size 256 for them), eod = eos; LLama3Tokenizer
// keeps the tokenizer's lack of a pad, LLamaTokenizer pads with the next free id.
func TestPaiLLama3Tokenizer(t *testing.T) {
	src := largeFile(t, "tokenizers/llama3/tokenizer.json")
	dir := t.TempDir()
	data, err := os.ReadFile(src)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "tokenizer.json"), data, 0o644))
	cfg, err := os.ReadFile("testdata/llama3.tokenizer_config.json")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "tokenizer_config.json"), cfg, 0o644))
	hf, err := Build(Config{TokenizerType: "HuggingFaceTokenizer", TokenizerModel: dir})
	require.NoError(t, err)
	require.Equal(t, 128256, hf.VocabSize(), "Megatron's HuggingFaceTokenizer counts the added tokens")
	tok, err := Build(Config{TokenizerType: "LLama3Tokenizer", TokenizerModel: dir})
	require.NoError(t, err)
	require.Equal(t, 128256, tok.VocabSize(), "every id decodes")
	require.Equal(t, 128000, PaiVocabSize(tok))
	require.Equal(t, hf.EOS(), tok.EOS())
	require.Equal(t, tok.EOS(), tok.EOD())
	require.Equal(t, hf.Pad(), tok.Pad())
	r := readExpected(t, "llama3.expected.jsonl")[0]
	require.Equal(t, r.IDsWithSpecial, tok.Encode(r.Text))
	old, err := Build(Config{TokenizerType: "LLamaTokenizer", TokenizerModel: dir})
	require.NoError(t, err)
	require.Equal(t, 128000, PaiVocabSize(old))
	if hf.Pad() < 0 {
		require.Equal(t, 128256, old.Pad(), "the id an added pad token takes")
	}
}

// TestPaiQwen2Tokenizer: Pai-Megatron-Patch's Qwen2Tokenizer on a Qwen HF directory: the
// vocabulary is the BPE's 151643 ids (len(tokenizer.encoder); Pai's scripts add 293 or 421
// extra rows), eod = eos, and the pad is "<|extra_0|>", which Pai adds after the tokenizer's
// own ids, whatever pad the tokenizer names.
func TestPaiQwen2Tokenizer(t *testing.T) {
	src := largeFile(t, "tokenizers/qwen3/tokenizer.json")
	dir := t.TempDir()
	data, err := os.ReadFile(src)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "tokenizer.json"), data, 0o644))
	cfg, err := os.ReadFile("testdata/qwen3.tokenizer_config.json")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "tokenizer_config.json"), cfg, 0o644))
	hf, err := Build(Config{TokenizerType: "HuggingFaceTokenizer", TokenizerModel: dir})
	require.NoError(t, err)
	tok, err := Build(Config{TokenizerType: "Qwen2Tokenizer", TokenizerModel: dir})
	require.NoError(t, err)
	require.Equal(t, 151643, PaiVocabSize(tok))
	require.Equal(t, hf.VocabSize(), tok.VocabSize())
	require.Equal(t, 151643, hf.Pad(), "the tokenizer's own pad, <|endoftext|>")
	require.Equal(t, 151669, tok.Pad(), "Pai's added <|extra_0|>")
	require.Equal(t, hf.EOS(), tok.EOD())
	r := readExpected(t, "qwen3.expected.jsonl")[0]
	require.Equal(t, r.IDsWithSpecial, tok.Encode(r.Text))

	// Pai's Qwen3Tokenizer adds no pad: the tokenizer's own.
	q3, err := Build(Config{TokenizerType: "Qwen3Tokenizer", TokenizerModel: dir})
	require.NoError(t, err)
	require.Equal(t, 151643, PaiVocabSize(q3))
	require.Equal(t, hf.Pad(), q3.Pad())
	require.Equal(t, hf.EOS(), q3.EOD())
	require.True(t, IsPai("Qwen3Tokenizer"))
}

// TestConcurrentEncode: Encode is safe from many goroutines (each borrows its own word
// cache) and gives the same ids as a sequential run.
func TestConcurrentEncode(t *testing.T) {
	sp, err := LoadSentencePiece("testdata/sp_bpe2k.model")
	require.NoError(t, err)
	uni, err := LoadSentencePiece("testdata/sp_unigram2k.model")
	require.NoError(t, err)
	toks := []Tokenizer{sp, uni}
	if fileExists(filepath.Join("..", "..", "testdata", "large", "tokenizers", "gpt2", "tokenizer.json")) {
		toks = append(toks, loadHFFixture(t, "gpt2"))
	}
	rows := readExpected(t, "corpus.jsonl")
	want := make([][][]int, len(toks))
	for k, tok := range toks {
		for _, r := range rows {
			want[k] = append(want[k], tok.Encode(r.Text))
		}
	}
	errs := make(chan error, 8)
	for g := range 8 {
		go func() {
			for n := range 3 * len(rows) {
				i := (n*7 + g) % len(rows)
				for k, tok := range toks {
					if !equalInts(tok.Encode(rows[i].Text), want[k][i]) {
						errs <- fmt.Errorf("goroutine %d: tokenizer %d row %d differs", g, k, i)
						return
					}
				}
			}
			errs <- nil
		}()
	}
	for range 8 {
		require.NoError(t, <-errs)
	}
}

// TestLongTextsAgainstPython encodes long inputs (the whole corpus as one text, with and
// without spaces, so that words run to thousands of symbols and take the heap-based
// merge) with python3-sentencepiece and with both of our BPE paths.
func TestLongTextsAgainstPython(t *testing.T) {
	if err := exec.Command("/usr/bin/python3", "-c", "import sentencepiece").Run(); err != nil {
		t.Skip("python3-sentencepiece is not installed (apt-get install python3-sentencepiece)")
	}
	var all, cjk strings.Builder
	for _, r := range readExpected(t, "corpus.jsonl") {
		all.WriteString(r.Text)
		if strings.HasPrefix(r.Category, "zh") || r.Category == "ja" {
			cjk.WriteString(r.Text)
		}
	}
	texts := []string{all.String(), strings.ReplaceAll(all.String(), " ", ""), strings.Repeat(cjk.String(), 5)}
	models := []string{"testdata/sp_bpe2k.model", "testdata/sp_unigram2k.model"}
	if p := filepath.Join("..", "..", "testdata", "large", "tokenizers", "sentencepiece", "llama2_tokenizer.model"); fileExists(p) {
		models = append(models, p)
	}
	for _, model := range models {
		abs, err := filepath.Abs(model)
		require.NoError(t, err)
		var want [][]int
		python(t, `import json,sys,sentencepiece as spm
sp=spm.SentencePieceProcessor(model_file=sys.argv[1])
print(json.dumps([sp.encode(s) for s in json.load(sys.stdin)]))`, texts, &want, abs)
		sp, err := LoadSentencePiece(model)
		require.NoError(t, err)
		for i, s := range texts {
			require.Equal(t, want[i], sp.Encode(s), "%s text %d (%d bytes)", model, i, len(s))
		}
		if sp.fast != nil {
			sp.fast = nil
			for i, s := range texts {
				require.Equal(t, want[i], sp.Encode(s), "%s generic path, text %d", model, i)
			}
		}
	}
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// TestRandomInput: arbitrary bytes (invalid UTF-8 included) and arbitrary ids never make
// a tokenizer panic, loop or decode to invalid UTF-8, and valid text round-trips through
// the byte-level tokenizers.
func TestRandomInput(t *testing.T) {
	sp, err := LoadSentencePiece("testdata/sp_unigram2k.model")
	require.NoError(t, err)
	spb, err := LoadSentencePiece("testdata/sp_bpe2k.model")
	require.NoError(t, err)
	toks := map[string]Tokenizer{"sp_unigram2k": sp, "sp_bpe2k": spb, "null": NewNull(10)}
	for _, name := range []string{"llama2", "qwen3"} {
		if fileExists(filepath.Join("..", "..", "testdata", "large", "tokenizers", name, "tokenizer.json")) {
			toks[name] = loadHFFixture(t, name)
		}
	}
	rng := rand.New(rand.NewPCG(7, 8))
	for name, tok := range toks {
		for range 300 {
			b := make([]byte, rng.IntN(40))
			for i := range b {
				b[i] = byte(rng.IntN(256))
				if rng.IntN(3) == 0 {
					b[i] = " a<|\xe4\xb8\xad"[rng.IntN(7)]
				}
			}
			ids := tok.Encode(string(b))
			for _, id := range ids {
				require.True(t, id >= 0 && id < tok.VocabSize(), "%s: id %d out of range for %q", name, id, b)
			}
			dec := tok.Decode(ids)
			require.True(t, utf8.ValidString(dec), "%s: decode of %q", name, b)
			if name == "qwen3" && utf8.Valid(b) && nfc(string(b)) == string(b) {
				require.Equal(t, string(b), dec, "qwen3 round trip")
			}
			junk := make([]int, rng.IntN(20))
			for i := range junk {
				junk[i] = rng.IntN(tok.VocabSize()+20) - 10
			}
			require.True(t, utf8.ValidString(tok.Decode(junk)), "%s: decode of random ids", name)
		}
	}
}

// TestLlamaConfigPostProcessor: a LlamaTokenizer tokenizer_config.json's add_bos_token and
// add_eos_token decide the special tokens, as transformers' LlamaTokenizerFast makes them.
func TestLlamaConfigPostProcessor(t *testing.T) {
	tok := loadHFFixture(t, "llama2")
	r := readExpected(t, "llama2.expected.jsonl")[0]
	cfg, err := os.ReadFile("testdata/llama2.tokenizer_config.json")
	require.NoError(t, err)
	eos := strings.Replace(string(cfg), `"add_eos_token": false`, `"add_eos_token": true`, 1)
	require.NoError(t, tok.SetSpecialFromConfig([]byte(eos)))
	require.Equal(t, append(append([]int{}, r.IDsWithSpecial...), 2), tok.Encode(r.Text))
	none := strings.Replace(eos, `"add_bos_token": true`, `"add_bos_token": false`, 1)
	none = strings.Replace(none, `"add_eos_token": true`, `"add_eos_token": false`, 1)
	require.NoError(t, tok.SetSpecialFromConfig([]byte(none)))
	require.Equal(t, r.IDs, tok.Encode(r.Text))
}

// TestMetaspace rewrites the llama2 tokenizer.json into the newer Metaspace form
// (pre_tokenizer Metaspace instead of the Prepend/Replace normalizer, Metaspace decoder)
// and checks it against the fixture where the two forms agree: text that does not start
// with a space and holds no added token, and (for decoding) has no byte tokens.
func TestMetaspace(t *testing.T) {
	data, err := os.ReadFile(largeFile(t, "tokenizers/llama2/tokenizer.json"))
	require.NoError(t, err)
	var j map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(data, &j))
	rows := readExpected(t, "llama2.expected.jsonl")
	for _, scheme := range []string{"always", "first"} {
		j["normalizer"] = json.RawMessage(`null`)
		j["pre_tokenizer"] = json.RawMessage(`{"type":"Metaspace","replacement":"▁","prepend_scheme":"` + scheme + `","split":false}`)
		j["decoder"] = json.RawMessage(`{"type":"Metaspace","replacement":"▁","prepend_scheme":"` + scheme + `","split":false}`)
		b, err := json.Marshal(j)
		require.NoError(t, err)
		tok, err := ParseHF(b)
		require.NoError(t, err)
		n := 0
		for _, r := range rows {
			if strings.HasPrefix(r.Text, " ") || strings.HasPrefix(r.Text, "\u2581") || strings.Contains(r.Text, "<s>") ||
				strings.Contains(r.Text, "</s>") || strings.Contains(r.Text, "<unk>") {
				continue
			}
			require.Equal(t, r.IDs, tok.EncodeSpecial(r.Text, false), "%s idx %d", scheme, r.Idx)
			bytesTok := false
			for _, id := range r.IDs {
				bytesTok = bytesTok || (id >= 3 && id < 259)
			}
			if !bytesTok {
				require.Equal(t, r.Decoded, tok.Decode(r.IDs), "%s idx %d", scheme, r.Idx)
			}
			n++
		}
		require.Greater(t, n, 150)
	}
	// "first" prepends only to the text at the start of the input, not after an added token.
	j["pre_tokenizer"] = json.RawMessage(`{"type":"Metaspace","replacement":"▁","prepend_scheme":"first","split":true}`)
	b, err := json.Marshal(j)
	require.NoError(t, err)
	tok, err := ParseHF(b)
	require.NoError(t, err)
	hi := tok.EncodeSpecial("Hi", false)
	require.Equal(t, append([]int{1}, hi...), tok.EncodeSpecial("<s>▁Hi", false))
}

// TestSentencePieceRandomAgainstPython compares the three SentencePiece models with
// python3-sentencepiece on random strings over a wide alphabet (NFKC-sensitive characters
// such as full-width forms, ligatures and circled digits for nmt_nfkc, whitespace runs for
// remove_extra_whitespaces, characters the models never saw for byte fallback, the
// user-defined symbols).
func TestSentencePieceRandomAgainstPython(t *testing.T) {
	if err := exec.Command("/usr/bin/python3", "-c", "import sentencepiece").Run(); err != nil {
		t.Skip("python3-sentencepiece is not installed (apt-get install python3-sentencepiece)")
	}
	alphabet := []string{
		"a", "Z", "é", "ß", "ж", "中", "文", "𠀀", "ア", "ｶ", "ﾞ", "한", "e\u0301", "\u0301",
		"0", "7", "123", "٣", "²", "①", "½", "Ａ", "ﬁ", "™", "…", "㍿",
		",", ".", "!", "?", "'", "(", "€", "😀", "_", "<", ">",
		" ", " ", "  ", "\t", "\n", "\r\n", "\u00a0", "\u3000", "\u200b", "\ufeff", "\x00",
		"▁", "<s>", "</s>", "<unk>", "<|endoftext|>", "<sep>", "<0x41>",
	}
	rng := rand.New(rand.NewPCG(11, 12))
	var texts []string
	for range 1500 {
		var b strings.Builder
		for range rng.IntN(30) {
			b.WriteString(alphabet[rng.IntN(len(alphabet))])
		}
		texts = append(texts, b.String())
	}
	models := []string{"testdata/sp_bpe2k.model", "testdata/sp_unigram2k.model"}
	if p := filepath.Join("..", "..", "testdata", "large", "tokenizers", "sentencepiece", "llama2_tokenizer.model"); fileExists(p) {
		models = append(models, p)
	}
	for _, model := range models {
		abs, err := filepath.Abs(model)
		require.NoError(t, err)
		var want []struct {
			IDs     []int  `json:"ids"`
			Decoded string `json:"decoded"`
		}
		python(t, `import json,sys,sentencepiece as spm
sp=spm.SentencePieceProcessor(model_file=sys.argv[1])
out=[]
for s in json.load(sys.stdin):
    ids=sp.encode(s)
    out.append({"ids": ids, "decoded": sp.decode(ids)})
print(json.dumps(out))`, texts, &want, abs)
		sp, err := LoadSentencePiece(model)
		require.NoError(t, err)
		bad := 0
		for i, s := range texts {
			got := sp.Encode(s)
			dec := sp.Decode(want[i].IDs)
			if !equalInts(got, want[i].IDs) || dec != want[i].Decoded {
				if bad < 5 {
					t.Errorf("%s: %+q\n got  %v %+q\n want %v %+q", model, s, got, dec, want[i].IDs, want[i].Decoded)
				}
				bad++
			}
		}
		t.Logf("%s: %d/%d random strings match python3-sentencepiece", filepath.Base(model), len(texts)-bad, len(texts))
	}
}
