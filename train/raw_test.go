package train

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/layers"
)

// runeTok maps each rune r to 3 + r mod 997; BOS 1, EOS 2, pad 0.
type runeTok struct{}

func (runeTok) Encode(text string) []int {
	var ids []int
	for _, r := range text {
		ids = append(ids, 3+int(r)%997)
	}
	return ids
}
func (runeTok) Decode([]int) string { return "" }
func (runeTok) VocabSize() int      { return 1000 }
func (runeTok) EOD() int            { return 2 }
func (runeTok) BOS() int            { return 1 }
func (runeTok) EOS() int            { return 2 }
func (runeTok) Pad() int            { return 0 }

// paiBatches is the batch code of Pai-Megatron-Patch's three entry points, transcribed:
// pretrain_megatron_llama.py's get_batch (2023), finetune_megatron_llama_withGA.py's
// get_batch, and megatron_patch/data/utils.py's get_batch_on_this_tp_rank_original (the
// mcore scripts, with --eod-mask-loss), over LLamaRawDataset's (input_ids, labels) pairs,
// with Megatron's get_ltor_masks_and_position_ids loss mask. Ignored labels print as -1.
const paiBatches = `
import json, sys
pairs, PAD, EOS = json.loads(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
def ltor_loss_mask(data, eod):
    return [0.0 if x == eod else 1.0 for x in data]
out = {"inputs": [], "labels": [], "mcore": []}
for input_ids, labels_ in pairs:
    tokens = input_ids[:-1]
    labels = input_ids[1:]
    out["inputs"].append([tokens, labels, ltor_loss_mask(tokens, PAD)])
    labels = labels_[1:]
    out["labels"].append([tokens, labels, ltor_loss_mask(labels, PAD)])
    labels = [-100 if x in (EOS, PAD) else x for x in labels_[1:]]
    out["mcore"].append([tokens, labels, ltor_loss_mask(labels, -100)])
for k in out:
    for s in out[k]:
        s[1] = [l if m else -1 for l, m in zip(s[1], s[2])]
print(json.dumps(out))
`

// TestRawLossRules: raw JSON samples give each Pai entry point's tokens, labels and loss mask.
func TestRawLossRules(t *testing.T) {
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		t.Skip("needs /usr/bin/python3 for the reference")
	}
	path := filepath.Join(t.TempDir(), "data.json")
	var recs []map[string]string
	for i := 0; i < 6; i++ {
		recs = append(recs, map[string]string{"instruction": fmt.Sprintf("Say %d", i), "input": map[bool]string{true: "x"}[i%2 == 0],
			"output": fmt.Sprintf("It is %d.", i*37)})
	}
	b, _ := json.Marshal(recs)
	require.NoError(t, os.WriteFile(path, b, 0o644))
	a := &Args{MaxPaddingLength: 250, Dataset: "LLama-Pretrain-Raw"}
	require.Equal(t, 251, a.rawSampleLength())

	rules := map[string]rawLoss{"inputs": lossOnInputs, "labels": lossOnLabels, "mcore": lossOnLabelsNoEOS}
	var pairs [][2][]int32
	sets := map[string]rawSamples{}
	for name, rule := range rules {
		s, err := a.loadRaw(path, runeTok{}, rule)
		require.NoError(t, err)
		require.Equal(t, 6, s.Len())
		sets[name] = s
	}
	for i := 0; i < 6; i++ {
		in, lab := sets["inputs"].d.Example(i)
		require.Len(t, in, 251)
		pairs = append(pairs, [2][]int32{in, lab})
	}
	arg, _ := json.Marshal(pairs)
	raw, err := exec.Command("/usr/bin/python3", "-c", paiBatches, string(arg), "0", "2").Output()
	require.NoError(t, err)
	var want map[string][][3][]float64
	require.NoError(t, json.Unmarshal(raw, &want))
	for name, s := range sets {
		for i := 0; i < s.Len(); i++ {
			got, err := s.Get(i)
			require.NoError(t, err)
			w := want[name][i]
			require.Len(t, got.Tokens, 250)
			for k := range got.Tokens {
				require.Equal(t, w[0][k], float64(got.Tokens[k]), "%s sample %d token %d", name, i, k)
				require.Equal(t, w[2][k], float64(got.LossMask[k]), "%s sample %d loss mask %d", name, i, k)
				if got.LossMask[k] != 0 {
					require.Equal(t, w[1][k], float64(got.Labels[k]), "%s sample %d label %d", name, i, k)
				}
			}
		}
	}
	_, err = sets["labels"].Get(6)
	require.ErrorContains(t, err, "out of range")
}

