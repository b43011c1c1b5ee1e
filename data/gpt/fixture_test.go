package gpt

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gomegatron/gomegatron/data/indexed"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// gptFixture is testdata/gpt/<name>/config.json (fixture README section 2).
type gptFixture struct {
	Dir     string
	Dataset string `json:"dataset"`
	Config  struct {
		RandomSeed           uint32            `json:"random_seed"`
		SequenceLength       int               `json:"sequence_length"`
		Split                string            `json:"split"`
		SplitMatrix          []json.RawMessage `json:"split_matrix"`
		SizesPassedToBuilder []*int            `json:"sizes_passed_to_builder"`
		IndexSplit           string            `json:"index_split"`
		NumSamplesRequested  *int              `json:"num_samples_requested"`
		AddExtraToken        bool              `json:"add_extra_token_to_sequence"`
		DropLastValidation   bool              `json:"drop_last_partial_validation_sequence"`
		DropLastEffective    bool              `json:"drop_last_partial_sequence_effective"`
		Tokenizer            json.RawMessage   `json:"tokenizer"`
		PadTokenIDUsed       int64             `json:"pad_token_id_used"`
	} `json:"config"`
	IndicesRange [2]int `json:"indices_range"`
	Derived      struct {
		NumTokensPerEpoch        int64 `json:"num_tokens_per_epoch"`
		NumEpochs                int   `json:"num_epochs"`
		SeparateFinalEpoch       bool  `json:"separate_final_epoch"`
		NumSamplesSansFinalEpoch int64 `json:"num_samples_sans_final_epoch"`
		NumSamplesFromFinalEpoch int64 `json:"num_samples_from_final_epoch"`
		NumSamplesPerEpoch       int64 `json:"num_samples_per_epoch"`
	} `json:"derived"`
	LenDataset  int               `json:"len_dataset"`
	NpySHA      map[string]string `json:"npy_sha256"`
	CacheNames  map[string]string `json:"megatron_cache_file_names"`
	Description string            `json:"megatron_cache_description_txt"`
	DescMD5     string            `json:"megatron_cache_description_md5"`
	Samples     []struct {
		Idx          int       `json:"idx"`
		ShuffleIdx   int64     `json:"shuffle_index[idx]"`
		RowBegin     [2]int64  `json:"sample_index_row_begin"`
		RowEnd       [2]int64  `json:"sample_index_row_end"`
		DocumentIDs  []int64   `json:"document_ids"`
		DocumentLens []int     `json:"document_lengths"`
		Text         []int64   `json:"text"`
		Tokens       []int64   `json:"tokens"`
		Labels       []int64   `json:"labels"`
		LossMask     []float32 `json:"loss_mask"`
	} `json:"samples"`
}

func loadGPTFixtures(t *testing.T) []*gptFixture {
	t.Helper()
	dirs, err := filepath.Glob("testdata/gpt/*")
	require.NoError(t, err)
	require.NotEmpty(t, dirs)
	var out []*gptFixture
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "config.json"))
		require.NoError(t, err)
		f := &gptFixture{Dir: d}
		require.NoError(t, json.Unmarshal(b, f))
		out = append(out, f)
	}
	return out
}

