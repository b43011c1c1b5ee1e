package tokenizer

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
)

// GPT2 is Megatron's GPT2BPETokenizer (megatron/training/tokenizer/gpt2_tokenization.py):
// GPT-2's regex splits the text, each word's bytes are spelled with the byte-level runes
// and BPE-merged by merges.txt rank. Special tokens in the text are not recognised (the
// class is built with special_tokens=[]), so "<|endoftext|>" in a document is ordinary
// text; Decode replaces invalid UTF-8 as Python's errors='replace'.
type GPT2 struct {
	model  *bpe
	eod    int
	caches cachePool
}

// LoadGPT2 reads vocab.json and merges.txt.
func LoadGPT2(vocabFile, mergeFile string) (*GPT2, error) {
	vb, err := os.ReadFile(vocabFile)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: --vocab-file: %w", err)
	}
	mb, err := os.ReadFile(mergeFile)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: --merge-file: %w", err)
	}
	var vocab map[string]int
	if err := json.Unmarshal(vb, &vocab); err != nil {
		return nil, fmt.Errorf("tokenizer: --vocab-file %s: %w", vocabFile, err)
	}
	t, err := NewGPT2(vocab, string(mb))
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %s, %s: %w", vocabFile, mergeFile, err)
	}
	return t, nil
}

// NewGPT2 builds the tokenizer from the vocab.json map and the merges.txt text. As
// Megatron reads it, the first line (the "#version" header) and the last line (empty when
// the file ends with a newline) are dropped.
func NewGPT2(vocab map[string]int, merges string) (*GPT2, error) {
	maxID := -1
	for _, id := range vocab {
		if id < 0 {
			return nil, fmt.Errorf("vocab has negative id %d", id)
		}
		maxID = max(maxID, id)
	}
	m := &bpe{vocab: map[string]int32{}, tokens: make([]string, maxID+1), merges: map[uint64]uint64{}, byteLevel: true, unk: -1}
	for tok, id := range vocab {
		raw, ok := byteLevelDecode(tok)
		if !ok {
			return nil, fmt.Errorf("vocab entry %q is not spelled with GPT-2's byte-level alphabet", tok)
		}
		m.vocab[string(raw)] = int32(id)
		m.tokens[id] = tok
	}
	lines := strings.Split(merges, "\n")
	if len(lines) >= 2 {
		lines = lines[1 : len(lines)-1]
	} else {
		lines = nil
	}
	for i, line := range lines {
		f := strings.Fields(line)
		if len(f) != 2 {
			return nil, fmt.Errorf("merges line %d %q: want two tokens", i+2, line)
		}
		a, okA := byteLevelDecode(f[0])
		b, okB := byteLevelDecode(f[1])
		if !okA || !okB {
			return nil, fmt.Errorf("merges line %d %q: not byte-level spelling", i+2, line)
		}
		if err := m.addMerge(string(a), string(b), i); err != nil {
			return nil, fmt.Errorf("merges line %d: %w", i+2, err)
		}
	}
	m.finish()
	eod, ok := vocab["<|endoftext|>"]
	if !ok {
		return nil, fmt.Errorf("vocab has no <|endoftext|>")
	}
	return &GPT2{model: m, eod: eod}, nil
}

// Encode is GPT2Tokenizer.encode.
func (t *GPT2) Encode(text string) []int {
	out := make([]int, 0, len(text)/3+1)
	sc := t.caches.get()
	defer t.caches.put(sc)
	splitGPT2(text, func(w string) { out = t.model.encode(out, w, sc) })
	return out
}

// Decode is GPT2Tokenizer.decode.
func (t *GPT2) Decode(ids []int) string {
	var buf []byte
	for _, id := range ids {
		if id >= 0 && id < len(t.model.tokens) {
			raw, _ := byteLevelDecode(t.model.tokens[id])
			buf = append(buf, raw...)
		}
	}
	return lossyUTF8(buf)
}

// VocabSize is len(encoder).
func (t *GPT2) VocabSize() int { return len(t.model.vocab) }
func (t *GPT2) EOD() int       { return t.eod }
func (t *GPT2) BOS() int       { return -1 }
func (t *GPT2) EOS() int       { return -1 }
func (t *GPT2) Pad() int       { return -1 }
