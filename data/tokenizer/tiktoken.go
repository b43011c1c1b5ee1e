package tokenizer

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// TikTokenConfig holds Megatron's --tiktoken-* flags.
type TikTokenConfig struct {
	Pattern          string   // --tiktoken-pattern: "v1" or "v2" (default "v2")
	NumSpecialTokens int      // --tiktoken-num-special-tokens (default 1000)
	SpecialTokens    []string // --tiktoken-special-tokens (default <unk>, <s>, </s>)
}

// TikToken is a tiktoken Encoding: the pattern splits the text, a word that is a whole
// token is emitted as is, any other is BPE-merged by the rank of each adjacent pair's
// concatenation (lowest first, leftmost on ties). Ids are ranks plus Offset.
type TikToken struct {
	model   *bpe
	split   pretokenizer
	offset  int
	special map[int]string // id → special token text (decode only: encode_ordinary)
	size    int
	bos     int
	eos     int
	unk     int
	caches  cachePool
}

// NewTikToken builds an encoding from ranks (token bytes → rank), a pre-tokenizer regex
// and an id offset added to every rank.
func NewTikToken(ranks map[string]int, pattern string, offset int) (*TikToken, error) {
	maxRank := -1
	for _, r := range ranks {
		if r < 0 {
			return nil, fmt.Errorf("negative rank %d", r)
		}
		maxRank = max(maxRank, r)
	}
	m := &bpe{vocab: make(map[string]int32, len(ranks)), tokens: make([]string, maxRank+1+offset),
		merges: make(map[uint64]uint64, len(ranks)), byteLevel: true, ignoreMerges: true, unk: -1}
	for tok, r := range ranks {
		m.vocab[tok] = int32(r + offset)
		m.tokens[r+offset] = tok
	}
	// The pair (a, b) merges into a+b with a+b's rank: tiktoken's merge loop with parts
	// that are always tokens, in merge-table form.
	for tok, r := range ranks {
		for k := 1; k < len(tok); k++ {
			a, okA := m.vocab[tok[:k]]
			b, okB := m.vocab[tok[k:]]
			if okA && okB {
				m.merges[pairKey(a, b)] = uint64(r)<<32 | uint64(uint32(r+offset))
			}
		}
	}
	m.finish()
	for b := 0; b < 256; b++ {
		if m.byteIDs[b] < 0 {
			return nil, fmt.Errorf("byte 0x%02X has no rank", b)
		}
	}
	split, ok := scannerFor(pattern)
	if !ok {
		var err error
		if split, err = buildRegexSplit(hfPattern{Regex: &pattern}, splitRemoved, true); err != nil {
			return nil, err
		}
	}
	return &TikToken{model: m, split: split, offset: offset, special: map[int]string{},
		size: maxRank + 1 + offset, bos: -1, eos: -1, unk: -1}, nil
}

// ReadTikTokenRanks reads a tiktoken rank file (one "base64(token) rank" per line) or
// Megatron's JSON list of {"rank", "token_bytes", "token_str"} (ranks must be 0, 1, …
// in order, as Megatron's reload_mergeable_ranks asserts).
func ReadTikTokenRanks(path string) (map[string]int, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	ranks := map[string]int{}
	if t := bytes.TrimSpace(data); len(t) > 0 && t[0] == '[' {
		var list []struct {
			Rank       *int    `json:"rank"`
			TokenBytes *string `json:"token_bytes"`
		}
		if err := json.Unmarshal(data, &list); err != nil {
			return nil, fmt.Errorf("tokenizer: %s: %w", path, err)
		}
		for i, x := range list {
			if x.Rank == nil || x.TokenBytes == nil {
				return nil, fmt.Errorf("tokenizer: %s: entry %d lacks rank or token_bytes", path, i)
			}
			if *x.Rank != i {
				return nil, fmt.Errorf("tokenizer: %s: entry %d has rank %d, want %d", path, i, *x.Rank, i)
			}
			b, err := base64.StdEncoding.DecodeString(*x.TokenBytes)
			if err != nil {
				return nil, fmt.Errorf("tokenizer: %s: entry %d token_bytes: %w", path, i, err)
			}
			ranks[string(b)] = i
		}
		return ranks, nil
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<16), 1<<24)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" {
			continue
		}
		tok, rank, ok := strings.Cut(text, " ")
		if !ok {
			return nil, fmt.Errorf("tokenizer: %s:%d: want \"base64 rank\"", path, line)
		}
		b, err := base64.StdEncoding.DecodeString(tok)
		if err != nil {
			return nil, fmt.Errorf("tokenizer: %s:%d: %w", path, line, err)
		}
		r, err := strconv.Atoi(rank)
		if err != nil {
			return nil, fmt.Errorf("tokenizer: %s:%d: rank: %w", path, line, err)
		}
		ranks[string(b)] = r
	}
	return ranks, sc.Err()
}

