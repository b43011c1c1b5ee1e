package tokenizer

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestPretokChains checks the pre-tokenizer chains of Falcon (Punctuation, ByteLevel,
// then Digits and a Split on the byte-level spelling), StarCoder (Digits, ByteLevel) and
// BLOOM (a Split with a nested class) against HF tokenizers' ids, on a small byte-level
// BPE carrying each model's chain (testdata/pretok, made by gen.js).
func TestPretokChains(t *testing.T) {
	for _, name := range []string{"falcon", "starcoder", "bloom"} {
		t.Run(name, func(t *testing.T) {
			tok, err := LoadHF("testdata/pretok/" + name + ".tokenizer.json")
			require.NoError(t, err)
			rows := readExpected(t, "pretok/"+name+".expected.jsonl")
			m := &mismatchLog{t: t, name: name}
			for i, r := range rows {
				r.Idx = i
				ids := tok.EncodeSpecial(r.Text, false)
				ok := m.check(r, "ids", equalInts(ids, r.IDs), ids, r.IDs)
				if dec := tok.Decode(ids); ok && !strings.ContainsRune(r.Text, '\ufffd') {
					ok = m.check(r, "decode", dec == r.Text, dec, r.Text)
				}
				m.n++
				if !ok {
					m.bad++
				}
			}
			t.Logf("%s: %d/%d rows match", name, m.n-m.bad, m.n)
		})
	}
}

func TestSplitBehaviors(t *testing.T) {
	// "a1b22c": digits are the matches.
	const s = "a1b22c"
	for _, tc := range []struct {
		b      splitBehavior
		invert bool
		want   []string
	}{
		{splitIsolated, false, []string{"a", "1", "b", "2", "2", "c"}},
		{splitRemoved, false, []string{"a", "b", "c"}},
		{splitRemoved, true, []string{"1", "2", "2"}},
		{splitMergedWithPrevious, false, []string{"a1", "b2", "2", "c"}},
		{splitMergedWithNext, false, []string{"a", "1b", "2", "2c"}},
		{splitContiguous, false, []string{"a", "1", "b", "22", "c"}},
	} {
		var got []string
		splitSegments(s, runeSegments(s, isNumeric, false, nil), tc.b, tc.invert, func(w string) { got = append(got, w) })
		require.Equal(t, tc.want, got, "behavior %d invert %v", tc.b, tc.invert)
	}
}

func TestOnigClassesForRegexp2(t *testing.T) {
	for in, want := range map[string]string{
		` ?[^(\s|[.,!?…])]+`: ` ?[^(\s|.,!?…)]+`,
		`[[:alpha:]x]`:       `[[:alpha:]x]`,
		`[]a]`:               `[]a]`,
		`[\[\]]`:             `[\[\]]`,
		`a|[b[cd]e]`:         `a|[bcde]`,
	} {
		got, err := onigClassesForRegexp2(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	for _, bad := range []string{`[a[^b]]`, `[a-z&&[^aeiou]]`, `[ab`} {
		_, err := onigClassesForRegexp2(bad)
		require.Error(t, err, bad)
	}
}

// TestPaiFastOnlyTokenizers: Pai-Megatron-Patch's FalconTokenizer,
// StarcoderTokenizerFromHF and BloomTokenizerFromHF on a folder with tokenizer.json and
// the special tokens of the model's tokenizer_config.json: eod = eos, Falcon's and
// StarCoder's pad = eos (Pai sets pad_token = eos_token), BLOOM's the config's; the
// embedding sizes Pai's build_tokenizer sets.
func TestPaiFastOnlyTokenizers(t *testing.T) {
	for _, tc := range []struct {
		typ, chain, config string
		eos, pad           string
		vocab              int // PaiModelVocab with --extra-vocab-size 3
	}{
		{"FalconTokenizer", "falcon", `{"add_prefix_space": false, "eos_token": "<|endoftext|>", "tokenizer_class": "PreTrainedTokenizerFast"}`,
			"<|endoftext|>", "<|endoftext|>", -1},
		{"StarcoderTokenizerFromHF", "starcoder", `{"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>", "tokenizer_class": "GPT2Tokenizer"}`,
			"<|endoftext|>", "<|endoftext|>", 49152},
		{"BloomTokenizerFromHF", "bloom", `{"unk_token": "<unk>", "eos_token": "</s>", "bos_token": "<s>", "pad_token": "<pad>", "tokenizer_class": "BloomTokenizerFast"}`,
			"</s>", "<pad>", 250880},
	} {
		t.Run(tc.typ, func(t *testing.T) {
			dir := t.TempDir()
			_, err := Build(Config{TokenizerType: tc.typ, TokenizerModel: dir})
			require.ErrorContains(t, err, "tokenizer.json", "no SentencePiece fallback")
			data, err := os.ReadFile("testdata/pretok/" + tc.chain + ".tokenizer.json")
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(filepath.Join(dir, "tokenizer.json"), data, 0o644))
			require.NoError(t, os.WriteFile(filepath.Join(dir, "tokenizer_config.json"), []byte(tc.config), 0o644))
			tok, err := Build(Config{TokenizerType: tc.typ, TokenizerModel: dir})
			require.NoError(t, err)
			require.True(t, IsPai(tc.typ))
			hf := tok.(*HF)
			eos, ok := hf.TokenID(tc.eos)
			require.True(t, ok)
			pad, ok := hf.TokenID(tc.pad)
			require.True(t, ok)
			require.Equal(t, eos, tok.EOS())
			require.Equal(t, eos, tok.EOD())
			require.Equal(t, pad, tok.Pad())
			want := tc.vocab
			if want < 0 {
				want = hf.modelVocab + 3
			}
			require.Equal(t, want, PaiModelVocab(tc.typ, tok, 3))
			r := readExpected(t, "pretok/"+tc.chain+".expected.jsonl")[0]
			require.Equal(t, r.IDs, EncodeNoSpecial(tok, r.Text))
			require.Equal(t, r.IDs, tok.Encode(r.Text), "the ByteLevel post-processor adds nothing")
		})
	}
}

// TestDigitTriplesScanner: the scanner for Falcon's "[0-9][0-9][0-9]" Split cuts as the
// regex engine does.
func TestDigitTriplesScanner(t *testing.T) {
	re, err := buildRegexSplit(hfPattern{Regex: new(digitTriplesPattern)}, splitIsolated, false)
	require.NoError(t, err)
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []string{"0", "1", "9", "a", " ", "½", "٣", "12", "123"}
	for range 3000 {
		var b strings.Builder
		for n := rng.IntN(14); n >= 0; n-- {
			b.WriteString(alphabet[rng.IntN(len(alphabet))])
		}
		s := b.String()
		var got, want []string
		splitDigitTriples(s, func(w string) { got = append(got, w) })
		re(s, func(w string) { want = append(want, w) })
		require.Equal(t, want, got, "%q", s)
	}
}

// TestBaichuanTokenizer: Pai's BaichuanTokenizer over a folder's tokenizer.model: Baichuan
// 2's tokenizer_config.json (add_bos_token false, pad "<unk>") gives the bare pieces and pad
// 0; without a config the class defaults apply (BOS first) and the pad is Pai's added
// "[PAD]", the next id.
func TestBaichuanTokenizer(t *testing.T) {
	model, err := os.ReadFile("testdata/sp_bpe2k.model")
	require.NoError(t, err)
	sp, err := ParseSentencePiece(model)
	require.NoError(t, err)
	const text = "Hello, Baichuan 2! 你好"
	dir := t.TempDir()
	_, err = Build(Config{TokenizerType: "BaichuanTokenizer", TokenizerModel: dir})
	require.ErrorContains(t, err, "tokenizer.model")
	require.NoError(t, os.WriteFile(filepath.Join(dir, "tokenizer.model"), model, 0o644))

	bare, err := Build(Config{TokenizerType: "BaichuanTokenizer", TokenizerModel: dir})
	require.NoError(t, err)
	require.Equal(t, append([]int{sp.BOS()}, sp.Encode(text)...), bare.Encode(text))
	require.Equal(t, sp.VocabSize(), bare.Pad())
	require.Equal(t, sp.EOS(), bare.EOD())
	require.Equal(t, sp.Encode(text), EncodeNoSpecial(bare, text))

	cfg := `{"add_bos_token": false, "add_eos_token": false, "bos_token": {"content": "<s>", "lstrip": false},
		"eos_token": {"content": "</s>"}, "pad_token": {"content": "<unk>"}, "unk_token": "<unk>", "tokenizer_class": "BaichuanTokenizer"}`
	require.NoError(t, os.WriteFile(filepath.Join(dir, "tokenizer_config.json"), []byte(cfg), 0o644))
	tok, err := Build(Config{TokenizerType: "BaichuanTokenizer", TokenizerModel: dir})
	require.NoError(t, err)
	require.Equal(t, sp.Encode(text), tok.Encode(text))
	require.Equal(t, sp.PieceID("<unk>"), tok.Pad())
	require.Equal(t, sp.PieceID("</s>"), tok.EOD())
	require.Equal(t, sp.VocabSize()+5, PaiModelVocab("BaichuanTokenizer", tok, 5))
	require.True(t, IsPai("BaichuanTokenizer"))

	require.NoError(t, os.WriteFile(filepath.Join(dir, "tokenizer_config.json"), []byte(`{"add_eos_token": true, "pad_token": "[PAD]"}`), 0o644))
	_, err = Build(Config{TokenizerType: "BaichuanTokenizer", TokenizerModel: dir})
	require.ErrorContains(t, err, `pad_token "[PAD]" is not a piece of tokenizer.model`)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "tokenizer_config.json"), []byte(`{"add_bos_token": false, "add_eos_token": true}`), 0o644))
	eos, err := Build(Config{TokenizerType: "BaichuanTokenizer", TokenizerModel: filepath.Join(dir, "tokenizer.model")})
	require.NoError(t, err)
	require.Equal(t, append(sp.Encode(text), sp.EOS()), eos.Encode(text))
}

