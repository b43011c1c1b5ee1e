package train

import (
	"fmt"
	"os"
	"strings"

	"github.com/gomegatron/gomegatron/data/gpt"
	"github.com/gomegatron/gomegatron/data/sft"
	"github.com/gomegatron/gomegatron/data/tokenizer"
	"github.com/gomegatron/gomegatron/layers"
)

// rawLoss is which Pai-Megatron-Patch entry point's batch a raw JSON sample follows; all
// take tokens = input_ids[:-1] of LLamaRawDataset's padded sample.
type rawLoss int

const (
	// lossOnInputs is pretrain_megatron_llama.py: labels = input_ids[1:], no loss where the
	// input token is padding (the prompt is trained on).
	lossOnInputs rawLoss = iota
	// lossOnLabels is finetune_megatron_llama*.py: labels = labels[1:] (prompt set to pad),
	// no loss where the label is pad.
	lossOnLabels
	// lossOnLabelsNoEOS is the mcore entry points (get_batch_on_this_tp_rank_original):
	// as lossOnLabels, and EOS labels are ignored too.
	lossOnLabelsNoEOS
)

// rawSamples serves an SFT dataset's samples in index order under one loss rule.
//
// A tokenizer without a pad token pads with Pai's added "[PAD]", the id just past the
// vocabulary unless --extra-vocab-size makes room; Megatron embeds such an input as zeros
// under TP > 1 (and fails at TP = 1). Padding only follows the text, so under causal
// attention and a masked loss its embedding reaches no result: padIn feeds those inputs
// as id 0 instead. Ignored labels are fed as 0 too.
type rawSamples struct {
	d     *sft.Dataset
	loss  rawLoss
	eos   int32
	padIn int64 // the input id of padding
}

func (r rawSamples) Len() int { return r.d.Len() }

func (r rawSamples) Get(i int) (*gpt.Sample, error) {
	if i < 0 || i >= r.d.Len() {
		return nil, fmt.Errorf("raw sample %d out of range [0, %d)", i, r.d.Len())
	}
	in, lab := r.d.Example(i)
	n, pad := len(in)-1, int32(r.d.PadID())
	s := &gpt.Sample{Tokens: make([]int64, n), Labels: make([]int64, n), LossMask: make([]float32, n)}
	for k := 0; k < n; k++ {
		s.Tokens[k] = int64(in[k])
		if in[k] == pad {
			s.Tokens[k] = r.padIn
		}
		var keep bool
		switch r.loss {
		case lossOnInputs:
			s.Labels[k], keep = int64(in[k+1]), in[k] != pad
		case lossOnLabels:
			s.Labels[k], keep = int64(lab[k+1]), lab[k+1] != pad
		case lossOnLabelsNoEOS:
			s.Labels[k], keep = int64(lab[k+1]), lab[k+1] != pad && lab[k+1] != r.eos
		}
		if keep {
			s.LossMask[k] = 1
		} else {
			s.Labels[k] = 0
		}
	}
	return s, nil
}

// rawStats is what loading a raw JSON split kept and dropped.
func rawStats(s samples) (sft.Stats, bool) {
	switch r := s.(type) {
	case rawSamples:
		return r.d.Stats(), true
	case *sftSamples:
		return r.d.d.Stats(), true
	}
	return sft.Stats{}, false
}

// rawSampleLength is LLamaRawDataset's padded length: --max-padding-length, plus one when
// --dataset names a "-Pretrain" kind (the model then sees --max-padding-length tokens).
func (a *Args) rawSampleLength() int {
	if strings.Contains(a.Dataset, "-Pretrain") {
		return a.MaxPaddingLength + 1
	}
	return a.MaxPaddingLength
}

