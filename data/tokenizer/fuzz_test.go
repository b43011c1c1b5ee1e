package tokenizer

import (
	"os"
	"testing"
	"unicode/utf8"
)

// FuzzParseSentencePiece: any bytes given as a SentencePiece .model give a tokenizer that
// encodes and decodes without a panic, or an error.
func FuzzParseSentencePiece(f *testing.F) {
	for _, s := range []string{"testdata/sp_bpe2k.model", "testdata/sp_unigram2k.model"} {
		b, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, "Hello, wörld  12\n\tx")
	}
	f.Fuzz(func(t *testing.T, data []byte, text string) {
		sp, err := ParseSentencePiece(data)
		if err != nil {
			return
		}
		ids := sp.Encode(text)
		_ = sp.Decode(append(ids, -1, sp.VocabSize(), 1<<30))
	})
}

// FuzzParseHF: any tokenizer.json gives a tokenizer that encodes and decodes without a
// panic, or an error.
func FuzzParseHF(f *testing.F) {
	for _, s := range []string{
		`{"model":{"type":"BPE","vocab":{"a":0,"b":1,"ab":2,"<unk>":3},"merges":["a b"],"unk_token":"<unk>"},"pre_tokenizer":{"type":"ByteLevel","add_prefix_space":false},"decoder":{"type":"ByteLevel"}}`,
		`{"model":{"type":"BPE","vocab":{"a":0,"b":1,"ab":2,"<unk>":3},"merges":["a b"],"unk_token":"<unk>"},"pre_tokenizer":{"type":"Sequence","pretokenizers":[{"type":"Punctuation","behavior":"Contiguous"},{"type":"ByteLevel","use_regex":true},{"type":"Digits","individual_digits":false},{"type":"Split","pattern":{"Regex":" ?[^(\\s|[.,!?])]+"},"behavior":"MergedWithNext","invert":true}]},"decoder":{"type":"ByteLevel"}}`,
		`{"model":{"type":"BPE","vocab":{"▁":0,"a":1,"▁a":2},"merges":["▁ a"],"byte_fallback":true},"normalizer":{"type":"Sequence","normalizers":[{"type":"Prepend","prepend":"▁"},{"type":"Replace","pattern":{"String":" "},"content":"▁"}]},"decoder":{"type":"Sequence","decoders":[{"type":"Replace","pattern":{"String":"▁"},"content":" "},{"type":"ByteFallback"},{"type":"Fuse"}]},"added_tokens":[{"id":3,"content":"<s>","special":true}]}`,
	} {
		f.Add([]byte(s), "a ab <s>b\x00é")
	}
	f.Fuzz(func(t *testing.T, data []byte, text string) {
		tok, err := ParseHF(data)
		if err != nil {
			return
		}
		ids := tok.Encode(text)
		_ = tok.Decode(append(ids, -1, tok.VocabSize(), 1<<30))
	})
}

// FuzzQwenEncode: Qwen's encoding of any text (special tokens anywhere in it) decodes back
// to the text, when it is valid UTF-8.
func FuzzQwenEncode(f *testing.F) {
	q, err := LoadQwen(writeRanks(f, f.TempDir(), "he", "ll", "hell", "12", " w"))
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{"hello world 12", "a<|im_start|>b<|extra_204|><|endoftext|>", "<|x<|im_end|>|>", "中文\n\t "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		ids := q.Encode(text)
		if utf8.ValidString(text) && q.Decode(ids) != text {
			t.Fatalf("Decode(Encode(%q)) = %q", text, q.Decode(ids))
		}
	})
}

// FuzzPretokChains: Falcon's, StarCoder's and BLOOM's chains (testdata/pretok) encode any
// text, special tokens anywhere in it, to ids that decode back to the text when it is
// valid UTF-8: the pre-tokenizers, the Split behaviors and Falcon's byte-level steps lose
// and duplicate nothing.
func FuzzPretokChains(f *testing.F) {
	var toks []*HF
	for _, name := range []string{"falcon", "starcoder", "bloom"} {
		t, err := LoadHF("testdata/pretok/" + name + ".tokenizer.json")
		if err != nil {
			f.Fatal(err)
		}
		toks = append(toks, t)
	}
	for _, s := range []string{"price: $1,234.56 (approx.)", "佽½ 12345678", "a.b,c!d?e…f。g (x)|y", ">>TITLE<<1<|endoftext|></s>"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		for _, tok := range toks {
			ids := tok.EncodeSpecial(text, false)
			if utf8.ValidString(text) && tok.Decode(ids) != text {
				t.Fatalf("Decode(Encode(%q)) = %q", text, tok.Decode(ids))
			}
		}
	})
}
