package gpt

import (
	"fmt"
	"math"

	"github.com/gomegatron/gomegatron/data/nprand"
)

// IndexConfig holds what _build_document_sample_shuffle_indices depends on.
type IndexConfig struct {
	SequenceLength int // S (--seq-length)
	// NumSamples is the number of samples requested (N); negative means None: exactly one
	// epoch, as many samples as fit.
	NumSamples int
	RandomSeed uint32 // --seed: numpy.random.RandomState(random_seed)
	// AddExtraToken is add_extra_token_to_sequence (X = 1, Megatron's default): each sample
	// reads S+1 tokens so that labels are the inputs shifted by one.
	AddExtraToken bool
	// DropLastPartialSequence drops a final sample with fewer than S+X tokens. Megatron sets it
	// for every split except valid, which follows drop_last_partial_validation_sequence.
	DropLastPartialSequence bool
}

// Indices are GPTDataset's three index arrays and the quantities derived on the way.
type Indices struct {
	// DocumentIndex lists sequence ids, the split's ids repeated per epoch and shuffled.
	DocumentIndex []int32
	// SampleIndex is the [n+1, 2] sample index flattened row-major: row k is
	// (position in DocumentIndex, token offset) where sample k starts.
	SampleIndex []int64
	// SampleIndexInt64 reports Megatron's dtype choice for SampleIndex: int64 when
	// max(len(DocumentIndex), max(sequence_lengths)) > 2**31-1, else int32.
	SampleIndexInt64 bool
	// ShuffleIndex is a permutation of [0, n) (two when the final epoch is separate).
	ShuffleIndex []int64
	// ShuffleIndexInt64 reports the dtype: uint32 when n < 2**32-2, else int64.
	ShuffleIndexInt64 bool

	TokensPerEpoch     int64
	NumEpochs          int
	SeparateFinalEpoch bool
	// NumSamplesSansFinalEpoch, NumSamplesFromFinalEpoch and NumSamplesPerEpoch are set when
	// NumEpochs > 1.
	NumSamplesSansFinalEpoch, NumSamplesFromFinalEpoch, NumSamplesPerEpoch int64
}

// Len is the number of samples n = rows of SampleIndex - 1 (len(GPTDataset)).
func (ix *Indices) Len() int { return len(ix.SampleIndex)/2 - 1 }

// NumEpochs is GPTDataset._get_num_epochs: 1 when numSamples is None (negative), else the
// smallest E with E*T >= N*S + X.
func NumEpochs(tokensPerEpoch int64, numSamples, seqLength int, extra int) (int, error) {
	if numSamples < 0 {
		return 1, nil
	}
	need := int64(numSamples)*int64(seqLength) + int64(extra)
	if tokensPerEpoch <= 0 {
		if need <= tokensPerEpoch {
			return 1, nil
		}
		return 0, fmt.Errorf("gpt: the split has no tokens, cannot provide %d samples", numSamples)
	}
	e := int64(1)
	if need > tokensPerEpoch {
		e = (need + tokensPerEpoch - 1) / tokensPerEpoch
	}
	if e > math.MaxInt32 {
		return 0, fmt.Errorf("gpt: %d samples of %d tokens need %d epochs of %d tokens", numSamples, seqLength, e, tokensPerEpoch)
	}
	return int(e), nil
}

// BuildIndices runs GPTDataset._build_document_sample_shuffle_indices for the split whose
// sequence ids are docs, over a low-level dataset with the given sequence lengths.
//
//  1. T = sum(lengths[docs]); E = NumEpochs.
//  2. separate_final_epoch (E > 1): sans = ((E-1)*T - X) // S, final = N - sans,
//     per = (T - X) // S, separate = final < int(0.80 * per).
//  3. One RandomState(seed) shuffles, in order: the document index (or the first E-1 epochs,
//     then the last epoch), then the shuffle index (or [0, sans), then [sans, n)).
func BuildIndices(lengths []int32, docs []int32, cfg IndexConfig) (*Indices, error) {
	s := cfg.SequenceLength
	if s <= 1 {
		return nil, fmt.Errorf("gpt: --seq-length must be greater than 1, got %d", s)
	}
	x := 0
	if cfg.AddExtraToken {
		x = 1
	}
	var t int64
	for i, d := range docs {
		if d < 0 || int(d) >= len(lengths) {
			return nil, fmt.Errorf("gpt: split index %d is sequence %d, outside the dataset's %d sequences", i, d, len(lengths))
		}
		t += int64(lengths[d])
	}
	if t <= 1 {
		return nil, fmt.Errorf("gpt: the split (%d sequences) has %d tokens; Megatron's build_sample_idx needs more than 1", len(docs), t)
	}
	e, err := NumEpochs(t, cfg.NumSamples, s, x)
	if err != nil {
		return nil, err
	}
	ix := &Indices{TokensPerEpoch: t, NumEpochs: e}
	if e > 1 {
		ix.NumSamplesSansFinalEpoch = (int64(e-1)*t - int64(x)) / int64(s)
		ix.NumSamplesFromFinalEpoch = int64(cfg.NumSamples) - ix.NumSamplesSansFinalEpoch
		ix.NumSamplesPerEpoch = (t - int64(x)) / int64(s)
		if ix.NumSamplesFromFinalEpoch < 0 || ix.NumSamplesFromFinalEpoch > ix.NumSamplesPerEpoch+1 {
			return nil, fmt.Errorf("gpt: internal: %d samples from the final epoch, want 0..%d", ix.NumSamplesFromFinalEpoch, ix.NumSamplesPerEpoch+1)
		}
		// int(0.80 * per): float64 product truncated toward zero, strict <.
		ix.SeparateFinalEpoch = ix.NumSamplesFromFinalEpoch < int64(0.80*float64(ix.NumSamplesPerEpoch))
	}
	rs := nprand.New(cfg.RandomSeed)
	ix.DocumentIndex = BuildDocumentIndex(docs, e, rs, ix.SeparateFinalEpoch)
	maxLen := int32(0)
	for _, n := range lengths {
		maxLen = max(maxLen, n)
	}
	ix.SampleIndexInt64 = max(int64(len(ix.DocumentIndex)), int64(maxLen)) > math.MaxInt32
	ix.SampleIndex, err = BuildSampleIndex(lengths, ix.DocumentIndex, s, e, t, cfg.DropLastPartialSequence, x)
	if err != nil {
		return nil, err
	}
	n := int64(ix.Len())
	if ix.SeparateFinalEpoch {
		ix.ShuffleIndex = BuildShuffleIndex(ix.NumSamplesSansFinalEpoch, n, rs)
	} else {
		ix.ShuffleIndex = BuildShuffleIndex(n, n, rs)
	}
	ix.ShuffleIndexInt64 = n >= math.MaxUint32-1
	return ix, nil
}

