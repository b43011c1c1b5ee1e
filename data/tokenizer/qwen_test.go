package tokenizer

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// writeRanks writes a tiktoken rank file: the 256 bytes, then the given merges in order.
func writeRanks(t testing.TB, dir string, merges ...string) string {
	t.Helper()
	var b strings.Builder
	for i := 0; i < 256; i++ {
		fmt.Fprintf(&b, "%s %d\n", base64.StdEncoding.EncodeToString([]byte{byte(i)}), i)
	}
	for i, m := range merges {
		fmt.Fprintf(&b, "%s %d\n", base64.StdEncoding.EncodeToString([]byte(m)), 256+i)
	}
	p := filepath.Join(dir, "qwen.tiktoken")
	require.NoError(t, os.WriteFile(p, []byte(b.String()), 0o644))
	return p
}

// TestQwenTokenizer: QWenTokenizer's ids over a small rank file: BPE by rank, single digits
// (QwenPattern: "12" stays two tokens though it has a rank), every special token in the text
// recognised at len(ranks)+i, no BOS, eod = eos = <|endoftext|>, pad = <|extra_0|>, and
// decode as the inverse.
func TestQwenTokenizer(t *testing.T) {
	dir := t.TempDir()
	writeRanks(t, dir, "he", "ll", "hell", "12", " w")
	tok, err := Build(Config{TokenizerType: "QwenTokenizer", TokenizerModel: dir})
	require.NoError(t, err)
	q := tok.(*Qwen)
	base := 261
	require.Equal(t, base+208, q.VocabSize())
	require.Equal(t, base, q.EOD())
	require.Equal(t, base, q.EOS())
	require.Equal(t, base+3, q.Pad())
	require.Equal(t, base+208, PaiVocabSize(q), "Pai sizes the embedding from the whole vocabulary")
	require.True(t, IsPai("QwenTokenizer"))

	require.Equal(t, []int{258, 'o'}, q.Encode("hello"))
	require.Equal(t, []int{'1', '2'}, q.Encode("12"), "digits split one by one")
	require.Equal(t, []int{'a', base + 1, 'b', base + 3 + 204, base}, q.Encode("a<|im_start|>b<|extra_204|><|endoftext|>"))
	require.Equal(t, []int{'<', '|', 'n', 'o', '|', '>'}, q.Encode("<|no|>"), "not a special token: ordinary text")
	require.Equal(t, []int{'x', '<', '|', 'x', base + 2}, q.Encode("x<|x<|im_end|>"))
	for _, s := range []string{"hello world 12", "a<|im_start|>b<|extra_204|><|endoftext|>", "x<|x<|im_end|>", "中文 ok"} {
		require.Equal(t, s, q.Decode(q.Encode(s)))
	}
	require.Equal(t, q.Encode("hello"), EncodeNoSpecial(q, "hello"), "no BOS to leave out")

	_, err = Build(Config{TokenizerType: "QwenTokenizer"})
	require.ErrorContains(t, err, "QwenTokenizer needs --tokenizer-model")
	gap := t.TempDir()
	p := writeRanks(t, gap, "he")
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(p, []byte(strings.Replace(string(b), " 256\n", " 300\n", 1)), 0o644))
	_, err = LoadQwen(p)
	require.ErrorContains(t, err, "ranks are not 0…256")
}

// TestQwenAgainstQwen3Fixture: Qwen (1.0)'s qwen.tiktoken holds the byte-level BPE that
// Qwen2 and Qwen3 kept (their first 151643 ids, and <|endoftext|>, <|im_start|>, <|im_end|>
// after them), so a rank file made from the qwen3 fixture's vocabulary must give HF's ids on
// every fixture string that Qwen3's NFC normalizer leaves alone and that holds none of
// Qwen3's later special tokens (Qwen 1.0 has <|extra_N|> there).
func TestQwenAgainstQwen3Fixture(t *testing.T) {
	src := largeFile(t, "tokenizers/qwen3/tokenizer.json")
	data, err := os.ReadFile(src)
	require.NoError(t, err)
	var tj struct {
		Model struct {
			Vocab map[string]int `json:"vocab"`
		} `json:"model"`
		AddedTokens []struct {
			ID      int    `json:"id"`
			Content string `json:"content"`
		} `json:"added_tokens"`
	}
	require.NoError(t, json.Unmarshal(data, &tj))
	lines := make([]string, len(tj.Model.Vocab))
	for tok, id := range tj.Model.Vocab {
		raw, ok := byteLevelDecode(tok)
		require.True(t, ok, tok)
		require.Less(t, id, len(lines))
		lines[id] = fmt.Sprintf("%s %d", base64.StdEncoding.EncodeToString(raw), id)
	}
	require.Len(t, lines, 151643)
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "qwen.tiktoken"), []byte(strings.Join(lines, "\n")+"\n"), 0o644))
	q, err := LoadQwen(dir)
	require.NoError(t, err)

	var later []string // Qwen3's special tokens past Qwen 1.0's first three
	for _, a := range tj.AddedTokens {
		if a.ID >= 151646 {
			later = append(later, a.Content)
		}
	}
	n := 0
	for _, r := range readExpected(t, "qwen3.expected.jsonl") {
		if nfc(r.Text) != r.Text || slices.ContainsFunc(later, func(s string) bool { return strings.Contains(r.Text, s) }) {
			continue
		}
		if got := q.Encode(r.Text); !equalInts(got, r.IDs) {
			t.Fatalf("idx %d %q:\n got  %v\n want %v", r.Idx, r.Text, got, r.IDs)
		}
		require.Equal(t, r.Text, q.Decode(r.IDs), "idx %d", r.Idx)
		n++
	}
	require.Greater(t, n, 150, "most fixture strings are NFC and free of Qwen3's later specials")
	t.Logf("%d fixture strings equal to HF's Qwen3 ids", n)
}