func TestRawLossRuleFlags(t *testing.T) {
	_, err := (&Args{UseMcoreModels: true}).rawLossRule(true)
	require.ErrorContains(t, err, "--eod-mask-loss")
	r, err := (&Args{UseMcoreModels: true, EODMaskLoss: true}).rawLossRule(false)
	require.NoError(t, err)
	require.Equal(t, lossOnLabelsNoEOS, r)
	r, _ = (&Args{}).rawLossRule(false)
	require.Equal(t, lossOnInputs, r)
	r, _ = (&Args{EODMaskLoss: true}).rawLossRule(true)
	require.Equal(t, lossOnLabels, r)

	dir := t.TempDir()
	file := filepath.Join(dir, "a.json")
	require.NoError(t, os.WriteFile(file, []byte("[]"), 0o644))
	require.True(t, (&Args{TrainDataPath: []string{file}}).rawJSON())
	require.False(t, (&Args{TrainDataPath: []string{filepath.Join(dir, "prefix")}}).rawJSON(), "a .bin/.idx prefix is no file")
	mc := &Args{TrainDataPath: []string{file}, DataPath: []string{"p"}, Dataset: "LLama-Pretrain-Idxmap"}
	require.True(t, mc.rawJSON(), "the legacy entry point tests the training path only")
	mc.UseMcoreModels = true
	require.False(t, mc.rawJSON(), "the mcore one reads --data-path")
	require.True(t, (&Args{TrainDataPath: []string{file}, DataPath: []string{file}, Dataset: "LLama-Pretrain-Raw", UseMcoreModels: true}).rawJSON())
}

// noPadTok is runeTok without a pad token: Pai pads with "[PAD]", id 1000, past the vocabulary.
type noPadTok struct{ runeTok }

func (noPadTok) Pad() int { return -1 }

// TestRawPadOutsideVocabulary: padding past the vocabulary is fed as id 0 where no result
// can see it, and refused where pretraining would train on it.
func TestRawPadOutsideVocabulary(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data.json")
	require.NoError(t, os.WriteFile(path, []byte(`[{"instruction": "Say 1", "output": "It is 1."}]`), 0o644))
	a := &Args{MaxPaddingLength: 250}
	a.MakeVocabSizeDivisibleBy, a.TensorModelParallelSize = 1, 1
	_, err := a.loadRaw(path, noPadTok{}, lossOnInputs)
	require.ErrorContains(t, err, "padded with id 1000")
	require.ErrorContains(t, err, "--extra-vocab-size 1 or more")
	s, err := a.loadRaw(path, noPadTok{}, lossOnLabels)
	require.NoError(t, err)
	in, _ := s.d.Example(0)
	require.Equal(t, int32(1000), in[249], "the sample ends in padding")
	got, err := s.Get(0)
	require.NoError(t, err)
	for k, id := range got.Tokens {
		require.Less(t, id, int64(1000), "token %d", k)
		if in[k] == 1000 {
			require.Zero(t, id)
		}
	}
	a.ExtraVocabSize = 1 // room for the pad: fed as itself
	_, err = a.loadRaw(path, noPadTok{}, lossOnInputs)
	require.NoError(t, err)
	s, err = a.loadRaw(path, noPadTok{}, lossOnLabels)
	require.NoError(t, err)
	got, _ = s.Get(0)
	require.Equal(t, int64(1000), got.Tokens[248])
}

// TestPaiModelVocab: the embedding Pai's build_tokenizer sizes for its tokenizer types:
// tokenizer.vocab_size + --extra-vocab-size, but BLOOM's and StarCoder's fixed sizes.
func TestPaiModelVocab(t *testing.T) {
	tok := runeTok{}
	for typ, want := range map[string]int{
		"LLamaTokenizer":           tok.VocabSize() + 3,
		"FalconTokenizer":          tok.VocabSize() + 3,
		"BloomTokenizerFromHF":     250880,
		"StarcoderTokenizerFromHF": 49152,
		"HuggingFaceTokenizer":     tok.VocabSize() + 3, // Megatron's: padded later
	} {
		a := &Args{PatchTokenizerType: typ, ExtraVocabSize: 3}
		require.Equal(t, want, a.modelVocab(tok), typ)
	}
}

// TestPaiQwenBiases: Pai's two bias flags alone are its Qwen model (QKV bias only); with
// --disable-bias-linear they change nothing; one alone is refused.
func TestPaiQwenBiases(t *testing.T) {
	var c layers.Config
	require.NoError(t, PaiQwenBiases(&c, true, true))
	require.True(t, c.DisableBiasLinear && c.AddQKVBias)
	c = layers.Config{DisableBiasLinear: true}
	require.NoError(t, PaiQwenBiases(&c, true, true))
	require.False(t, c.AddQKVBias, "Pai's Mistral scripts: no biases at all")
	c = layers.Config{}
	require.NoError(t, PaiQwenBiases(&c, false, false))
	require.False(t, c.DisableBiasLinear)
	require.ErrorContains(t, PaiQwenBiases(&c, true, false), "go together")
}
