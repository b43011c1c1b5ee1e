package tokenizer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// hfNodeScript encodes and decodes the JSON list of strings on stdin with HF tokenizers
// (the Rust library through its Node binding, the fixtures' reference).
const hfNodeScript = `
const { Tokenizer } = require('tokenizers');
const texts = JSON.parse(require('fs').readFileSync(0, 'utf8'));
(async () => {
  const t = Tokenizer.fromFile(process.argv[1]);
  const out = [];
  for (const s of texts) {
    const ids = Array.from((await t.encode(s, null, { addSpecialTokens: false })).getIds());
    out.push({ ids, decoded: await t.decode(ids, false) });
  }
  process.stdout.write(JSON.stringify(out));
})().catch(e => { console.error(e); process.exit(1); });
`

// TestAgainstHFNode compares every tokenizer.json fixture with HF tokenizers itself on
// random strings over a wide alphabet (letters of many scripts, combining marks, NFD
// Hangul, digits, symbols, emoji, every kind of whitespace, U+017F and U+212A under the
// case-insensitive contractions, added-token text). It runs when TOKENIZERS_NODE_MODULES
// names a node_modules folder holding tokenizers@0.23.2 (scripts/bench/tokenize.sh
// installs one), and skips otherwise.
func TestAgainstHFNode(t *testing.T) {
	nm := os.Getenv("TOKENIZERS_NODE_MODULES")
	if nm == "" {
		t.Skip("set TOKENIZERS_NODE_MODULES to a node_modules with tokenizers@0.23.2 to compare with HF tokenizers")
	}
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("node is not installed")
	}
	alphabet := []string{
		"a", "Z", "é", "ß", "ſ", "K", "Ω", "ж", "中", "文", "𠀀", "ア", "ー", "한", "글", "ㄱ",
		"\u1100\u1161\u11a8", "e\u0301", "\u0301", "\u0308", "\u093f", "क", "ि", "ا", "ل", "א", "ก", "่",
		"0", "7", "123", "٣", "²", "Ⅻ", "½",
		",", ".", "!", "?", "\"", "'", "(", "/", "-", "€", "©", "😀", "👍🏽", "_", "#", "@", "\\", "<", ">", "|",
		"'s", "'S", "'T", "'RE", "'ve", "'M", "'ll", "'D", "'ſ", "'x",
		" ", " ", " ", "  ", "   ", "\t", "\n", "\r", "\r\n", "\v", "\f", "\u00a0", "\u3000", "\u2003", "\u2028",
		"\u2029", "\u0085", "\u200b", "\ufeff", "\u180e", "\u202f", "\u205f", "\x00", "\x1b",
		"▁", "<s>", "</s>", "<|endoftext|>", "<|im_start|>", "<|begin_of_text|>", "<think>", "<0x41>",
	}
	rng := rand.New(rand.NewPCG(9, 10))
	var texts []string
	for k := range 1540 {
		n := rng.IntN(30)
		if k >= 1500 { // long inputs: words past 256 symbols take the heap merge
			n = 200 + rng.IntN(400)
		}
		var b strings.Builder
		for range n {
			a := alphabet[rng.IntN(len(alphabet))]
			if k >= 1520 && strings.TrimSpace(a) == "" {
				a = "x" // no spaces: one long word
			}
			b.WriteString(a)
		}
		texts = append(texts, b.String())
	}
	in, err := json.Marshal(texts)
	require.NoError(t, err)
	// The fixtures' tokenizers, the small ones carrying Falcon's, StarCoder's and BLOOM's
	// pre-tokenizer chains (testdata/pretok), and that BPE under every Split and
	// Punctuation behavior, inverted or not.
	names := []string{"llama2", "llama3", "qwen3", "gpt2", "cl100k", "pretok/falcon", "pretok/starcoder", "pretok/bloom"}
	behaviors := filepath.Join(t.TempDir(), "behaviors")
	require.NoError(t, os.MkdirAll(behaviors, 0o755))
	base, err := os.ReadFile("testdata/pretok/starcoder.tokenizer.json")
	require.NoError(t, err)
	for _, b := range []string{"Isolated", "Removed", "MergedWithPrevious", "MergedWithNext", "Contiguous"} {
		for _, inv := range []bool{false, true} {
			var tj map[string]any
			require.NoError(t, json.Unmarshal(base, &tj))
			tj["pre_tokenizer"] = map[string]any{"type": "Sequence", "pretokenizers": []any{
				map[string]any{"type": "Split", "pattern": map[string]any{"Regex": `[0-9]+|-| `}, "behavior": b, "invert": inv},
				map[string]any{"type": "Punctuation", "behavior": b},
				map[string]any{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}}}
			data, err := json.Marshal(tj)
			require.NoError(t, err)
			name := fmt.Sprintf("%s-invert-%v", b, inv)
			require.NoError(t, os.WriteFile(filepath.Join(behaviors, name+".tokenizer.json"), data, 0o644))
			names = append(names, "behaviors/"+name)
		}
	}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			var path string
			var tok *HF
			chain, small := strings.CutPrefix(name, "pretok/")
			variant, generated := strings.CutPrefix(name, "behaviors/")
			switch {
			case small:
				path = filepath.Join("testdata", "pretok", chain+".tokenizer.json")
			case generated:
				path = filepath.Join(behaviors, variant+".tokenizer.json")
			default:
				path = largeFile(t, filepath.Join("tokenizers", name, "tokenizer.json"))
				tok = loadHFFixture(t, name)
			}
			if tok == nil {
				var err error
				tok, err = LoadHF(path)
				require.NoError(t, err)
			}
			path, err := filepath.Abs(path)
			require.NoError(t, err)
			cmd := exec.Command("node", "-e", hfNodeScript, path)
			cmd.Env = append(os.Environ(), "NODE_PATH="+nm)
			cmd.Stdin = bytes.NewReader(in)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			res, err := cmd.Output()
			require.NoError(t, err, stderr.String())
			var want []struct {
				IDs     []int  `json:"ids"`
				Decoded string `json:"decoded"`
			}
			require.NoError(t, json.Unmarshal(res, &want))
			bad := 0
			for i, s := range texts {
				got := tok.EncodeSpecial(s, false)
				dec := tok.Decode(want[i].IDs)
				if !equalInts(got, want[i].IDs) || dec != want[i].Decoded {
					if bad < 5 {
						t.Errorf("%s: %+q\n got  %v %+q\n want %v %+q", name, s, got, dec, want[i].IDs, want[i].Decoded)
					}
					bad++
				}
			}
			t.Logf("%s: %d/%d random strings match HF tokenizers", name, len(texts)-bad, len(texts))
		})
	}
}
