package gpt

import (
	"fmt"

	"github.com/gomegatron/gomegatron/data/indexed"
)

// PadTokenIDNone is Megatron's _PAD_TOKEN_ID, used when the tokenizer has no pad token.
const PadTokenIDNone = -1

// DatasetConfig is the part of GPTDatasetConfig that sample retrieval uses.
type DatasetConfig struct {
	SequenceLength int
	AddExtraToken  bool  // add_extra_token_to_sequence
	EOD            int64 // tokenizer.eod
	// Pad is the pad id (tokenizer.pad, or PadTokenIDNone): it fills a short final sample, its
	// labels get loss_mask 0, and it is replaced by 0 in tokens and labels.
	Pad                 int64
	ResetPositionIDs    bool // --reset-position-ids
	ResetAttentionMask  bool // --reset-attention-mask
	EODMaskLoss         bool // --eod-mask-loss
	CreateAttentionMask bool // create_attention_mask_in_dataloader
}

// Dataset is a built GPTDataset: a low-level indexed dataset and its indices.
type Dataset struct {
	low *indexed.Dataset
	ix  *Indices
	cfg DatasetConfig
}

// Sample is what GPTDataset.__getitem__ returns, each of length S.
type Sample struct {
	Tokens      []int64
	Labels      []int64
	LossMask    []float32
	PositionIDs []int64
	// AttentionMask is the [S, S] boolean mask (row-major, true = masked) when
	// CreateAttentionMask is set, else nil.
	AttentionMask []bool
}

// NewDataset pairs a low-level dataset with its indices (built by BuildIndices or loaded from
// a cache), checking that every document id and sample row is inside the dataset.
func NewDataset(low *indexed.Dataset, ix *Indices, cfg DatasetConfig) (*Dataset, error) {
	if cfg.SequenceLength <= 0 {
		return nil, fmt.Errorf("gpt: sequence length %d must be positive", cfg.SequenceLength)
	}
	if err := ix.check(); err != nil {
		return nil, fmt.Errorf("gpt: indices for %s: %w", low.Prefix(), err)
	}
	for i, d := range ix.DocumentIndex {
		if d < 0 || int(d) >= low.NumSequences() {
			return nil, fmt.Errorf("gpt: document_index[%d] = %d is outside %s (%d sequences)", i, d, low.Prefix(), low.NumSequences())
		}
	}
	return &Dataset{low: low, ix: ix, cfg: cfg}, nil
}

// Len is the number of samples (len(GPTDataset)).
func (d *Dataset) Len() int { return d.ix.Len() }

// Indices returns the dataset's indices.
func (d *Dataset) Indices() *Indices { return d.ix }

// Text returns the S+X raw tokens of sample idx (pad-filled when short) and the sequence ids
// they come from (_query_document_sample_shuffle_indices): with k = shuffle_index[idx] and
// rows (b, bo) = sample_index[k], (e, eo) = sample_index[k+1], the tokens are sequence
// document_index[b] from bo, the whole sequences in between, and sequence document_index[e]
// up to eo + X (exclusive); within one sequence, tokens [bo, eo + X).
func (d *Dataset) Text(idx int) (text, docIDs []int64, err error) {
	n := d.ix.Len()
	if idx < 0 || idx >= n {
		return nil, nil, fmt.Errorf("gpt: sample %d out of range [0, %d)", idx, n)
	}
	x := 0
	if d.cfg.AddExtraToken {
		x = 1
	}
	k := d.ix.ShuffleIndex[idx]
	b, bo := int(d.ix.SampleIndex[2*k]), int(d.ix.SampleIndex[2*k+1])
	e, eo := int(d.ix.SampleIndex[2*k+2]), int(d.ix.SampleIndex[2*k+3])
	want := d.cfg.SequenceLength + x
	text = make([]int64, 0, want)
	if b == e {
		seq := int(d.ix.DocumentIndex[b])
		docIDs = []int64{int64(seq)}
		if text, err = d.low.AppendTokens(text, seq, bo, eo-bo+x); err != nil {
			return nil, nil, fmt.Errorf("gpt: sample %d: %w", idx, err)
		}
	} else {
		for i := b; i <= e; i++ {
			seq := int(d.ix.DocumentIndex[i])
			docIDs = append(docIDs, int64(seq))
			off, length := 0, -1
			if i == b {
				off = bo
			}
			if i == e {
				length = eo + x
			}
			if text, err = d.low.AppendTokens(text, seq, off, length); err != nil {
				return nil, nil, fmt.Errorf("gpt: sample %d: %w", idx, err)
			}
		}
	}
	for len(text) < want {
		text = append(text, d.cfg.Pad)
	}
	return text, docIDs, nil
}

