package tokenizer

import (
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
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