// BuildDocumentIndex is _build_document_index: docs repeated numEpochs times (epoch-major) and
// shuffled as a whole, or, when separate, the first numEpochs-1 epochs shuffled together and
// then the last epoch shuffled on its own.
func BuildDocumentIndex(docs []int32, numEpochs int, rs *nprand.RandomState, separate bool) []int32 {
	if !separate || numEpochs == 1 {
		out := make([]int32, 0, len(docs)*numEpochs)
		for range numEpochs {
			out = append(out, docs...)
		}
		nprand.Shuffle(rs, out)
		return out
	}
	first := BuildDocumentIndex(docs, numEpochs-1, rs, false)
	last := BuildDocumentIndex(docs, 1, rs, false)
	return append(first, last...)
}

// BuildShuffleIndex is _build_shuffle_index: shuffle(arange(0, numSamples)) followed by
// shuffle(arange(numSamples, totalSize)) when they differ.
func BuildShuffleIndex(numSamples, totalSize int64, rs *nprand.RandomState) []int64 {
	out := make([]int64, totalSize)
	for i := range out {
		out[i] = int64(i)
	}
	nprand.Shuffle(rs, out[:numSamples])
	if numSamples != totalSize {
		nprand.Shuffle(rs, out[numSamples:])
	}
	return out
}

// BuildSampleIndex is helpers.cpp build_sample_idx. It returns the [n+1, 2] index flattened,
// with n = (E*T - X) // S when dropLast, else ceil(float32(E*T - X) / float32(S)) (the C++
// computes that in single precision). Row 0 is (0, 0); each following row is where the next
// sample starts, found by consuming S+X tokens and stepping back X:
//
//	remaining = S + X
//	while remaining != 0:
//	    dlen = lengths[docIndex[pos]] - off;  remaining -= dlen
//	    if remaining <= 0: off += remaining + dlen - X; remaining = 0
//	    elif pos == len(docIndex)-1: off = lengths[docIndex[pos]] - X; break   # partial last sample
//	    else: pos += 1; off = 0
func BuildSampleIndex(lengths []int32, docIndex []int32, seqLength, numEpochs int, tokensPerEpoch int64, dropLast bool, extra int) ([]int64, error) {
	if seqLength <= 1 || numEpochs <= 0 || tokensPerEpoch <= 1 {
		return nil, fmt.Errorf("gpt: build_sample_idx needs seq_length > 1, num_epochs > 0, tokens_per_epoch > 1 (got %d, %d, %d)", seqLength, numEpochs, tokensPerEpoch)
	}
	total := int64(numEpochs)*tokensPerEpoch - int64(extra)
	var n int64
	if dropLast {
		n = total / int64(seqLength)
	} else {
		n = int64(math.Ceil(float64(float32(total) / float32(seqLength))))
	}
	out := make([]int64, 2*(n+1))
	if len(docIndex) == 0 {
		return nil, fmt.Errorf("gpt: build_sample_idx: empty document index")
	}
	last := int64(len(docIndex) - 1)
	for p, d := range docIndex {
		if d < 0 || int(d) >= len(lengths) {
			return nil, fmt.Errorf("gpt: build_sample_idx: document_index[%d] = %d is outside the %d sequences", p, d, len(lengths))
		}
	}
	var pos, off int64
	cur := int64(lengths[docIndex[0]]) // length of the sequence at pos
	x := int64(extra)
	for k := int64(1); k <= n; k++ {
		remaining := int64(seqLength) + x // > 0
		for {
			dlen := cur - off
			remaining -= dlen
			if remaining <= 0 {
				off += remaining + dlen - x
				break
			}
			if pos == last { // out of data: the final partial sample
				off = cur - x
				break
			}
			pos++
			off = 0
			cur = int64(lengths[docIndex[pos]])
		}
		out[2*k], out[2*k+1] = pos, off
	}
	return out, nil
}
