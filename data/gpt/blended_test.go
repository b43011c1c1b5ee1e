package gpt

import (
	"testing"

	"github.com/gomegatron/gomegatron/data/indexed"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func blendSources(t *testing.T) []BlendSource {
	var out []BlendSource
	for _, p := range []string{"indexed/a_uint16", "indexed/b_int32"} {
		d, err := indexed.Open("testdata/" + p)
		require.NoError(t, err)
		t.Cleanup(func() { d.Close() })
		out = append(out, BlendSource{Dataset: d, DataPath: p})
	}
	return out
}

// TestBuildBlendedSplitsWeighted follows BlendedMegatronDatasetBuilder for "0.3 a 0.7 b":
// components get ceil(ceil(size*w)*1.005) samples, the blend sum(ceil(size*w)) samples with
// build_blending_indices on the twice-normalised weights.
func TestBuildBlendedSplitsWeighted(t *testing.T) {
	src := blendSources(t)
	cfg := BuildConfig{Split: "80,20,0", Sizes: [3]int{100, 10, 5}, RandomSeed: 1234, SequenceLength: 16,
		AddExtraToken: true, DropLastPartialValidationSequence: true, Dataset: DatasetConfig{Pad: PadTokenIDNone, EOD: 50256}}
	out, err := BuildBlendedSplits(src, []float64{3, 7}, cfg)
	require.NoError(t, err)
	require.NotNil(t, out[Train])
	require.NotNil(t, out[Valid])
	assert.Nil(t, out[Test])
	// ceil(100*0.3)=30, ceil(100*0.7)=70 -> blend of 100; components ask for 31 and 71.
	assert.Equal(t, 100, out[Train].Len())
	w, _ := Normalize([]float64{3, 7})
	w2, _ := Normalize(w)
	want, err := BuildBlendingIndices(w2, 100)
	require.NoError(t, err)
	assert.Equal(t, want, out[Train].Blend)
	for i, n := range []int{31, 71} {
		v, _ := ParseSplit(cfg.Split)
		r := SplitRanges(SplitMatrix(v), src[i].Dataset.NumSequences())[Train]
		ix, err := BuildIndices(src[i].Dataset.SequenceLengths(), r.Arange(), IndexConfig{SequenceLength: 16, NumSamples: n, RandomSeed: 1234, AddExtraToken: true, DropLastPartialSequence: true})
		require.NoError(t, err)
		assert.Equal(t, ix.ShuffleIndex, out[Train].Datasets[i].Indices().ShuffleIndex)
	}
	for _, idx := range []int{0, 1, 50, 99} {
		d, s, err := out[Train].Get(idx)
		require.NoError(t, err)
		assert.Equal(t, int(want.DatasetIndex[idx]), d)
		direct, err := out[Train].Datasets[d].Get(int(want.DatasetSampleIndex[idx]))
		require.NoError(t, err)
		assert.Equal(t, direct, s)
	}
	_, _, err = out[Train].Get(100)
	assert.Error(t, err)

	cfg.Sizes[1] = -1
	_, err = BuildBlendedSplits(src, []float64{3, 7}, cfg)
	assert.ErrorContains(t, err, "valid size")
}

// TestBuildBlendedSplitsUnweighted: without weights, a given size blends in proportion to the
// component lengths (capped at their sum); a None size uses every sample exhaustively.
func TestBuildBlendedSplitsUnweighted(t *testing.T) {
	src := blendSources(t)
	cfg := BuildConfig{Split: "1,0,0", Sizes: [3]int{-1, -1, -1}, RandomSeed: 7, SequenceLength: 16, AddExtraToken: true}
	out, err := BuildBlendedSplits(src, nil, cfg)
	require.NoError(t, err)
	la, lb := out[Train].Datasets[0].Len(), out[Train].Datasets[1].Len()
	assert.Equal(t, la+lb, out[Train].Len())
	want, err := BuildExhaustiveBlendingIndices([]int64{int64(la), int64(lb)})
	require.NoError(t, err)
	assert.Equal(t, want, out[Train].Blend)

	cfg.Sizes[0] = 50
	out, err = BuildBlendedSplits(src, nil, cfg)
	require.NoError(t, err)
	// The components stay one-epoch datasets; only the blend is cut to 50.
	assert.Equal(t, la, out[Train].Datasets[0].Len())
	assert.Equal(t, lb, out[Train].Datasets[1].Len())
	w, _ := Normalize([]float64{float64(la), float64(lb)})
	want, err = BuildBlendingIndices(w, 50)
	require.NoError(t, err)
	assert.Equal(t, want, out[Train].Blend)
}
