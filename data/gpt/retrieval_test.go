package gpt

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/gomegatron/gomegatron/data/indexed"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestBuildSampleIndexByHand covers paths the Megatron fixtures (all X = 1, drop-last except
// one) do not: X = 0, and a non-drop-last partial sample with X = 0. Expected rows are worked
// out by hand from helpers.cpp's loop (README section 2 step 6) for lengths [3, 5].
func TestBuildSampleIndexByHand(t *testing.T) {
	lengths := []int32{3, 5}
	for _, c := range []struct {
		name     string
		s, x     int
		dropLast bool
		want     []int64
	}{
		{"X=0 drop-last", 4, 0, true, []int64{0, 0, 1, 1, 1, 5}},
		{"X=1 drop-last", 4, 1, true, []int64{0, 0, 1, 1}},
		{"X=0 keep partial", 3, 0, false, []int64{0, 0, 0, 3, 1, 3, 1, 5}},
		{"X=1 keep partial", 3, 1, false, []int64{0, 0, 1, 0, 1, 3, 1, 4}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := BuildSampleIndex(lengths, []int32{0, 1}, c.s, 1, 8, c.dropLast, c.x)
			require.NoError(t, err)
			assert.Equal(t, c.want, got)
		})
	}
}

// TestRetrievalWithoutExtraToken decodes samples with X = 0 from a small dataset written
// here: labels are text rolled by one with the last label = pad, and the padded tail of a
// partial sample has loss_mask 0 and id 0.
func TestRetrievalWithoutExtraToken(t *testing.T) {
	prefix := filepath.Join(t.TempDir(), "d")
	b, err := indexed.NewBuilder(indexed.BinPath(prefix), indexed.Uint16)
	require.NoError(t, err)
	require.NoError(t, b.AddDocument([]int32{10, 11, 12}, []int{3}))
	require.NoError(t, b.AddDocument([]int32{20, 21, 22, 23, 24}, []int{5}))
	require.NoError(t, b.Finalize(indexed.IdxPath(prefix)))
	low, err := indexed.Open(prefix)
	require.NoError(t, err)
	defer low.Close()
	sampleIndex, err := BuildSampleIndex(low.SequenceLengths(), []int32{0, 1}, 3, 1, 8, false, 0)
	require.NoError(t, err)
	ix := &Indices{DocumentIndex: []int32{0, 1}, SampleIndex: sampleIndex, ShuffleIndex: []int64{2, 0, 1}}
	ds, err := NewDataset(low, ix, DatasetConfig{SequenceLength: 3, Pad: PadTokenIDNone, EOD: 24})
	require.NoError(t, err)
	require.Equal(t, 3, ds.Len())
	want := []struct {
		text, tokens, labels []int64
		loss                 []float32
	}{
		{[]int64{23, 24, -1}, []int64{23, 24, 0}, []int64{24, 0, 0}, []float32{1, 0, 0}},
		{[]int64{10, 11, 12}, []int64{10, 11, 12}, []int64{11, 12, 0}, []float32{1, 1, 0}},
		{[]int64{20, 21, 22}, []int64{20, 21, 22}, []int64{21, 22, 0}, []float32{1, 1, 0}},
	}
	for i, w := range want {
		text, _, err := ds.Text(i)
		require.NoError(t, err)
		assert.Equal(t, w.text, text)
		s, err := ds.Get(i)
		require.NoError(t, err)
		assert.Equal(t, w.tokens, s.Tokens)
		assert.Equal(t, w.labels, s.Labels)
		assert.Equal(t, w.loss, s.LossMask)
	}
	_, err = ds.Get(3)
	assert.Error(t, err)
	pad, err := ds.PaddingSample()
	require.NoError(t, err)
	assert.Equal(t, want[0].tokens, pad.Tokens)
	assert.Equal(t, []float32{0, 0, 0}, pad.LossMask)
}

