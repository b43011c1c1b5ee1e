package main

import (
	"fmt"
	"math/rand/v2"

	"github.com/gomegatron/gomegatron/tensor"
)

// resizer grows the vocabulary-indexed matrices (model.embed_tokens.weight and
// lm_head.weight, [rows, hidden]) from oldRows to newRows:
//
//	rows [0, oldRows)           copied bit for bit
//	rows [oldRows, newVocab)    one per appended piece
//	rows [newVocab, newRows)    padding (--pad-to-multiple-of), no token
//
// With init "mean", the row of appended piece k is the mean of the rows of the ids
// sources[k] that the piece encodes to under the old tokenizer, in the same matrix:
//
//	E[oldRows+k][j] = float32( Σ_{i ∈ sources[k]} float64(E[i][j]) / |sources[k]| )
//
// summed in float64 in the order of sources[k], rounded to float32 and then to the
// tensor's dtype (round to nearest even). Padding rows are the mean of all old rows.
// With init "normal", every new row is drawn from N(0, 0.02) (PCG seeded by --seed) once
// and the same values go into both matrices, as Pai-Megatron-Patch's convertor appends
// one nn.Embedding's weight to both.
type resizer struct {
	oldRows, newVocab, newRows int
	sources                    [][]int
	init                       string
	seed                       uint64
	normal                     []float32 // (newRows-oldRows)·hidden values, drawn on first use
	normalH                    int
}

// resize returns t with the new rows; t is not modified.
func (r *resizer) resize(name string, t *tensor.Tensor) (*tensor.Tensor, error) {
	shape := t.Shape()
	if len(shape) != 2 || shape[0] != r.oldRows {
		return nil, fmt.Errorf("%s has shape %v, want [%d, hidden]", name, shape, r.oldRows)
	}
	if !t.DType().IsFloat() {
		return nil, fmt.Errorf("%s has dtype %v, want a floating-point type", name, t.DType())
	}
	h := shape[1]
	out := tensor.New(t.DType(), r.newRows, h)
	copy(out.Data, t.Data)
	extra := r.newRows - r.oldRows
	if extra == 0 {
		return out, nil
	}
	vals := make([]float32, extra*h)
	switch r.init {
	case "normal":
		if r.normal == nil {
			rng := rand.New(rand.NewPCG(r.seed, 0x766f636162657874)) // "vocabext"
			r.normal, r.normalH = make([]float32, extra*h), h
			for i := range r.normal {
				r.normal[i] = float32(rng.NormFloat64() * 0.02)
			}
		}
		if r.normalH != h {
			return nil, fmt.Errorf("%s has hidden size %d, but the other vocabulary matrix has %d", name, h, r.normalH)
		}
		copy(vals, r.normal)
	case "mean":
		row := make([]float32, h)
		acc := make([]float64, h)
		meanOf := func(dst []float32, ids []int) error {
			clear(acc)
			for _, id := range ids {
				if id < 0 || id >= r.oldRows {
					return fmt.Errorf("%s: id %d out of range [0, %d)", name, id, r.oldRows)
				}
				tensor.ConvertToF32(row, t.Slice(id, id+1))
				for j, v := range row {
					acc[j] += float64(v)
				}
			}
			for j := range dst {
				dst[j] = float32(acc[j] / float64(len(ids)))
			}
			return nil
		}
		for k, ids := range r.sources {
			if len(ids) == 0 {
				return nil, fmt.Errorf("internal: appended piece %d has no source ids", k)
			}
			if err := meanOf(vals[k*h:(k+1)*h], ids); err != nil {
				return nil, err
			}
		}
		if pad := r.newRows - r.newVocab; pad > 0 {
			all := make([]int, r.oldRows)
			for i := range all {
				all[i] = i
			}
			first := vals[(r.newVocab-r.oldRows)*h : (r.newVocab-r.oldRows+1)*h]
			if err := meanOf(first, all); err != nil {
				return nil, err
			}
			for k := 1; k < pad; k++ {
				copy(vals[(r.newVocab-r.oldRows+k)*h:], first)
			}
		}
	default:
		return nil, fmt.Errorf("--init %q: want mean or normal", r.init)
	}
	tensor.ConvertFromF32(out.Slice(r.oldRows, r.newRows), vals)
	return out, nil
}