// TestAddsBOS: BOS leads tokenizer(text) for Llama's fast tokenizer (its post-processor), not
// for BLOOM's (a bos_token, no template), nor for Baichuan 2's config (add_bos_token false).
func TestAddsBOS(t *testing.T) {
	bloom, err := LoadHF("testdata/pretok/bloom.tokenizer.json")
	require.NoError(t, err)
	require.NoError(t, bloom.SetSpecialFromConfig([]byte(`{"bos_token": "<s>", "eos_token": "</s>"}`)))
	require.GreaterOrEqual(t, bloom.BOS(), 0)
	require.False(t, AddsBOS(bloom))
	llama := `{"model": {"type": "BPE", "vocab": {"<s>": 0, "a": 1}, "merges": []}, "added_tokens": [{"id": 0, "content": "<s>", "special": true}],
		"post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>"}}, {"Sequence": {"id": "A"}}],
		"special_tokens": {"<s>": {"ids": [0]}}}}`
	hf, err := ParseHF([]byte(llama))
	require.NoError(t, err)
	require.NoError(t, hf.SetSpecialFromConfig([]byte(`{"bos_token": "<s>"}`)))
	require.True(t, AddsBOS(hf))

	model, err := os.ReadFile("testdata/sp_bpe2k.model")
	require.NoError(t, err)
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "tokenizer.model"), model, 0o644))
	bc, err := LoadBaichuan(dir)
	require.NoError(t, err)
	require.True(t, AddsBOS(bc), "the class default")
	bc.addBOS = false
	require.False(t, AddsBOS(bc))
}
