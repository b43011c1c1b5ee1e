package tokenizer

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// tiktokenNodeScript runs OpenAI's tiktoken (its Rust core compiled to WASM, npm
// tiktoken@1.0.22) with custom ranks and pattern: encode_ordinary of each string on stdin.
const tiktokenNodeScript = `
const { Tiktoken } = require('tiktoken/lite');
const fs = require('fs');
const [ranksFile, pattern] = process.argv.slice(1);
const texts = JSON.parse(fs.readFileSync(0, 'utf8'));
const enc = new Tiktoken(fs.readFileSync(ranksFile, 'utf8'), {}, pattern);
process.stdout.write(JSON.stringify(texts.map(s => Array.from(enc.encode_ordinary(s)))));
enc.free();
`

// TestAgainstTiktokenNode checks TikToken (rank merging and the hand-written or regexp2
// pre-tokenizers) against tiktoken itself, with cl100k_base's ranks under cl100k's pattern
// and Megatron's --tiktoken-pattern v1 and v2, on the corpus and random strings. It runs
// when TOKENIZERS_NODE_MODULES names a node_modules holding tiktoken@1.0.22.
func TestAgainstTiktokenNode(t *testing.T) {
	nm := os.Getenv("TOKENIZERS_NODE_MODULES")
	if nm == "" || !fileExists(filepath.Join(nm, "tiktoken")) {
		t.Skip("set TOKENIZERS_NODE_MODULES to a node_modules with tiktoken@1.0.22 to compare with tiktoken")
	}
	ranks, _ := cl100kRanks(t)
	type kv struct {
		tok  string
		rank int
	}
	var list []kv
	for k, v := range ranks {
		list = append(list, kv{k, v})
	}
	sort.Slice(list, func(i, j int) bool { return list[i].rank < list[j].rank })
	var sb strings.Builder
	for _, e := range list {
		fmt.Fprintf(&sb, "%s %d\n", base64.StdEncoding.EncodeToString([]byte(e.tok)), e.rank)
	}
	rf := filepath.Join(t.TempDir(), "cl100k_base.tiktoken")
	require.NoError(t, os.WriteFile(rf, []byte(sb.String()), 0o644))

	alphabet := []string{"a", "Z", "Ab", "HELLO", "world", "é", "É", "ß", "ǅ", "ʰ", "中", "ア", "한", "e\u0301", "\u0301",
		"0", "7", "123", "٣", "²", ",", ".", "!", "'", "'s", "'LL", "/", "(", "€", "😀", "_",
		" ", " ", "  ", "\t", "\n", "\r\n", "\u00a0", "\u3000", "\u2028", "\u200b", "\ufeff"}
	rng := rand.New(rand.NewPCG(13, 14))
	var texts []string
	for _, r := range readExpected(t, "corpus.jsonl") {
		texts = append(texts, r.Text)
	}
	for range 800 {
		var b strings.Builder
		for range rng.IntN(30) {
			b.WriteString(alphabet[rng.IntN(len(alphabet))])
		}
		texts = append(texts, b.String())
	}
	in, err := json.Marshal(texts)
	require.NoError(t, err)
	t.Run("gpt2-files", func(t *testing.T) {
		// Megatron's GPT2BPETokenizer from vocab.json + merges.txt against tiktoken's
		// bundled "gpt2" encoding (the same ranks and regex): encode_ordinary, so
		// <|endoftext|> in the text is ordinary text in both.
		vocab, merges, _ := hfVocabAndMerges(t, "gpt2")
		var mb strings.Builder
		mb.WriteString("#version: 0.2\n")
		for _, m := range merges {
			mb.WriteString(m[0] + " " + m[1] + "\n")
		}
		tok, err := NewGPT2(vocab, mb.String())
		require.NoError(t, err)
		script := `const { get_encoding } = require('tiktoken');
const texts = JSON.parse(require('fs').readFileSync(0, 'utf8'));
const enc = get_encoding('gpt2');
process.stdout.write(JSON.stringify(texts.map(s => Array.from(enc.encode_ordinary(s)))));`
		texts := append([]string{"<|endoftext|>", "a<|endoftext|>b"}, texts...)
		in, err := json.Marshal(texts)
		require.NoError(t, err)
		cmd := exec.Command("node", "-e", script)
		cmd.Env = append(os.Environ(), "NODE_PATH="+nm)
		cmd.Stdin = bytes.NewReader(in)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		res, err := cmd.Output()
		require.NoError(t, err, stderr.String())
		var want [][]int
		require.NoError(t, json.Unmarshal(res, &want))
		for i, s := range texts {
			require.Equal(t, want[i], tok.Encode(s), "%+q", s)
		}
		t.Logf("gpt2 files: %d/%d strings match tiktoken", len(texts), len(texts))
	})
	for _, pat := range []struct{ name, expr string }{
		{"cl100k", Llama3Pattern}, {"megatron-v1", MegatronTikTokenV1Pattern}, {"megatron-v2", MegatronTikTokenV2Pattern},
	} {
		t.Run(pat.name, func(t *testing.T) {
			cmd := exec.Command("node", "-e", tiktokenNodeScript, rf, pat.expr)
			cmd.Env = append(os.Environ(), "NODE_PATH="+nm)
			cmd.Stdin = bytes.NewReader(in)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			res, err := cmd.Output()
			require.NoError(t, err, stderr.String())
			var want [][]int
			require.NoError(t, json.Unmarshal(res, &want))
			tok, err := NewTikToken(ranks, pat.expr, 0)
			require.NoError(t, err)
			bad := 0
			for i, s := range texts {
				if got := tok.Encode(s); !equalInts(got, want[i]) {
					if bad < 5 {
						t.Errorf("%s %+q:\n got  %v\n want %v", pat.name, s, got, want[i])
					}
					bad++
				}
			}
			t.Logf("%s: %d/%d strings match tiktoken", pat.name, len(texts)-bad, len(texts))
		})
	}
}
