package sft

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/data/tokenizer"
)

// TestLlama2MatchesSlowTokenizer builds the samples with the real Llama-2 tokenizer.model
// (Megatron's Llama2Tokenizer; Pai v1's pad "[PAD]" = 32000) and compares them with the
// Python reference running the same model through python3-sentencepiece.
func TestLlama2MatchesSlowTokenizer(t *testing.T) {
	model := filepath.Join("..", "..", "testdata", "large", "tokenizers", "sentencepiece", "llama2_tokenizer.model")
	if _, err := os.Stat(model); err != nil {
		t.Skipf("%s missing: run `make testdata`", model)
	}
	if exec.Command("/usr/bin/python3", "-c", "import sentencepiece").Run() != nil {
		t.Skip("needs /usr/bin/python3 with sentencepiece (apt-get install python3-sentencepiece)")
	}
	tok, err := tokenizer.Build(tokenizer.Config{TokenizerType: "Llama2Tokenizer", TokenizerModel: model})
	require.NoError(t, err)
	for _, l := range []int{64, 128, 512} {
		for _, lines := range []bool{false, true} {
			path := filepath.Join(t.TempDir(), "alpaca.json")
			writeJSONFile(t, path, sftRecords("output"), lines)
			ds, err := Load(path, tok, l)
			require.NoError(t, err)
			assert.Equal(t, 32000, ds.PadID())
			ref := runPyRef(t, path, fmt.Sprint(l), "32000", "sp", model)
			require.Equal(t, len(ref.Samples), ds.Len(), "L=%d", l)
			st := ds.Stats()
			assert.Equal(t, ref.Records, st.Records)
			assert.Equal(t, st.Records-ds.Len()-1, st.TooLong, "L=%d", l)
			for i, want := range ref.Samples {
				in, lab := ds.Example(i)
				assert.Equal(t, want[0], in, "L=%d input_ids of sample %d", l, i)
				assert.Equal(t, want[1], lab, "L=%d labels of sample %d", l, i)
			}
		}
	}
}
