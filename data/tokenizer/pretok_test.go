package tokenizer

import (
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/dlclark/regexp2/v2"
	"github.com/stretchr/testify/require"
)

// regexSplit returns the matches of a regexp2 pattern over s (the pre-tokens a Split
// pre-tokenizer keeps).
func regexSplit(t *testing.T, re *regexp2.Regexp, s string) []string {
	var out []string
	runes := []rune(s)
	m, err := re.FindStringMatch(s)
	require.NoError(t, err)
	for m != nil {
		out = append(out, string(runes[m.RuneIndex:m.RuneIndex+m.RuneLength]))
		m, err = re.FindNextMatch(m)
		require.NoError(t, err)
	}
	return out
}

// TestScannersMatchRegex checks each hand-written scanner against the regex it replaces,
// run by regexp2 (a backtracking engine with lookahead, like Oniguruma), on random
// strings over an alphabet of letters, digits (also non-ASCII \p{N}), symbols, emoji,
// contractions and whitespace where \s means the same in both engines.
func TestScannersMatchRegex(t *testing.T) {
	alphabet := []string{
		"a", "Z", "é", "ß", "中", "文", "ア", "한", "Ω",
		"1", "7", "٣", "²", "Ⅻ",
		",", ".", "!", "\"", "'", "(", "/", "-", "€", "😀", "_", "#",
		"'s", "'S", "'t", "'re", "'VE", "'m", "'ll", "'Ll", "'d", "'x",
		" ", " ", " ", "  ", "\t", "\n", "\r", "\r\n", "\v", "\f", "\u00a0", "\u3000", "\u2003", "\u2028", "\u0085",
		"\u200b", "\ufeff",
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var inputs []string
	for range 3000 {
		var b strings.Builder
		for range rng.IntN(24) {
			b.WriteString(alphabet[rng.IntN(len(alphabet))])
		}
		inputs = append(inputs, b.String())
	}
	for _, r := range readExpected(t, "corpus.jsonl") {
		inputs = append(inputs, r.Text)
	}
	for _, pat := range []struct{ name, expr string }{
		{"llama3", Llama3Pattern}, {"qwen", QwenPattern}, {"gpt2", GPT2Pattern}, {"megatron-v1", MegatronTikTokenV1Pattern},
	} {
		t.Run(pat.name, func(t *testing.T) {
			re, err := regexp2.Compile(pat.expr, regexp2.Unicode)
			require.NoError(t, err)
			scan, ok := scannerFor(pat.expr)
			require.True(t, ok)
			for _, s := range inputs {
				if !utf8.ValidString(s) {
					continue
				}
				want := regexSplit(t, re, s)
				var got []string
				scan(s, func(w string) { got = append(got, w) })
				require.Equal(t, want, got, "input %q", s)
			}
		})
	}
}
