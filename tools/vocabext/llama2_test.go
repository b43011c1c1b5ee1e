package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/data/tokenizer"
	"github.com/gomegatron/gomegatron/tensor"
)

// TestLlama2Tokenizer extends a tiny model carrying Llama-2's real tokenizer.model (32000
// pieces) with Chinese words, as the Chinese-LLaMA recipe does: old ids stay, corpus lines
// without a new piece encode as python3-sentencepiece encoded them with the original
// model, and (when python3-sentencepiece is installed) the C++ library encodes every
// corpus line with the merged model to the same ids as data/tokenizer.
func TestLlama2Tokenizer(t *testing.T) {
	model := filepath.Join("..", "..", "testdata", "large", "tokenizers", "sentencepiece", "llama2_tokenizer.model")
	if _, err := os.Stat(model); err != nil {
		t.Skip("Llama-2's tokenizer.model is absent: run `make testdata` (scripts/testdata.sh)")
	}
	tc := extendCase{fixture: fixtureOpts{dtype: tensor.BF16, spModel: model, vocab: 32000},
		newPieces: chinesePieces + "今天\n天气很好\n很好\n▁我们\n", init: "mean"}
	in, out, s := runCase(t, tc)
	require.Equal(t, 32000, s.oldVocab)
	assert.Greater(t, len(s.added), 8)
	sp, err := tokenizer.LoadSentencePiece(filepath.Join(out, "tokenizer.model"))
	require.NoError(t, err)
	require.Equal(t, s.newVocab, sp.VocabSize())
	newID := map[string]int{}
	for k, p := range s.added {
		newID[p.Piece] = 32000 + k
	}
	ids := sp.Encode("今天天气很好")
	assert.Contains(t, ids, newID["天气很好"], "%v", ids)

	corpus := loadCorpus(t, filepath.Join("testdata", "llama2-sp.expected.jsonl"))
	unchanged, changed := 0, 0
	for _, c := range corpus {
		norm := "\u2581" + strings.ReplaceAll(c.Text, " ", "\u2581")
		hit := false
		for _, p := range s.added {
			hit = hit || strings.Contains(norm, p.Piece)
		}
		if hit {
			changed++
			continue
		}
		assert.Equal(t, c.IDs, sp.Encode(c.Text), "%q", c.Text)
		unchanged++
	}
	t.Logf("Llama-2 + %d pieces: %d corpus lines unchanged, %d contain a new piece", len(s.added), unchanged, changed)
	assert.Positive(t, changed)
	checkWeights(t, tc, in, out, s)

	if exec.Command("/usr/bin/python3", "-c", "import sentencepiece").Run() != nil {
		t.Log("python3-sentencepiece is absent: C++ cross-check skipped")
		return
	}
	texts := make([]string, len(corpus))
	for i, c := range corpus {
		texts[i] = c.Text
	}
	tb, err := json.Marshal(texts)
	require.NoError(t, err)
	tf := filepath.Join(t.TempDir(), "texts.json")
	require.NoError(t, os.WriteFile(tf, tb, 0o644))
	res, err := exec.Command("/usr/bin/python3", "-c", `
import json, sys, sentencepiece as spm
sp = spm.SentencePieceProcessor(model_file=sys.argv[1])
print(json.dumps([sp.encode(t) for t in json.load(open(sys.argv[2], encoding="utf-8"))]))`,
		filepath.Join(out, "tokenizer.model"), tf).CombinedOutput()
	require.NoError(t, err, "%s", res)
	var want [][]int
	require.NoError(t, json.Unmarshal(res, &want), "%s", res)
	for i, c := range corpus {
		assert.Equal(t, want[i], sp.Encode(c.Text), "%q", c.Text)
	}
}
