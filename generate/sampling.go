// Package generate is text generation with Megatron's and Pai-Megatron-Patch's semantics:
// batched incremental decoding over layers.GPTModel's KV cache, Pai's repetition penalty,
// Megatron's sample() (greedy, temperature, top-k, top-p), stopping at EOS per row, and
// loading a model from a Hugging Face directory or a Megatron checkpoint at any TP.
package generate

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
)

// Sampling selects how the next token is drawn, as Megatron's
// text_generation/sampling.py sample():
//
//	TopK == 1:  argmax (greedy; TopP must be 0)
//	otherwise:  logits /= Temperature, then
//	  TopK > 1:  logits below the k-th largest → −inf (TopP must be 0)
//	  TopP > 0:  nucleus: sort descending, c_i = Σ_{j≤i} softmax_j; token i is removed when
//	             c_{i−1} > TopP (the first token crossing TopP is kept)
//	  and the token is drawn from softmax(logits).
//
// TopK == 0 and TopP == 0 sample from the whole (tempered) distribution.
type Sampling struct {
	TopK        int
	TopP        float64
	Temperature float64
}

// Validate checks the combination as Megatron's asserts do, naming the flags.
func (s Sampling) Validate() error {
	switch {
	case s.TopK < 0:
		return fmt.Errorf("--top-k %d must be ≥ 0", s.TopK)
	case s.TopP < 0 || s.TopP > 1:
		return fmt.Errorf("--top-p %v must be in [0, 1]", s.TopP)
	case s.TopK > 0 && s.TopP > 0:
		return fmt.Errorf("--top-k %d and --top-p %v: one of them must be 0", s.TopK, s.TopP)
	case s.TopK != 1 && !(s.Temperature > 0):
		return fmt.Errorf("--temperature %v must be positive (use --top-k 1 or --greedy for greedy decoding)", s.Temperature)
	}
	return nil
}

// Greedy reports whether sampling is argmax.
func (s Sampling) Greedy() bool { return s.TopK == 1 }

// Sample draws a token id from logits (modified in place). Ids whose logit is −inf are
// never drawn. rng is only used when not greedy.
func (s Sampling) Sample(logits []float32, rng *rand.Rand) int {
	if s.Greedy() {
		return argmax(logits)
	}
	if s.Temperature != 1 {
		t := float32(s.Temperature)
		for i := range logits {
			logits[i] /= t
		}
	}
	switch {
	case s.TopK > 1:
		topK(logits, s.TopK)
	case s.TopP > 0:
		topP(logits, s.TopP)
	}
	return multinomial(logits, rng)
}

// argmax is the first index of the largest value (torch.argmax).
func argmax(x []float32) int {
	best := 0
	for i, v := range x {
		if v > x[best] {
			best = i
		}
	}
	return best
}

// topK sets every logit below the k-th largest to −inf (ties with it are kept, as
// Megatron's `logits < topk(logits, k)[0][..., -1]`).
func topK(logits []float32, k int) {
	if k >= len(logits) {
		return
	}
	sorted := append([]float32(nil), logits...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i] > sorted[j] })
	kth := sorted[k-1]
	neg := float32(math.Inf(-1))
	for i, v := range logits {
		if v < kth {
			logits[i] = neg
		}
	}
}

// topP keeps the smallest prefix of the descending-sorted tokens whose probability mass
// reaches p (the token that crosses p included) and sets the rest to −inf.
func topP(logits []float32, p float64) {
	idx := make([]int, len(logits))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return logits[idx[a]] > logits[idx[b]] })
	probs := softmax(logits)
	neg := float32(math.Inf(-1))
	cum := 0.0
	for _, i := range idx {
		if cum > p {
			logits[i] = neg
			continue
		}
		cum += probs[i]
	}
}

// softmax returns exp(x − max)/Σ in float64 (−inf gives 0).
func softmax(x []float32) []float64 {
	mx := math.Inf(-1)
	for _, v := range x {
		mx = math.Max(mx, float64(v))
	}
	out := make([]float64, len(x))
	var sum float64
	for i, v := range x {
		out[i] = math.Exp(float64(v) - mx)
		sum += out[i]
	}
	for i := range out {
		out[i] /= sum
	}
	return out
}

// multinomial draws i with probability softmax(logits)_i.
func multinomial(logits []float32, rng *rand.Rand) int {
	probs := softmax(logits)
	u := rng.Float64()
	last := 0
	for i, p := range probs {
		if p == 0 {
			continue
		}
		last = i
		if u < p {
			return i
		}
		u -= p
	}
	return last // rounding left u ≥ the total: the last token with mass
}

// RepetitionPenalty applies a repetition penalty to the logits of every distinct id in
// used (each id once, however often it occurs; ids outside the logits are skipped):
//
//	Pai-Megatron-Patch:  l ← l / penalty               (a negative logit moves up)
//	Hugging Face (hf):   l ← l < 0 ? l·penalty : l / penalty
//
// A penalty of 1 changes nothing.
func RepetitionPenalty(logits []float32, used []int64, penalty float64, hf bool) {
	if penalty == 1 || penalty == 0 {
		return
	}
	pen := float32(penalty)
	seen := make(map[int64]bool, len(used))
	for _, id := range used {
		if id < 0 || id >= int64(len(logits)) || seen[id] {
			continue
		}
		seen[id] = true
		if hf && logits[id] < 0 {
			logits[id] *= pen
		} else {
			logits[id] /= pen
		}
	}
}
