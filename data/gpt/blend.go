package gpt

import (
	"fmt"
	"math"

	"github.com/gomegatron/gomegatron/data/npy"
)

// MidLevelDatasetSurplus is BlendedMegatronDatasetConfig.mid_level_dataset_surplus: each
// blended component is built with 0.5% more samples than its share.
const MidLevelDatasetSurplus = 0.005

// NumpySum is numpy.sum of a contiguous float64 array: pairwise summation with 8 accumulators
// on blocks of up to 128 elements (numpy's pairwise_sum), which for fewer than 8 elements is a
// plain left-to-right sum from 0.
func NumpySum(a []float64) float64 {
	n := len(a)
	switch {
	case n < 8:
		res := 0.0
		for _, v := range a {
			res += v
		}
		return res
	case n <= 128:
		var r [8]float64
		copy(r[:], a[:8])
		i := 8
		for ; i < n-n%8; i += 8 {
			for j := range r {
				r[j] += a[i+j]
			}
		}
		res := ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
		for ; i < n; i++ {
			res += a[i]
		}
		return res
	}
	n2 := n / 2
	n2 -= n2 % 8
	return NumpySum(a[:n2]) + NumpySum(a[n2:])
}

// Normalize is Megatron's utils.normalize: w / numpy.sum(w) in float64.
func Normalize(w []float64) ([]float64, error) {
	s := NumpySum(w)
	if !(s > 0) || math.IsInf(s, 0) {
		return nil, fmt.Errorf("gpt: blend weights %v must have a positive finite sum", w)
	}
	out := make([]float64, len(w))
	for i, v := range w {
		if v < 0 {
			return nil, fmt.Errorf("gpt: blend weight %d is negative (%v)", i, v)
		}
		out[i] = v / s
	}
	return out, nil
}

// SizePerSplitPerDataset is _get_size_per_split_per_dataset:
// sizes[d][s] = int(ceil(ceil(target[s] * weight[d]) * (1 + surplus))). The builder calls it
// with surplus 0 (the samples each dataset contributes to the blend) and with
// MidLevelDatasetSurplus (the samples each component GPTDataset is built with).
func SizePerSplitPerDataset(weights []float64, targets [3]int, surplus float64) [][3]int {
	out := make([][3]int, len(weights))
	for d, w := range weights {
		for s, t := range targets {
			out[d][s] = int(math.Ceil(math.Ceil(float64(float64(t)*w)) * (1 + surplus)))
		}
	}
	return out
}

// Blend is BlendedDataset's index: sample i of the blend is sample DatasetSampleIndex[i] of
// dataset DatasetIndex[i].
type Blend struct {
	DatasetIndex       []int16
	DatasetSampleIndex []int64
}

// Len is the number of blended samples.
func (b *Blend) Len() int { return len(b.DatasetIndex) }

// Marshal returns the two .npy images BlendedDataset caches (dataset_index int16,
// dataset_sample_index int64).
func (b *Blend) Marshal() (datasetIndex, datasetSampleIndex []byte, err error) {
	if datasetIndex, err = npy.Marshal(b.DatasetIndex); err != nil {
		return nil, nil, err
	}
	datasetSampleIndex, err = npy.Marshal(b.DatasetSampleIndex)
	return datasetIndex, datasetSampleIndex, err
}

// BuildBlendingIndices is helpers.cpp build_blending_indices: for each blended sample i,
// with x = max(i, 1), pick the dataset d maximising weights[d]*x - count[d] (double precision,
// strict >, so ties go to the lowest d), record (d, count[d]) and increment count[d].
// weights should already be normalised (BlendedDataset normalises the builder's normalised
// weights once more).
func BuildBlendingIndices(weights []float64, size int) (*Blend, error) {
	if len(weights) == 0 || len(weights) > math.MaxInt16 {
		return nil, fmt.Errorf("gpt: blending needs 1..%d datasets, got %d", math.MaxInt16, len(weights))
	}
	if size < 0 {
		return nil, fmt.Errorf("gpt: blend size %d is negative", size)
	}
	b := &Blend{DatasetIndex: make([]int16, size), DatasetSampleIndex: make([]int64, size)}
	count := make([]int64, len(weights))
	for i := range size {
		x := max(float64(i), 1.0)
		best := 0
		// float64(...) forbids fusing the product into an FMA, as the C++ (x86-64, no
		// -march) computes it with a rounded product.
		maxErr := float64(weights[0]*x) - float64(count[0])
		for d := 1; d < len(weights); d++ {
			if e := float64(weights[d]*x) - float64(count[d]); e > maxErr {
				maxErr, best = e, d
			}
		}
		b.DatasetIndex[i] = int16(best)
		b.DatasetSampleIndex[i] = count[best]
		count[best]++
	}
	return b, nil
}

// BuildExhaustiveBlendingIndices is helpers.cpp build_exhaustive_blending_indices, used when
// the blend has no size: every sample of every dataset is used once. Weights are
// sizes[d]/total; at each step the dataset with the largest weights[d]*max(i,1) - count[d] among
// those not yet used up wins (lowest id on ties). A dataset of size 0 would never be used up
// (the C++ then runs past its buffers), so it is an error here.
func BuildExhaustiveBlendingIndices(sizes []int64) (*Blend, error) {
	if len(sizes) == 0 || len(sizes) > math.MaxInt16 {
		return nil, fmt.Errorf("gpt: blending needs 1..%d datasets, got %d", math.MaxInt16, len(sizes))
	}
	var total int64
	for d, s := range sizes {
		if s <= 0 {
			return nil, fmt.Errorf("gpt: exhaustive blending: dataset %d has %d samples, want at least 1", d, s)
		}
		total += s
	}
	weights := make([]float64, len(sizes))
	for d, s := range sizes {
		weights[d] = float64(s) / float64(total)
	}
	b := &Blend{DatasetIndex: make([]int16, total), DatasetSampleIndex: make([]int64, total)}
	count := make([]int64, len(sizes))
	unspent := make([]int, len(sizes)) // ascending, as the C++ std::set iterates
	for d := range unspent {
		unspent[d] = d
	}
	for i := int64(0); len(unspent) > 0; i++ {
		x := max(float64(i), 1.0)
		best, at := -1, -1
		maxErr := -math.MaxFloat64
		for k, d := range unspent {
			if e := float64(weights[d]*x) - float64(count[d]); e > maxErr {
				maxErr, best, at = e, d, k
			}
		}
		b.DatasetIndex[i] = int16(best)
		b.DatasetSampleIndex[i] = count[best]
		count[best]++
		if count[best] == sizes[best] {
			unspent = append(unspent[:at], unspent[at+1:]...)
		}
	}
	return b, nil
}
