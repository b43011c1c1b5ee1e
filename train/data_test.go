package train

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/data/gpt"
	"github.com/gomegatron/gomegatron/data/indexed"
)

// TestToBatchDocuments: with --reset-position-ids and --reset-attention-mask, a microbatch
// carries get_ltor_masks_and_position_ids's positions and each token's document start
// (the first token after the previous EOD), per sample; without them, neither.
func TestToBatchDocuments(t *testing.T) {
	const eod = 9
	ss := []*gpt.Sample{
		{Tokens: []int64{1, 2, eod, 3, 4, eod, eod, 5}, Labels: make([]int64, 8), LossMask: make([]float32, 8)},
		{Tokens: []int64{eod, 6, 7, 8, 1, 2, 3, 4}, Labels: make([]int64, 8), LossMask: make([]float32, 8)},
	}
	plain := toBatch(ss, documents{eod: eod})
	require.Nil(t, plain.Positions)
	require.Nil(t, plain.DocStart)
	bt := toBatch(ss, documents{eod: eod, resetPos: true, resetAttn: true})
	require.Equal(t, []int32{0, 0, 0, 3, 3, 3, 6, 7, 0, 1, 1, 1, 1, 1, 1, 1}, bt.DocStart)
	for k, s := range ss {
		_, pos, _ := gpt.LTRMasksAndPositionIDs(s.Tokens, eod, true, true, false, false)
		require.Equal(t, pos, bt.Positions[k*8:(k+1)*8], "sample %d: Megatron's position ids", k)
	}
	onlyPos := toBatch(ss, documents{eod: eod, resetPos: true})
	require.Equal(t, bt.Positions, onlyPos.Positions)
	require.Nil(t, onlyPos.DocStart)
}

// writeCorpus writes an indexed dataset of n documents of varying length and returns them.
func writeCorpus(t *testing.T, prefix string, n int, seed uint64) [][]int32 {
	b, err := indexed.NewBuilder(prefix+".bin", indexed.Uint16)
	require.NoError(t, err)
	var docs [][]int32
	for d := 0; d < n; d++ {
		doc := make([]int32, 5+int((uint64(d)*7+seed)%23))
		for i := range doc {
			doc[i] = int32((uint64(i)*13 + uint64(d)*5 + seed) % 200)
		}
		require.NoError(t, b.AddItem(doc))
		b.EndDocument()
		docs = append(docs, doc)
	}
	require.NoError(t, b.Finalize(prefix+".idx"))
	return docs
}

// TestPerSplitBlends: a blend given to --train-data-path (or --valid-data-path) is Megatron's
// blend_per_split: the split is the whole of each component, so its samples are those of the
// same blend given to --data-path with a split that gives that split everything.
func TestPerSplitBlends(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	writeCorpus(t, a, 40, 1)
	writeCorpus(t, b, 25, 2)
	blend := []string{"0.3", a, "0.7", b}
	sizes := [3]int{60, 24, 8}
	base := Args{Seed: 1234}
	base.SeqLength = 16
	for i, flag := range []string{"--train-data-path", "--valid-data-path"} {
		perSplit := base
		if i == 0 {
			perSplit.TrainDataPath = blend
		} else {
			perSplit.TrainDataPath, perSplit.ValidDataPath = []string{a}, blend
		}
		got, err := perSplit.buildSplits(sizes, gpt.DatasetConfig{EOD: -1})
		require.NoError(t, err, flag)
		whole := base
		whole.DataPath, whole.Split = blend, [2]string{"1,0,0", "0,1,0"}[i]
		want, err := whole.buildSplits([3]int{[2]int{sizes[0], 0}[i], [2]int{0, sizes[1]}[i], 0}, gpt.DatasetConfig{EOD: -1})
		require.NoError(t, err, flag)
		require.NotNil(t, got[i], flag)
		require.Equal(t, want[i].Len(), got[i].Len(), flag)
		for k := 0; k < got[i].Len(); k++ {
			g, err := got[i].Get(k)
			require.NoError(t, err)
			w, err := want[i].Get(k)
			require.NoError(t, err)
			require.Equal(t, w.Tokens, g.Tokens, "%s sample %d", flag, k)
		}
	}
	bad := base
	bad.TrainDataPath = []string{"0.3", a, "0.7"}
	_, err := bad.buildSplits(sizes, gpt.DatasetConfig{EOD: -1})
	require.ErrorContains(t, err, "--train-data-path: weights and prefixes must alternate")
	bad.TrainDataPath = []string{"0.5", a, "0.5", b + "x"}
	_, err = bad.buildSplits(sizes, gpt.DatasetConfig{EOD: -1})
	require.ErrorContains(t, err, "--train-data-path: ")
}