func sha(t *testing.T, b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func openFixtureDataset(t *testing.T, f *gptFixture) *indexed.Dataset {
	d, err := indexed.Open(filepath.Join("testdata", f.Dataset))
	require.NoError(t, err)
	t.Cleanup(func() { d.Close() })
	return d
}

func (f *gptFixture) indexConfig() IndexConfig {
	n := -1
	if f.Config.NumSamplesRequested != nil {
		n = *f.Config.NumSamplesRequested
	}
	return IndexConfig{
		SequenceLength: f.Config.SequenceLength, NumSamples: n, RandomSeed: f.Config.RandomSeed,
		AddExtraToken: f.Config.AddExtraToken, DropLastPartialSequence: f.Config.DropLastEffective,
	}
}

// TestBuildIndicesMatchesMegatron rebuilds every GPTDataset fixture from its config: split
// range, derived epoch quantities and the three .npy files byte for byte.
func TestBuildIndicesMatchesMegatron(t *testing.T) {
	for _, f := range loadGPTFixtures(t) {
		t.Run(filepath.Base(f.Dir), func(t *testing.T) {
			d := openFixtureDataset(t, f)
			v, err := ParseSplit(f.Config.Split)
			require.NoError(t, err)
			split, err := ParseSplitName(f.Config.IndexSplit)
			require.NoError(t, err)
			r := SplitRanges(SplitMatrix(v), d.NumSequences())[split]
			require.NotNil(t, r)
			assert.Equal(t, f.IndicesRange, [2]int{r.Beg, r.End})

			ix, err := BuildIndices(d.SequenceLengths(), r.Arange(), f.indexConfig())
			require.NoError(t, err)
			assert.Equal(t, f.Derived.NumTokensPerEpoch, ix.TokensPerEpoch)
			assert.Equal(t, f.Derived.NumEpochs, ix.NumEpochs)
			assert.Equal(t, f.Derived.SeparateFinalEpoch, ix.SeparateFinalEpoch)
			assert.Equal(t, f.Derived.NumSamplesSansFinalEpoch, ix.NumSamplesSansFinalEpoch)
			assert.Equal(t, f.Derived.NumSamplesFromFinalEpoch, ix.NumSamplesFromFinalEpoch)
			assert.Equal(t, f.Derived.NumSamplesPerEpoch, ix.NumSamplesPerEpoch)
			assert.Equal(t, f.LenDataset, ix.Len())

			files, err := ix.Marshal()
			require.NoError(t, err)
			for _, kind := range []string{"document_index", "sample_index", "shuffle_index"} {
				want, err := os.ReadFile(filepath.Join(f.Dir, kind+".npy"))
				require.NoError(t, err)
				assert.Equal(t, f.NpySHA[kind], sha(t, files[kind]), kind)
				assert.Equal(t, want, files[kind], kind)
			}
		})
	}
}

// TestSamplesMatchMegatron decodes the recorded samples with Dataset.Get and compares text,
// tokens, labels, loss mask and the sample-index rows with GPTDataset.__getitem__'s output.
func TestSamplesMatchMegatron(t *testing.T) {
	for _, f := range loadGPTFixtures(t) {
		t.Run(filepath.Base(f.Dir), func(t *testing.T) {
			d := openFixtureDataset(t, f)
			ix, err := LoadIndices(filepath.Join(f.Dir, "document_index.npy"), filepath.Join(f.Dir, "sample_index.npy"), filepath.Join(f.Dir, "shuffle_index.npy"))
			require.NoError(t, err)
			ds, err := NewDataset(d, ix, DatasetConfig{
				SequenceLength: f.Config.SequenceLength, AddExtraToken: f.Config.AddExtraToken,
				Pad: f.Config.PadTokenIDUsed, EOD: 50256,
			})
			require.NoError(t, err)
			require.Equal(t, f.LenDataset, ds.Len())
			require.NotEmpty(t, f.Samples)
			for _, s := range f.Samples {
				assert.Equal(t, s.ShuffleIdx, ix.ShuffleIndex[s.Idx])
				k := s.ShuffleIdx
				assert.Equal(t, s.RowBegin, [2]int64{ix.SampleIndex[2*k], ix.SampleIndex[2*k+1]})
				assert.Equal(t, s.RowEnd, [2]int64{ix.SampleIndex[2*k+2], ix.SampleIndex[2*k+3]})
				text, docIDs, err := ds.Text(s.Idx)
				require.NoError(t, err)
				assert.Equal(t, s.Text, text, "text of sample %d", s.Idx)
				assert.Equal(t, s.DocumentIDs, docIDs)
				got, err := ds.Get(s.Idx)
				require.NoError(t, err)
				assert.Equal(t, s.Tokens, got.Tokens, "tokens of sample %d", s.Idx)
				assert.Equal(t, s.Labels, got.Labels, "labels of sample %d", s.Idx)
				assert.Equal(t, s.LossMask, got.LossMask, "loss_mask of sample %d", s.Idx)
				require.Len(t, got.PositionIDs, f.Config.SequenceLength)
				for i, p := range got.PositionIDs {
					assert.Equal(t, int64(i), p)
				}
				assert.Nil(t, got.AttentionMask)
			}
		})
	}
}

// TestCacheDescriptionMatchesMegatron renders Megatron's description.txt and its md5 for every
// fixture, giving the cache files Megatron's exact names.
func TestCacheDescriptionMatchesMegatron(t *testing.T) {
	for _, f := range loadGPTFixtures(t) {
		t.Run(filepath.Base(f.Dir), func(t *testing.T) {
			v, err := ParseSplit(f.Config.Split)
			require.NoError(t, err)
			split, err := ParseSplitName(f.Config.IndexSplit)
			require.NoError(t, err)
			var tok OrderedMap
			require.NoError(t, json.Unmarshal(f.Config.Tokenizer, &tok))
			n := -1
			if f.Config.NumSamplesRequested != nil {
				n = *f.Config.NumSamplesRequested
			}
			desc := CacheDescription{
				Class: "GPTDataset", DatasetPath: f.Dataset, NumSamples: n, IndexSplit: split,
				RandomSeed: int64(f.Config.RandomSeed), SequenceLength: f.Config.SequenceLength,
				Split: f.Config.Split, SplitMatrix: SplitMatrix(v), Tokenizer: tok,
			}
			text := desc.Text()
			assert.Equal(t, f.Description, text)
			assert.Equal(t, f.DescMD5, desc.Hash())
			for kind, name := range f.CacheNames {
				assert.Equal(t, name, filepath.Base(desc.Path("", strings.TrimSuffix(kind, ".npy")+".npy")))
			}
		})
	}
}

func TestLoadIndicesTypes(t *testing.T) {
	f := loadGPTFixtures(t)[0]
	ix, err := LoadIndices(filepath.Join(f.Dir, "document_index.npy"), filepath.Join(f.Dir, "sample_index.npy"), filepath.Join(f.Dir, "shuffle_index.npy"))
	require.NoError(t, err)
	assert.False(t, ix.SampleIndexInt64)
	assert.False(t, ix.ShuffleIndexInt64)
	_, err = LoadIndices(filepath.Join(f.Dir, "sample_index.npy"), filepath.Join(f.Dir, "sample_index.npy"), filepath.Join(f.Dir, "shuffle_index.npy"))
	assert.ErrorContains(t, err, "document_index")
	_, err = LoadIndices(filepath.Join(f.Dir, "document_index.npy"), filepath.Join(f.Dir, "document_index.npy"), filepath.Join(f.Dir, "shuffle_index.npy"))
	assert.ErrorContains(t, err, "sample_index")
}