// TestLTRMasks checks eod loss masking, position-id resets and the reset attention mask on a
// sequence with EOD (0) at positions 1 and 4: documents [0,1], [2,3,4], [5].
func TestLTRMasks(t *testing.T) {
	tokens := []int64{5, 0, 7, 8, 0, 9}
	loss, pos, mask := LTRMasksAndPositionIDs(tokens, 0, true, true, true, true)
	assert.Equal(t, []float32{1, 0, 1, 1, 0, 1}, loss)
	assert.Equal(t, []int64{0, 1, 0, 1, 2, 0}, pos)
	doc := []int{0, 0, 1, 1, 1, 2}
	for r := range 6 {
		for c := range 6 {
			visible := c <= r && doc[c] == doc[r]
			assert.Equal(t, !visible, mask[r*6+c], "mask[%d,%d]", r, c)
		}
	}
	loss, pos, mask = LTRMasksAndPositionIDs(tokens, 0, false, false, false, true)
	assert.Equal(t, []float32{1, 1, 1, 1, 1, 1}, loss)
	assert.Equal(t, []int64{0, 1, 2, 3, 4, 5}, pos)
	for r := range 6 {
		for c := range 6 {
			assert.Equal(t, c > r, mask[r*6+c])
		}
	}
	_, _, mask = LTRMasksAndPositionIDs(tokens, 0, true, false, false, false)
	assert.Nil(t, mask)
}

func TestPretrainingSampler(t *testing.T) {
	collect := func(s *PretrainingSampler) [][]int {
		var out [][]int
		for b := range s.Batches {
			out = append(out, b)
		}
		return out
	}
	for _, c := range []struct {
		total, consumed, mbs, rank, dp int
		dropLast                       bool
		want                           [][]int
	}{
		{10, 0, 2, 0, 2, true, [][]int{{0, 1}, {4, 5}}},
		{10, 0, 2, 1, 2, true, [][]int{{2, 3}, {6, 7}}},
		{10, 0, 2, 0, 2, false, [][]int{{0, 1}, {4, 5}, {8, 9}}},
		{10, 0, 2, 1, 2, false, [][]int{{2, 3}, {6, 7}, {}}},
		{10, 3, 2, 1, 2, true, [][]int{{5, 6}}},
		{10, 3, 1, 0, 1, true, [][]int{{3}, {4}, {5}, {6}, {7}, {8}, {9}}},
	} {
		s, err := NewPretrainingSampler(c.total, c.consumed, c.mbs, c.rank, c.dp, c.dropLast)
		require.NoError(t, err)
		assert.Equal(t, c.want, collect(s), "%+v", c)
	}
	for _, bad := range [][5]int{{0, 0, 1, 0, 1}, {5, 5, 1, 0, 1}, {5, 0, 0, 0, 1}, {5, 0, 1, 0, 0}, {5, 0, 1, 2, 2}} {
		_, err := NewPretrainingSampler(bad[0], bad[1], bad[2], bad[3], bad[4], true)
		assert.Error(t, err, "%v", bad)
	}
}

func TestBuildIndicesErrors(t *testing.T) {
	lengths := []int32{3, 5, 0}
	cfg := IndexConfig{SequenceLength: 4, NumSamples: 10, AddExtraToken: true, DropLastPartialSequence: true}
	_, err := BuildIndices(lengths, []int32{0, 3}, cfg)
	assert.ErrorContains(t, err, "sequence 3")
	_, err = BuildIndices(lengths, []int32{2}, cfg)
	assert.ErrorContains(t, err, "tokens")
	_, err = BuildIndices(lengths, []int32{}, cfg)
	assert.Error(t, err)
	bad := cfg
	bad.SequenceLength = 1
	_, err = BuildIndices(lengths, []int32{0, 1}, bad)
	assert.ErrorContains(t, err, "--seq-length")
}

