package generate

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/gomegatron/gomegatron/layers"
	"github.com/gomegatron/gomegatron/tensor"
)

// Options configure Generate. Field comments name the flags that set them.
type Options struct {
	Sampling
	// RepetitionPenalty (--repetition-penalty) divides the logits of ids already in the
	// sequence; HFRepetitionPenalty (--hf-repetition-penalty) uses Hugging Face's
	// sign-aware rule instead (see RepetitionPenalty for both).
	RepetitionPenalty   float64
	HFRepetitionPenalty bool
	// OutSeqLength (--out-seq-length) is the number of tokens to generate after the
	// longest prompt of the batch.
	OutSeqLength int
	// EOS is the termination id (the tokenizer's eod); rows stop at their first EOS.
	EOS int64
	// Pad right-pads prompts (Megatron pads with eod).
	Pad int64
	// Vocab bounds the ids that can be sampled (the tokenizer's vocabulary; the padded
	// rows of the output layer never are). 0 means the model's --vocab-size.
	Vocab int
	// MaxPositions (--max-position-embeddings) bounds prompt + generation; 0 means the
	// model's. (Megatron: "Length of prompt + tokens_to_generate longer than allowed".)
	MaxPositions int
}

// Generate continues a batch of prompts in lockstep, as Megatron's
// generate_tokens_probs_and_return_on_first_stage with Pai-Megatron-Patch's repetition
// penalty: prompts are right-padded with Pad to L = max prompt length + OutSeqLength;
// decoding starts at the shortest prompt's length c₀ (prefill of positions < c₀, then one
// position per step); at step c each row draws a token from the logits of position c−1,
// which is kept only where the row's prompt has ended (len ≤ c). A row finishes at its
// first generated EOS (its length becomes c+1, the EOS included); the batch stops when
// every row has finished or at L. Rows that never finish have length L.
//
// The repetition penalty (Pai's quirk kept) is applied to the ids tokens[1 : c+1] — the
// sequence without its first token but with position c, which still holds the pad or the
// row's next prompt token; with HFRepetitionPenalty to tokens[0 : c], as Hugging Face.
//
// It returns each row's tokens, prompt included, cut at its length. With TP > 1 every rank
// calls Generate with the same prompts and seed; rank 0's tokens are broadcast each step.
func Generate(m *layers.GPTModel, prompts [][]int64, o Options, rng *rand.Rand) ([][]int64, error) {
	if err := o.Sampling.Validate(); err != nil {
		return nil, err
	}
	if o.OutSeqLength <= 0 {
		return nil, fmt.Errorf("--out-seq-length %d must be positive", o.OutSeqLength)
	}
	if len(prompts) == 0 {
		return nil, fmt.Errorf("no prompts")
	}
	c := &m.Cfg
	vocab := o.Vocab
	if vocab <= 0 || vocab > c.PaddedVocabSize {
		vocab = min(c.VocabSize, c.PaddedVocabSize)
	}
	maxPos := o.MaxPositions
	if maxPos <= 0 {
		maxPos = c.MaxPositionEmbeddings
	}
	b := len(prompts)
	lengths := make([]int, b)
	minLen, maxLen := math.MaxInt, 0
	for i, p := range prompts {
		if len(p) == 0 {
			return nil, fmt.Errorf("prompt %d is empty after tokenization", i)
		}
		for j, id := range p {
			if id < 0 || id >= int64(c.PaddedVocabSize) {
				return nil, fmt.Errorf("prompt %d: token %d is id %d, outside the model's vocabulary of %d", i, j, id, c.PaddedVocabSize)
			}
		}
		lengths[i] = len(p)
		minLen, maxLen = min(minLen, len(p)), max(maxLen, len(p))
	}
	total := maxLen + o.OutSeqLength
	if maxPos > 0 && total > maxPos {
		return nil, fmt.Errorf("prompt of %d tokens + --out-seq-length %d = %d positions, more than --max-position-embeddings %d", maxLen, o.OutSeqLength, total, maxPos)
	}
	tokens := make([][]int64, b)
	for i, p := range prompts {
		tokens[i] = make([]int64, total)
		copy(tokens[i], p)
		for j := len(p); j < total; j++ {
			tokens[i][j] = o.Pad
		}
	}
	genLen := make([]int, b)
	for i := range genLen {
		genLen[i] = total
	}
	done := make([]bool, b)
	kc := m.NewKVCache(b, total)
	chunk := make([][]int64, b)
	next := tensor.New(tensor.I64, b)
	row := make([]float32, vocab)
	prev := 0
	for ctx := minLen; ctx < total; ctx++ {
		for i := range chunk {
			chunk[i] = tokens[i][prev:ctx]
		}
		logits, err := m.Decode(kc, chunk, prev)
		if err != nil {
			return nil, err
		}
		lv := logits.F32()
		vp := logits.Dim(1)
		nv := next.I64()
		for i := 0; i < b; i++ {
			if lengths[i] > ctx {
				nv[i] = tokens[i][ctx] // still inside the prompt: no draw
				continue
			}
			copy(row, lv[i*vp:i*vp+vocab])
			for j := range row {
				if math.IsNaN(float64(row[j])) {
					return nil, fmt.Errorf("row %d position %d: the logits contain NaN", i, ctx-1)
				}
			}
			used := tokens[i][1 : ctx+1]
			if o.HFRepetitionPenalty {
				used = tokens[i][:ctx]
			}
			RepetitionPenalty(row, used, o.RepetitionPenalty, o.HFRepetitionPenalty)
			nv[i] = int64(o.Sampling.Sample(row, rng))
		}
		if tp := m.Par.TP; tp != nil && tp.Size() > 1 {
			if err := tp.Broadcast(next, 0); err != nil {
				return nil, fmt.Errorf("broadcast of the sampled tokens over tensor parallelism: %w", err)
			}
		}
		all := true
		for i := 0; i < b; i++ {
			if lengths[i] <= ctx {
				tokens[i][ctx] = nv[i]
				if nv[i] == o.EOS && !done[i] {
					done[i], genLen[i] = true, ctx+1
				}
			}
			all = all && done[i]
		}
		prev = ctx
		if all {
			break
		}
	}
	out := make([][]int64, b)
	for i := range out {
		out[i] = tokens[i][:genLen[i]]
	}
	return out, nil
}