// LoadTikToken is Megatron's CustomTikTokenizer (--tokenizer-type TikTokenizer): ranks
// shifted by NumSpecialTokens, the special tokens (default <unk>, <s>, </s>, then
// <SPECIAL_i> fillers) at ids 0…NumSpecialTokens-1, the vocab cut to --vocab-size
// (131072 when 0) minus the specials, and encode_ordinary (special tokens in the text
// are ordinary text); eod = eos = </s>.
func LoadTikToken(path string, cfg TikTokenConfig, vocabSize ...int) (*TikToken, error) {
	ranks, err := ReadTikTokenRanks(path)
	if err != nil {
		return nil, err
	}
	size := 1 << 17
	if len(vocabSize) > 0 && vocabSize[0] > 0 {
		size = vocabSize[0]
	}
	nSpecial := cfg.NumSpecialTokens
	if nSpecial == 0 {
		nSpecial = 1000
	}
	specials := cfg.SpecialTokens
	if specials == nil {
		specials = []string{"<unk>", "<s>", "</s>"}
	}
	if len(specials) > nSpecial || nSpecial >= size {
		return nil, fmt.Errorf("tokenizer: --tiktoken-num-special-tokens %d must hold %d special tokens and be below the vocab size %d", nSpecial, len(specials), size)
	}
	pattern := MegatronTikTokenV2Pattern
	switch cfg.Pattern {
	case "v1":
		pattern = MegatronTikTokenV1Pattern
	case "v2", "":
	default:
		return nil, fmt.Errorf("tokenizer: --tiktoken-pattern %q: want v1 or v2", cfg.Pattern)
	}
	inner := size - nSpecial
	for tok, r := range ranks {
		if r >= inner {
			delete(ranks, tok)
		}
	}
	t, err := NewTikToken(ranks, pattern, nSpecial)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %s: %w", path, err)
	}
	t.size = size
	seen := map[string]bool{}
	for i := 0; i < nSpecial; i++ {
		s := "<SPECIAL_" + strconv.Itoa(i) + ">"
		if i < len(specials) {
			s = specials[i]
		}
		if seen[s] {
			return nil, fmt.Errorf("tokenizer: --tiktoken-special-tokens: %q repeated", s)
		}
		seen[s] = true
		t.special[i] = s
		switch s {
		case "<unk>":
			t.unk = i
		case "<s>":
			t.bos = i
		case "</s>":
			t.eos = i
		}
	}
	if t.unk < 0 || t.bos < 0 || t.eos < 0 {
		return nil, fmt.Errorf("tokenizer: --tiktoken-special-tokens must include <unk>, <s> and </s>")
	}
	return t, nil
}

// Encode is encode_ordinary.
func (t *TikToken) Encode(text string) []int {
	out := make([]int, 0, len(text)/3+1)
	sc := t.caches.get()
	defer t.caches.put(sc)
	t.split(text, func(w string) { out = t.model.encode(out, w, sc) })
	return out
}

// Decode concatenates the tokens' bytes (special tokens as their text) and replaces
// invalid UTF-8 as errors="replace".
func (t *TikToken) Decode(ids []int) string {
	var buf []byte
	for _, id := range ids {
		if s, ok := t.special[id]; ok {
			buf = append(buf, s...)
		} else if id >= 0 && id < len(t.model.tokens) {
			buf = append(buf, t.model.tokens[id]...)
		}
	}
	return lossyUTF8(buf)
}

func (t *TikToken) VocabSize() int { return t.size }
func (t *TikToken) EOD() int       { return t.eos }
func (t *TikToken) BOS() int       { return t.bos }
func (t *TikToken) EOS() int       { return t.eos }
func (t *TikToken) Pad() int       { return -1 }