// TestBuildSplitsWithCache runs the whole builder on the fixture dataset with the train size of
// a_s16_seed1234_split80_20_train, checks the train indices and that a second run loads
// Megatron-named cache files instead of rebuilding.
func TestBuildSplitsWithCache(t *testing.T) {
	fdir := "testdata/gpt/a_s16_seed1234_split80_20_train"
	low, err := indexed.Open("testdata/indexed/a_uint16")
	require.NoError(t, err)
	defer low.Close()
	cache := filepath.Join(t.TempDir(), "cache")
	cfg := BuildConfig{
		DataPath: "indexed/a_uint16", Split: "80,20,0", Sizes: [3]int{150, -1, -1}, RandomSeed: 1234,
		SequenceLength: 16, AddExtraToken: true, DropLastPartialValidationSequence: true, CacheDir: cache,
		Tokenizer: OrderedMap{{"class", "megatron.core.tokenizers.text.libraries.null_tokenizer.NullTokenizer"},
			{"vocab_size", 50257}, {"eod_id", 50256}, {"pad_id", -1}},
		Dataset: DatasetConfig{Pad: PadTokenIDNone, EOD: 50256},
	}
	ds, err := BuildSplits(low, cfg)
	require.NoError(t, err)
	require.NotNil(t, ds[Train])
	require.NotNil(t, ds[Valid])
	assert.Nil(t, ds[Test])
	var f *gptFixture
	for _, g := range loadGPTFixtures(t) {
		if g.Dir == fdir {
			f = g
		}
	}
	require.NotNil(t, f)
	for kind, name := range f.CacheNames {
		got, err := os.ReadFile(filepath.Join(cache, name))
		require.NoError(t, err, "Megatron's cache file name %s", name)
		want, err := os.ReadFile(filepath.Join(fdir, kind+".npy"))
		require.NoError(t, err)
		assert.Equal(t, want, got, kind)
	}
	// Corrupt nothing, just prove the second build reads the cache: replace the train shuffle
	// index by a reversed one and expect it back.
	ix := ds[Train].Indices()
	for i, j := 0, len(ix.ShuffleIndex)-1; i < j; i, j = i+1, j-1 {
		ix.ShuffleIndex[i], ix.ShuffleIndex[j] = ix.ShuffleIndex[j], ix.ShuffleIndex[i]
	}
	v, _ := ParseSplit(cfg.Split)
	require.NoError(t, WriteCache(cache, cfg.Description(Train, v), ix))
	again, err := BuildSplits(low, cfg)
	require.NoError(t, err)
	assert.Equal(t, ix.ShuffleIndex, again[Train].Indices().ShuffleIndex)
}

func TestBuildSplitsEmptyRange(t *testing.T) {
	low, err := indexed.Open("testdata/indexed/a_uint16")
	require.NoError(t, err)
	defer low.Close()
	ds, err := BuildSplits(low, BuildConfig{DataPath: "a", Split: "969, 30, 1", Sizes: [3]int{-1, -1, -1}, RandomSeed: 1, SequenceLength: 16, AddExtraToken: true})
	require.NoError(t, err)
	// 50 sequences: train [0, 48), valid [48, 50), test [50, 50) is empty.
	require.NotNil(t, ds[Train])
	require.NotNil(t, ds[Valid])
	assert.Nil(t, ds[Test])
}

// TestSeparateFinalEpochBoundary pins the rule separate = final < int(0.80 * per) (strict, and
// 0.80 exactly) at its boundary, which the fixtures only bracket loosely: with E = 2,
// sans = per, so N = per + int(0.8*per) is not separate and one sample fewer is.
func TestSeparateFinalEpochBoundary(t *testing.T) {
	lengths := []int32{100, 37, 250, 64, 1, 90} // T = 542
	docs := Range{0, len(lengths)}.Arange()
	const s = 8
	per := (542 - 1) / s // 67
	th := int(0.8 * float64(per))
	for _, c := range []struct {
		n        int
		separate bool
	}{{per + th, false}, {per + th - 1, true}, {per + 1, true}} {
		ix, err := BuildIndices(lengths, docs, IndexConfig{SequenceLength: s, NumSamples: c.n, RandomSeed: 3, AddExtraToken: true, DropLastPartialSequence: true})
		require.NoError(t, err)
		assert.Equal(t, 2, ix.NumEpochs, "N=%d", c.n)
		assert.Equal(t, c.separate, ix.SeparateFinalEpoch, "N=%d (threshold %d)", c.n, th)
	}
}

// TestPartialSampleCountIsFloat32 checks that the non-drop-last sample count is computed in
// single precision as helpers.cpp does: E*T - X = 2**24 + 1 rounds to 2**24 in float32, so
// ceil((2**24 + 1) / 4096) gives 4096 samples, not the exact 4097.
func TestPartialSampleCountIsFloat32(t *testing.T) {
	lengths := []int32{1<<24 + 2}
	si, err := BuildSampleIndex(lengths, []int32{0}, 4096, 1, 1<<24+2, false, 1)
	require.NoError(t, err)
	assert.Equal(t, 4096+1, len(si)/2)
}