// rawJSON reports whether a run reads Pai's raw JSON dataset (LLamaRawDataset): the training
// path is a file (pretrain_megatron_llama.py's os.path.isfile test; a .bin/.idx prefix is
// not one); under --use-mcore-models, whose entry points read --data-path, only when
// --dataset names a "-Raw" kind or there is no --data-path.
func (a *Args) rawJSON() bool {
	if len(a.TrainDataPath) == 0 || (a.UseMcoreModels && len(a.DataPath) > 0 && !strings.Contains(a.Dataset, "-Raw")) {
		return false
	}
	st, err := os.Stat(a.TrainDataPath[0])
	return err == nil && st.Mode().IsRegular()
}

// rawLossRule is the entry point a raw run follows: the mcore ones under --use-mcore-models,
// else pretraining's or fine-tuning's.
func (a *Args) rawLossRule(finetune bool) (rawLoss, error) {
	switch {
	case a.UseMcoreModels && !a.EODMaskLoss:
		// Pai labels EOS and padding -100 there and only --eod-mask-loss masks them; without
		// it Megatron's cross entropy scores those positions against logit 0.
		return 0, fmt.Errorf("raw JSON data with --use-mcore-models needs --eod-mask-loss, as Pai's mcore scripts pass (the ignored labels would enter the loss)")
	case a.UseMcoreModels:
		return lossOnLabelsNoEOS, nil
	case finetune:
		return lossOnLabels, nil
	}
	return lossOnInputs, nil
}

// loadRaw reads one raw JSON file into samples of rawSampleLength tokens.
func (a *Args) loadRaw(path string, tok tokenizer.Tokenizer, loss rawLoss) (rawSamples, error) {
	d, err := sft.LoadWithOptions(path, tok, sft.Options{MaxPaddingLength: a.rawSampleLength(), PadID: -1})
	if err != nil {
		return rawSamples{}, err
	}
	if d.Len() == 0 {
		st, plus := d.Stats(), ""
		if a.rawSampleLength() > a.MaxPaddingLength {
			plus = " + 1 (--dataset " + a.Dataset + ")"
		}
		return rawSamples{}, fmt.Errorf("%s: no sample fits --max-padding-length %d%s (%d records, %d too long)", path, a.MaxPaddingLength, plus, st.Records, st.TooLong)
	}
	eos := tok.EOS()
	if eos < 0 {
		eos = tok.EOD()
	}
	r := rawSamples{d: d, loss: loss, eos: int32(eos), padIn: int64(d.PadID())}
	// The embedding's rows: the vocabulary padded as the model pads it.
	vocab := layers.PaddedVocab(a.modelVocab(tok), a.MakeVocabSizeDivisibleBy, a.TensorModelParallelSize)
	if d.PadID() >= vocab {
		if loss == lossOnInputs {
			// pretrain_megatron_llama.py trains the position after EOS on a pad label.
			return rawSamples{}, fmt.Errorf("%s: samples are padded with id %d (the tokenizer has no pad token), a label pretraining on raw JSON trains on, outside the padded vocabulary of %d: pass --extra-vocab-size %d or more", path, d.PadID(), vocab, d.PadID()-(a.modelVocab(tok)-a.ExtraVocabSize)+1)
		}
		r.padIn = 0
	}
	return r, nil
}

// rawSplits is the data of a raw JSON run with Megatron's iteration-based loop (Pai's
// pretraining on JSON and its *_withGA fine-tuning): training from --train-data-path,
// validation and test from --valid-data-path and --test-data-path, read in
// --dataloader-type order; --train-iters sets the length.
func (a *Args) rawSplits(loss rawLoss) dataHook {
	return func(tok tokenizer.Tokenizer, _ int) ([3]samples, error) {
		var out [3]samples
		for i, paths := range [][]string{a.TrainDataPath, a.ValidDataPath, a.TestDataPath} {
			if len(paths) == 0 {
				continue
			}
			if len(paths) != 1 {
				return out, fmt.Errorf("raw JSON data: one file per split, got %d (%q)", len(paths), paths)
			}
			s, err := a.loadRaw(paths[0], tok, loss)
			if err != nil {
				return out, err
			}
			out[i] = s
		}
		return out, nil
	}
}
