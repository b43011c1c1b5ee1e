package tokenizer

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// QwenSpecialTokens are Qwen (1.0)'s special tokens in id order (tokenization_qwen.py's
// SPECIAL_TOKENS): <|endoftext|>, <|im_start|>, <|im_end|>, then <|extra_0|> … <|extra_204|>.
var QwenSpecialTokens = func() []string {
	s := []string{"<|endoftext|>", "<|im_start|>", "<|im_end|>"}
	for i := 0; i < 205; i++ {
		s = append(s, fmt.Sprintf("<|extra_%d|>", i))
	}
	return s
}()

// Qwen is Qwen (1.0)'s QWenTokenizer as Pai-Megatron-Patch's --patch-tokenizer-type
// QwenTokenizer loads it: tiktoken BPE over qwen.tiktoken, split by QwenPattern (single
// digits), and the special tokens at ids len(ranks)…. Text is encoded with every special
// token recognised (QWenTokenizer.tokenize's allowed_special="all") and no BOS. eod and eos
// are <|endoftext|>; pad is <|extra_0|>, which Pai sets as the pad token.
type Qwen struct {
	*TikToken
	byText map[string]int
}

// LoadQwen reads qwen.tiktoken (path, or the file of that name in the folder path).
func LoadQwen(path string) (*Qwen, error) {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		path = filepath.Join(path, "qwen.tiktoken")
	}
	ranks, err := ReadTikTokenRanks(path)
	if err != nil {
		return nil, err
	}
	t, err := NewTikToken(ranks, QwenPattern, 0)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %s: %w", path, err)
	}
	base := len(ranks)
	if t.size != base {
		return nil, fmt.Errorf("tokenizer: %s: ranks are not 0…%d (the largest is %d); Qwen's special tokens follow them", path, base-1, t.size-1)
	}
	q := &Qwen{TikToken: t, byText: map[string]int{}}
	for i, s := range QwenSpecialTokens {
		t.special[base+i], q.byText[s] = s, base+i
	}
	t.size = base + len(QwenSpecialTokens)
	t.eos = base
	return q, nil
}

// Encode is QWenTokenizer.tokenize(text): special tokens in the text become their ids,
// the rest is BPE-encoded.
func (q *Qwen) Encode(text string) []int {
	var out []int
	for text != "" {
		at, end, id := q.nextSpecial(text)
		if at < 0 {
			return append(out, q.TikToken.Encode(text)...)
		}
		if at > 0 {
			out = append(out, q.TikToken.Encode(text[:at])...)
		}
		out = append(out, id)
		text = text[end:]
	}
	return out
}

// nextSpecial finds the first special token in s: its start, end and id (start −1: none).
// Every special token is <|…|> with no "<|" inside.
func (q *Qwen) nextSpecial(s string) (at, end, id int) {
	for from := 0; ; {
		i := strings.Index(s[from:], "<|")
		if i < 0 {
			return -1, 0, 0
		}
		i += from
		if j := strings.Index(s[i+2:], "|>"); j >= 0 {
			if id, ok := q.byText[s[i:i+2+j+2]]; ok {
				return i, i + 2 + j + 2, id
			}
		}
		from = i + 1
	}
}

func (q *Qwen) Pad() int { return q.byText["<|extra_0|>"] }
