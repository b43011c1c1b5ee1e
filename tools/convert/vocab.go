package main

import (
	"fmt"
	"math/rand/v2"
)

// vocabPlan resizes the vocabulary-indexed tensors (word embeddings and output layer,
// [rows, h]) from the source's rows to the target's:
//
//	rows [0, srcVocab)          copied (the real vocabulary)
//	rows [srcVocab, vocab)      the --extra_num_vocabs new rows
//	rows [vocab, rows)          padding: the source's padding rows where it has them and
//	                            no rows were added, else zero
//
// Megatron pads the vocabulary to a multiple of make_vocab_size_divisible_by·TP; Hugging
// Face stores exactly vocab rows. Keeping the source's padding rows when the padded size
// does not change makes Megatron → Megatron resharding lossless even for checkpoints
// whose padding rows were trained.
type vocabPlan struct {
	srcVocab, srcRows int
	vocab, rows       int
	init              string // "normal" or "mean"
	seed              uint64
	normal            []float32 // the extra rows, drawn once so embedding and output share them
}

func isVocabKey(key string) bool {
	return key == "embedding.word_embeddings.weight" || key == "output_layer.weight"
}

// apply returns the resized tensor. The N(0, 0.02) rows are the same for every tensor,
// as Pai appends one nn.Embedding's weight to both.
func (p *vocabPlan) apply(key string, v []float32, shape []int) ([]float32, []int, error) {
	if !isVocabKey(key) || (p.rows == p.srcRows && p.vocab == p.srcVocab) {
		return v, shape, nil
	}
	if len(shape) != 2 || shape[0] != p.srcRows {
		return nil, nil, fmt.Errorf("%s has shape %v, want %d vocabulary rows", key, shape, p.srcRows)
	}
	h := shape[1]
	out := make([]float32, p.rows*h)
	keep := p.srcVocab
	if p.vocab == p.srcVocab {
		keep = min(p.srcRows, p.rows) // no added rows: keep the padding rows too
	}
	copy(out, v[:min(keep, p.rows)*h])
	extra := p.vocab - p.srcVocab
	if extra > 0 {
		dst := out[p.srcVocab*h : p.vocab*h]
		switch p.init {
		case "mean":
			for r := 0; r < p.srcVocab; r++ {
				for j := 0; j < h; j++ {
					dst[j] += v[r*h+j]
				}
			}
			for j := 0; j < h; j++ {
				dst[j] /= float32(p.srcVocab)
			}
			for r := 1; r < extra; r++ {
				copy(dst[r*h:(r+1)*h], dst[:h])
			}
		default:
			if p.normal == nil {
				rng := rand.New(rand.NewPCG(p.seed, 0x9e3779b97f4a7c15))
				p.normal = make([]float32, extra*h)
				for i := range p.normal {
					p.normal[i] = float32(rng.NormFloat64() * 0.02)
				}
			}
			copy(dst, p.normal)
		}
	}
	return out, []int{p.rows, h}, nil
}
