// Package gpt builds Megatron-LM's GPTDataset exactly: the train/valid/test split of a
// low-level indexed dataset, the document, sample and shuffle indices
// (megatron/core/datasets/gpt_dataset.py and helpers.cpp), their .npy cache, sample retrieval
// with masks and position ids, blending of several datasets, and the pretraining sampler.
//
// GPTDataset works on sequences, not documents: the split ranges and the document index are
// sequence ids of the .idx, whose document_indices are ignored.
package gpt

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
)

// Split names one of the three splits (Megatron's Split enum).
type Split int

// The three splits, in Megatron's order.
const (
	Train Split = iota
	Valid
	Test
)

// String is the split's Megatron name: "train", "valid" or "test".
func (s Split) String() string {
	switch s {
	case Train:
		return "train"
	case Valid:
		return "valid"
	case Test:
		return "test"
	}
	return fmt.Sprintf("Split(%d)", int(s))
}

// ParseSplitName maps "train", "valid" or "test" to a Split.
func ParseSplitName(name string) (Split, error) {
	for s := Train; s <= Test; s++ {
		if s.String() == name {
			return s, nil
		}
	}
	return 0, fmt.Errorf("gpt: unknown split %q (want train, valid or test)", name)
}

var splitNumber = regexp.MustCompile(`[.0-9]+`)

// ParseSplit is Megatron's parse_and_normalize_split: every run of digits and dots in s is a
// float (so "949,50,1", "949/50/1" and "1 1" all work), the list is padded with zeros to three
// entries and normalised as w / sum(w) in float64.
func ParseSplit(s string) ([3]float64, error) {
	var v [3]float64
	nums := splitNumber.FindAllString(s, -1)
	if len(nums) > 3 {
		return v, fmt.Errorf("gpt: --split %q has %d numbers, want at most 3 (train, valid, test)", s, len(nums))
	}
	for i, f := range nums {
		x, err := strconv.ParseFloat(f, 64)
		if err != nil {
			return v, fmt.Errorf("gpt: --split %q: %q is not a number", s, f)
		}
		v[i] = x
	}
	// numpy.sum over 3 float64s adds left to right from 0.
	sum := 0.0
	for _, x := range v {
		sum += x
	}
	if !(sum > 0) || math.IsInf(sum, 0) {
		return v, fmt.Errorf("gpt: --split %q must have a positive finite sum", s)
	}
	for i := range v {
		v[i] /= sum
	}
	return v, nil
}

// Bookend is one split's [Lo, Hi) fraction of the dataset. LoIsInt records that Lo is the
// Python int 0 that starts the cumulative sum (it prints as "0", not "0.0", in Megatron's
// cache description).
type Bookend struct {
	Lo, Hi  float64
	LoIsInt bool
}

// SplitMatrix is Megatron's convert_split_vector_to_split_matrix for a single vector: the
// cumulative sums [0, v0, v0+v1, v0+v1+v2] (plain float additions from the int 0) paired into
// bookends; a split whose Hi <= Lo is nil (Megatron's None).
func SplitMatrix(v [3]float64) [3]*Bookend {
	var m [3]*Bookend
	ex := [4]float64{0, 0, 0, 0}
	for i := range v {
		ex[i+1] = ex[i] + v[i]
	}
	for i := range m {
		if ex[i+1] <= ex[i] {
			continue
		}
		m[i] = &Bookend{Lo: ex[i], Hi: ex[i+1], LoIsInt: i == 0}
	}
	return m
}

// Range is a half-open range [Beg, End) of sequence ids.
type Range struct{ Beg, End int }

// Len is End - Beg.
func (r Range) Len() int { return r.End - r.Beg }

// SplitRanges turns a split matrix into sequence-id ranges for a dataset of n sequences, as
// BlendedMegatronDatasetBuilder._build_megatron_dataset_splits does:
// beg = int(round(lo * float(n))), end = int(round(hi * float(n))) with Python's
// round-half-to-even. A nil bookend gives a nil range (no dataset for that split).
func SplitRanges(m [3]*Bookend, n int) [3]*Range {
	var r [3]*Range
	for i, b := range m {
		if b == nil {
			continue
		}
		r[i] = &Range{int(math.RoundToEven(b.Lo * float64(n))), int(math.RoundToEven(b.Hi * float64(n)))}
	}
	return r
}

// Arange returns the int32 sequence ids of r (numpy.arange(beg, end, dtype=int32)).
func (r Range) Arange() []int32 {
	if r.End <= r.Beg {
		return []int32{}
	}
	a := make([]int32, r.End-r.Beg)
	for i := range a {
		a[i] = int32(r.Beg + i)
	}
	return a
}

// LegacySplitRanges is the legacy data pipeline's get_train_valid_test_split_
// (megatron/data/dataset_utils.py, 2023), which Pai-Megatron-Patch's idxmap datasets use:
// split is cut at ',' (else '/'), each part a Python float, padded with zeros and cut to
// three, normalised; the boundaries accumulate int(round(s·n)) (half to even) and the
// overshoot d = last − n is taken off every boundary after the first. A split whose end is
// not past its begin has no dataset (nil).
func LegacySplitRanges(split string, n int) ([3]*Range, error) {
	var out [3]*Range
	sep := ","
	if !strings.Contains(split, ",") && strings.Contains(split, "/") {
		sep = "/"
	}
	var v []float64
	for _, p := range strings.Split(split, sep) {
		x, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil {
			return out, fmt.Errorf("gpt: --split %q: %q is not a number", split, p)
		}
		v = append(v, x)
	}
	for len(v) < 3 {
		v = append(v, 0)
	}
	v = v[:3]
	sum := v[0] + v[1] + v[2] // Python's sum, left to right
	if !(sum > 0) || math.IsInf(sum, 0) {
		return out, fmt.Errorf("gpt: --split %q must have a positive finite sum", split)
	}
	idx := [4]int{}
	for i, x := range v {
		idx[i+1] = idx[i] + int(math.RoundToEven(x/sum*float64(n)))
	}
	d := idx[3] - n
	for i := 1; i < 4; i++ {
		idx[i] -= d
	}
	for i := range out {
		if idx[i+1] > idx[i] {
			out[i] = &Range{idx[i], idx[i+1]}
		}
	}
	return out, nil
}