// Get returns sample idx as GPTDataset.__getitem__ does: tokens and labels (the text shifted by
// one when X = 1; else labels = roll(text, -1) with the last label = pad), loss_mask 1 except
// at EOD tokens with EODMaskLoss and where labels == pad, position ids (restarting after each
// EOD with ResetPositionIDs), the optional causal attention mask, and pads replaced by 0.
func (d *Dataset) Get(idx int) (*Sample, error) {
	text, _, err := d.Text(idx)
	if err != nil {
		return nil, err
	}
	return d.sampleFromText(text), nil
}

// PaddingSample is __getitem__(None), the batch-padding sample: sample 0 with an all-zero
// loss mask.
func (d *Dataset) PaddingSample() (*Sample, error) {
	s, err := d.Get(0)
	if err != nil {
		return nil, err
	}
	clear(s.LossMask)
	return s, nil
}

func (d *Dataset) sampleFromText(text []int64) *Sample {
	s := d.cfg.SequenceLength
	smp := &Sample{}
	if d.cfg.AddExtraToken {
		smp.Tokens = append([]int64(nil), text[:s]...)
		smp.Labels = append([]int64(nil), text[1:s+1]...)
	} else {
		smp.Tokens = append([]int64(nil), text...)
		smp.Labels = append(append([]int64(nil), text[1:]...), d.cfg.Pad)
	}
	smp.LossMask, smp.PositionIDs, smp.AttentionMask = LTRMasksAndPositionIDs(smp.Tokens, d.cfg.EOD,
		d.cfg.ResetPositionIDs, d.cfg.ResetAttentionMask, d.cfg.EODMaskLoss, d.cfg.CreateAttentionMask)
	for i := range smp.Labels {
		if smp.Labels[i] == d.cfg.Pad {
			smp.LossMask[i] = 0
		}
	}
	for i := range smp.Tokens {
		if smp.Tokens[i] == d.cfg.Pad {
			smp.Tokens[i] = 0
		}
		if smp.Labels[i] == d.cfg.Pad {
			smp.Labels[i] = 0
		}
	}
	return smp
}

// DocStarts is the compact form of the reset attention mask: for each token, 1 + the
// position of the last EOD before it (0 in the first document), so that token i sees
// exactly the tokens j with DocStarts[i] ≤ j ≤ i, as LTRMasksAndPositionIDs's mask with
// resetAttentionMask allows.
func DocStarts(tokens []int64, eod int64) []int32 {
	out := make([]int32, len(tokens))
	start := int32(0)
	for i, t := range tokens {
		out[i] = start
		if t == eod {
			start = int32(i) + 1
		}
	}
	return out
}

// LTRMasksAndPositionIDs is _get_ltor_masks_and_position_ids for one sequence of tokens:
//
//	loss_mask = 1, and 0 where tokens == eod when eodMaskLoss;
//	position_ids = arange(s); for each EOD at i (in order), when resetPositionIDs,
//	    position_ids[i+1:] -= i + 1 - prev; prev = i + 1;
//	attention mask (createMask) = tril(ones(s, s)), with resetAttentionMask zeroing
//	    [i+1:, :i+1] at each EOD i, returned as mask < 0.5 (true = masked).
func LTRMasksAndPositionIDs(tokens []int64, eod int64, resetPositionIDs, resetAttentionMask, eodMaskLoss, createMask bool) (lossMask []float32, positionIDs []int64, attentionMask []bool) {
	s := len(tokens)
	lossMask = make([]float32, s)
	positionIDs = make([]int64, s)
	for i := range s {
		lossMask[i] = 1
		positionIDs[i] = int64(i)
		if eodMaskLoss && tokens[i] == eod {
			lossMask[i] = 0
		}
	}
	if createMask {
		attentionMask = make([]bool, s*s)
		for r := range s {
			for c := r + 1; c < s; c++ {
				attentionMask[r*s+c] = true
			}
		}
	}
	if !resetPositionIDs && !resetAttentionMask {
		return
	}
	var eods []int
	for i, t := range tokens {
		if t == eod {
			eods = append(eods, i)
		}
	}
	prev := int64(0)
	for _, i := range eods {
		if resetAttentionMask && attentionMask != nil {
			for r := i + 1; r < s; r++ {
				for c := 0; c <= i; c++ {
					attentionMask[r*s+c] = true
				}
			}
		}
		if resetPositionIDs {
			delta := int64(i) + 1 - prev
			for j := i + 1; j < s; j++ {
				positionIDs[j] -= delta
			}
			prev = int64(i) + 1
		}
	}
	return
}
