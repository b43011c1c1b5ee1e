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
