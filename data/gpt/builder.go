package gpt

import (
	"fmt"

	"github.com/gomegatron/gomegatron/data/indexed"
)

// BuildConfig is what BlendedMegatronDatasetBuilder needs to build the GPTDatasets of one
// data prefix (GPTDatasetConfig with a single-prefix blend).
type BuildConfig struct {
	DataPath string // the prefix as given to --data-path (part of the cache key)
	Split    string // --split, e.g. "969, 30, 1"
	// Sizes are the train/valid/test sample counts; negative means None (one epoch).
	Sizes          [3]int
	RandomSeed     uint32 // --seed
	SequenceLength int    // --seq-length
	// AddExtraToken is add_extra_token_to_sequence (Megatron's default true).
	AddExtraToken bool
	// DropLastPartialValidationSequence is Megatron's default true.
	DropLastPartialValidationSequence bool
	// CacheDir is path_to_cache (--data-cache-path); "" means no cache. Megatron's default
	// location is DefaultCacheDir(prefix, "GPTDataset").
	CacheDir string
	// Tokenizer is the tokenizer's unique_identifiers, part of the cache key.
	Tokenizer OrderedMap
	// Retrieval options (EOD, pad, masks).
	Dataset DatasetConfig
	// LegacySplit cuts the splits with the legacy pipeline's get_train_valid_test_split_
	// (LegacySplitRanges), as Pai-Megatron-Patch's LLamaIdxMapDataset does. Its index caches
	// are kept apart from GPTDataset's (class "LegacyGPTDataset" in the description).
	LegacySplit bool
}

// Description returns the cache description of one split.
func (c *BuildConfig) Description(split Split, v [3]float64) CacheDescription {
	class := "GPTDataset"
	if c.LegacySplit {
		class = "LegacyGPTDataset"
	}
	return CacheDescription{
		Class: class, DatasetPath: c.DataPath, NumSamples: c.Sizes[split], IndexSplit: split,
		RandomSeed: int64(c.RandomSeed), SequenceLength: c.SequenceLength, Split: c.Split,
		SplitMatrix: SplitMatrix(v), Tokenizer: c.Tokenizer,
	}
}

// BuildSplits builds (or loads from CacheDir) the GPTDataset of every split of low, as
// _build_megatron_dataset_splits does; a split whose share is zero is nil. A split whose range
// rounds to no sequences at all (e.g. the test split of '969, 30, 1' on 50 sequences) is nil
// too, where Megatron would abort in build_sample_idx's assert. Built indices are written to
// CacheDir with Megatron's file names when CacheDir is set.
func BuildSplits(low *indexed.Dataset, cfg BuildConfig) ([3]*Dataset, error) {
	var out [3]*Dataset
	v, err := ParseSplit(cfg.Split)
	if err != nil {
		return out, err
	}
	ranges := SplitRanges(SplitMatrix(v), low.NumSequences())
	if cfg.LegacySplit {
		if ranges, err = LegacySplitRanges(cfg.Split, low.NumSequences()); err != nil {
			return out, err
		}
	}
	for s := Train; s <= Test; s++ {
		r := ranges[s]
		if r == nil || r.Len() <= 0 {
			continue
		}
		desc := cfg.Description(s, v)
		var ix *Indices
		if cfg.CacheDir != "" {
			var ok bool
			if ix, ok, err = LoadCache(cfg.CacheDir, desc); err != nil {
				return out, fmt.Errorf("gpt: %s split: %w", s, err)
			}
			if !ok {
				ix = nil
			}
		}
		if ix == nil {
			ic := IndexConfig{
				SequenceLength: cfg.SequenceLength, NumSamples: cfg.Sizes[s], RandomSeed: cfg.RandomSeed,
				AddExtraToken: cfg.AddExtraToken, DropLastPartialSequence: s != Valid || cfg.DropLastPartialValidationSequence,
			}
			if ix, err = BuildIndices(low.SequenceLengths(), r.Arange(), ic); err != nil {
				return out, fmt.Errorf("gpt: %s split (sequences [%d, %d) of %s): %w", s, r.Beg, r.End, low.Prefix(), err)
			}
			if cfg.CacheDir != "" {
				if err := WriteCache(cfg.CacheDir, desc, ix); err != nil {
					return out, err
				}
			}
		}
		dc := cfg.Dataset
		dc.SequenceLength, dc.AddExtraToken = cfg.SequenceLength, cfg.AddExtraToken
		if out[s], err = NewDataset(low, ix, dc); err != nil {
			return out, fmt.Errorf("gpt: %s split: %w", s, err)
		}
	}
	return out, nil
}
