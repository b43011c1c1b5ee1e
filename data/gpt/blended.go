package gpt

import (
	"fmt"

	"github.com/gomegatron/gomegatron/data/indexed"
)

// BlendedDataset is Megatron's BlendedDataset over GPTDatasets: sample i is sample
// Blend.DatasetSampleIndex[i] of Datasets[Blend.DatasetIndex[i]].
type BlendedDataset struct {
	Datasets []*Dataset
	// Weights are the normalised weights given to build_blending_indices (nil for an
	// exhaustive blend).
	Weights []float64
	Blend   *Blend
}

// Len is the number of blended samples.
func (b *BlendedDataset) Len() int { return b.Blend.Len() }

// Get returns which dataset sample idx comes from and the sample itself.
func (b *BlendedDataset) Get(idx int) (datasetID int, s *Sample, err error) {
	if idx < 0 || idx >= b.Len() {
		return 0, nil, fmt.Errorf("gpt: blended sample %d out of range [0, %d)", idx, b.Len())
	}
	d := int(b.Blend.DatasetIndex[idx])
	s, err = b.Datasets[d].Get(int(b.Blend.DatasetSampleIndex[idx]))
	return d, s, err
}

// NewBlendedDataset builds the blend of datasets, as BlendedDataset.__init__: with weights
// (normalised once more here, as Megatron does) and a size, build_blending_indices; with
// size < 0, the exhaustive blend of every sample of every dataset. Every referenced sample
// must exist in its dataset.
func NewBlendedDataset(datasets []*Dataset, weights []float64, size int) (*BlendedDataset, error) {
	out := &BlendedDataset{Datasets: datasets}
	var err error
	if size < 0 {
		sizes := make([]int64, len(datasets))
		for i, d := range datasets {
			sizes[i] = int64(d.Len())
		}
		out.Blend, err = BuildExhaustiveBlendingIndices(sizes)
	} else {
		if len(weights) != len(datasets) {
			return nil, fmt.Errorf("gpt: blend of %d datasets has %d weights", len(datasets), len(weights))
		}
		if out.Weights, err = Normalize(weights); err != nil {
			return nil, err
		}
		out.Blend, err = BuildBlendingIndices(out.Weights, size)
	}
	if err != nil {
		return nil, err
	}
	var used = make([]int64, len(datasets))
	for i, d := range out.Blend.DatasetIndex {
		used[d] = max(used[d], out.Blend.DatasetSampleIndex[i]+1)
	}
	for d, n := range used {
		if n > int64(datasets[d].Len()) {
			return nil, fmt.Errorf("gpt: the blend needs %d samples of dataset %d, which has %d", n, d, datasets[d].Len())
		}
	}
	return out, nil
}

// BlendSource is one weighted prefix of --data-path.
type BlendSource struct {
	Dataset *indexed.Dataset
	// DataPath is the prefix as given (part of each component's cache key).
	DataPath string
}

// BuildBlendedSplits is BlendedMegatronDatasetBuilder for a multi-prefix --data-path
// ("w1 p1 w2 p2 …"). With weights, every split size must be given: each component is built
// with ceil(ceil(size*w)*(1+0.005)) samples and the blend has sum(ceil(size*w)) samples. Without
// weights (nil), components are built for one epoch (num_samples None) and blended in
// proportion to their lengths, min(size, sum of lengths) samples, or exhaustively when the
// split size is None. cfg.DataPath is ignored (each source
// has its own).
func BuildBlendedSplits(sources []BlendSource, weights []float64, cfg BuildConfig) ([3]*BlendedDataset, error) {
	var out [3]*BlendedDataset
	if len(sources) == 0 {
		return out, fmt.Errorf("gpt: blend: no datasets")
	}
	var target, buffer [][3]int
	if weights != nil {
		if len(weights) != len(sources) {
			return out, fmt.Errorf("gpt: blend: %d weights for %d datasets", len(weights), len(sources))
		}
		var err error
		if weights, err = Normalize(weights); err != nil {
			return out, err
		}
		for s, n := range cfg.Sizes {
			if n < 0 {
				return out, fmt.Errorf("gpt: blend: using weights requires the %s size (client-specified weights require client-specified size)", Split(s))
			}
		}
		target = SizePerSplitPerDataset(weights, cfg.Sizes, 0)
		buffer = SizePerSplitPerDataset(weights, cfg.Sizes, MidLevelDatasetSurplus)
	}
	comps := make([][3]*Dataset, len(sources))
	for i, src := range sources {
		c := cfg
		c.DataPath = src.DataPath
		if buffer != nil {
			c.Sizes = buffer[i]
		} else {
			c.Sizes = [3]int{-1, -1, -1} // Megatron builds unweighted components for one epoch
		}
		var err error
		if comps[i], err = BuildSplits(src.Dataset, c); err != nil {
			return out, fmt.Errorf("gpt: blend component %d (%s): %w", i, src.DataPath, err)
		}
	}
	for s := Train; s <= Test; s++ {
		ds := make([]*Dataset, len(sources))
		missing := 0
		for i := range sources {
			if ds[i] = comps[i][s]; ds[i] == nil {
				missing++
			}
		}
		if missing == len(sources) {
			continue
		}
		if missing > 0 {
			return out, fmt.Errorf("gpt: blend: the %s split is empty in %d of %d datasets", s, missing, len(sources))
		}
		var err error
		switch {
		case weights != nil:
			size := 0
			for i := range sources {
				size += target[i][s]
			}
			out[s], err = NewBlendedDataset(ds, weights, size)
		case cfg.Sizes[s] >= 0:
			lens := make([]float64, len(ds))
			total := 0
			for i, d := range ds {
				lens[i] = float64(d.Len())
				total += d.Len()
			}
			out[s], err = NewBlendedDataset(ds, lens, min(cfg.Sizes[s], total))
		default:
			out[s], err = NewBlendedDataset(ds, nil, -1)
		}
		if err != nil {
			return out, fmt.Errorf("gpt: blend %s split: %w", s, err)
		}
	}
	return out, nil
}
