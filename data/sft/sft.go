// Package sft builds Pai-Megatron-Patch's supervised fine-tuning samples: Alpaca-style
// {instruction, input, output} records turned into right-padded token ids with the prompt
// and the padding masked out of the loss, exactly as LLamaRawDataset
// (megatron_patch/data/llama.py, 2023) and finetune_megatron_llama.py's forward_step do.
//
// Per record, with L = --max-padding-length and pad = the tokenizer's pad id:
//
//	source  = PromptInput (input != "") or PromptNoInput, with the record's fields filled in
//	example = source + output + eos_token
//	input_ids = tok(example, padding='max_length', max_length=L, truncation=True)   // [BOS] + ids, cut to L, padded with pad
//	source_len = count(tok(source, same options) != pad)
//	labels = input_ids; labels[:source_len] = pad                                    // IGNORE_INDEX is the pad id
//	kept only if eos_id in input_ids and output is not empty                         // over-long records lose their EOS and are dropped
//
// and training uses tokens = input_ids[:-1], labels = labels[1:], loss_mask = labels[1:] != pad.
package sft

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"

	"github.com/gomegatron/gomegatron/data/tokenizer"
)

// The Alpaca prompt templates of LLamaRawDataset, verbatim.
const (
	PromptInput = "Below is an instruction that describes a task, paired with an input that provides further context. " +
		"Write a response that appropriately completes the request.\n\n" +
		"### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:"
	PromptNoInput = "Below is an instruction that describes a task. " +
		"Write a response that appropriately completes the request.\n\n" +
		"### Instruction:\n{instruction}\n\n### Response:"
)

// Options are the knobs of Pai's dataset.
type Options struct {
	// MaxPaddingLength is L (--max-padding-length; Pai adds 1 when --dataset contains
	// "-Pretrain", which is the caller's business).
	MaxPaddingLength int
	// PadID is the pad id, also used as IGNORE_INDEX. Negative means the tokenizer's Pad(),
	// or, when it has none, VocabSize(): Pai adds "[PAD]" to a tokenizer without a pad token,
	// and the new token gets the next id (32000 for Llama-2).
	PadID int
	// NoBOS leaves out the leading BOS that the slow LlamaTokenizer adds (by default BOS is
	// put in front when the tokenizer's tokenizer(text) adds it: tokenizer.AddsBOS). The
	// text itself is encoded without special tokens (tokenizer.EncodeNoSpecial).
	NoBOS bool
}

// Sample is one training sample of length L-1: Tokens = input_ids[:-1],
// Labels = labels[1:], LossMask = 1 where Labels != pad, else 0.
type Sample struct {
	Tokens   []int32
	Labels   []int32
	LossMask []float32
}

// Stats counts what Load did with the records.
type Stats struct {
	Records      int    // records in the file
	Kept         int    // samples
	TooLong      int    // dropped: EOS truncated away (the example is longer than L)
	EmptyTarget  int    // dropped: the target field is empty
	TargetKey    string // "output", or "content" when the first record has no "output"
	MaxLen       int    // longest kept example in tokens (BOS and EOS included)
	SourceTokens int64  // prompt tokens over kept samples (masked out)
	TargetTokens int64  // response tokens over kept samples, EOS included (trained on)
}

// Dataset holds the kept samples unpadded; Sample pads on demand.
type Dataset struct {
	l      int
	pad    int32
	ids    [][]int32 // [BOS] + example ids + EOS, cut to L (not padded)
	srcLen []int32   // source_len of each sample
	stats  Stats
}

// Load reads path (a JSON list or JSON lines of records) and builds the samples with
// maximum length maxLen and the tokenizer's own pad (see Options.PadID).
func Load(path string, tok tokenizer.Tokenizer, maxLen int) (*Dataset, error) {
	return LoadWithOptions(path, tok, Options{MaxPaddingLength: maxLen, PadID: -1})
}

// LoadWithOptions is Load with all options.
func LoadWithOptions(path string, tok tokenizer.Tokenizer, opts Options) (*Dataset, error) {
	if opts.MaxPaddingLength < 2 {
		return nil, fmt.Errorf("sft: --max-padding-length %d: need at least 2", opts.MaxPaddingLength)
	}
	recs, key, err := readRecords(path)
	if err != nil {
		return nil, err
	}
	pad := opts.PadID
	if pad < 0 {
		pad = tok.Pad()
		if pad < 0 {
			pad = tok.VocabSize()
		}
	}
	eos := tok.EOS()
	if eos < 0 {
		eos = tok.EOD()
	}
	if eos < 0 {
		return nil, errors.New("sft: the tokenizer has no EOS token, which the target needs (a Hugging Face tokenizer names it in tokenizer_config.json's eos_token, next to tokenizer.json)")
	}
	bos := -1
	if !opts.NoBOS && tokenizer.AddsBOS(tok) {
		bos = tok.BOS()
	}
	d := &Dataset{l: opts.MaxPaddingLength, pad: int32(pad)}
	d.stats.Records, d.stats.TargetKey = len(recs), key

	type enc struct {
		ids    []int32
		srcLen int32
		keep   int // 0 kept, 1 too long, 2 empty target
	}
	out := make([]enc, len(recs))
	encodeOne := func(i int) {
		r := &recs[i]
		source := fill(PromptNoInput, r)
		if r.hasInput {
			source = fill(PromptInput, r)
		}
		ids := tokenizeTrunc(tok, bos, source+r.target, eos, d.l)
		src := tokenizeTrunc(tok, bos, source, -1, d.l)
		var n int32
		for _, id := range src {
			if id != d.pad {
				n++
			}
		}
		e := enc{ids: ids, srcLen: n}
		switch {
		case !r.truthy:
			e.keep = 2
		case !containsEOS(ids, int32(eos), d.pad, d.l):
			e.keep = 1
		}
		out[i] = e
	}
	parallelFor(len(recs), encodeOne)
	for _, e := range out {
		switch e.keep {
		case 1:
			d.stats.TooLong++
			continue
		case 2:
			d.stats.EmptyTarget++
			continue
		}
		d.ids = append(d.ids, e.ids)
		d.srcLen = append(d.srcLen, e.srcLen)
		d.stats.MaxLen = max(d.stats.MaxLen, len(e.ids))
		s := min(int(e.srcLen), len(e.ids))
		d.stats.SourceTokens += int64(s)
		d.stats.TargetTokens += int64(len(e.ids) - s)
	}
	d.stats.Kept = len(d.ids)
	return d, nil
}

// fill is str.format_map for the two templates' fields; the values are not scanned again,
// so an instruction containing "{input}" stays as it is.
func fill(tmpl string, r *record) string {
	var b strings.Builder
	for {
		i := strings.IndexByte(tmpl, '{')
		if i < 0 {
			b.WriteString(tmpl)
			return b.String()
		}
		b.WriteString(tmpl[:i])
		switch rest := tmpl[i:]; {
		case strings.HasPrefix(rest, "{instruction}"):
			b.WriteString(r.instruction)
			tmpl = rest[len("{instruction}"):]
		case strings.HasPrefix(rest, "{input}"):
			b.WriteString(r.input)
			tmpl = rest[len("{input}"):]
		default:
			b.WriteByte('{')
			tmpl = rest[1:]
		}
	}
}

// tokenizeTrunc is the slow tokenizer's input_ids for text (+ eos when eos >= 0) with
// truncation to l, before padding: [BOS] + ids(text) [+ EOS], cut to l. The slow
// LlamaTokenizer splits "…output</s>" at the special token and encodes the text before it as
// one piece, which is what appending the EOS id to the ids of source+output gives.
func tokenizeTrunc(tok tokenizer.Tokenizer, bos int, text string, eos, l int) []int32 {
	enc := tokenizer.EncodeNoSpecial(tok, text)
	ids := make([]int32, 0, min(l, len(enc)+2))
	if bos >= 0 {
		ids = append(ids, int32(bos))
	}
	for _, id := range enc {
		if len(ids) == l {
			return ids
		}
		ids = append(ids, int32(id))
	}
	if eos >= 0 && len(ids) < l {
		ids = append(ids, int32(eos))
	}
	return ids
}

// containsEOS is `eos_token_id in input_ids` on the padded array of length l.
func containsEOS(ids []int32, eos, pad int32, l int) bool {
	for _, id := range ids {
		if id == eos {
			return true
		}
	}
	return len(ids) < l && pad == eos
}

// parallelFor runs f(0..n-1) on all CPUs; results go to index-addressed slots, so the
// order does not depend on scheduling. The tokenizer must be safe for concurrent Encode.
func parallelFor(n int, f func(int)) {
	workers := min(runtime.GOMAXPROCS(0), max(1, n/64))
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				f(i)
			}
		}()
	}
	wg.Wait()
}

// Len is the number of kept samples.
func (d *Dataset) Len() int { return len(d.ids) }

// Stats reports what Load kept and dropped.
func (d *Dataset) Stats() Stats { return d.stats }

// PadID is the pad id (also the ignored label).
func (d *Dataset) PadID() int { return int(d.pad) }

// MaxPaddingLength is L.
func (d *Dataset) MaxPaddingLength() int { return d.l }

// Example returns LLamaRawDataset's stored pair for sample i: input_ids and labels, both
// padded to L.
func (d *Dataset) Example(i int) (inputIDs, labels []int32) {
	inputIDs = make([]int32, d.l)
	n := copy(inputIDs, d.ids[i])
	for k := n; k < d.l; k++ {
		inputIDs[k] = d.pad
	}
	labels = append([]int32(nil), inputIDs...)
	for k := 0; k < int(d.srcLen[i]) && k < d.l; k++ {
		labels[k] = d.pad
	}
	return inputIDs, labels
}

// Sample returns training sample i (length L-1): tokens = input_ids[:-1],
// labels = labels[1:], loss_mask = labels[1:] != pad.
func (d *Dataset) Sample(i int) Sample {
	in, lab := d.Example(i)
	s := Sample{Tokens: in[:d.l-1], Labels: lab[1:], LossMask: make([]float32, d.l-1)}
	for k, v := range s.Labels {
		if v != d.pad {
			s.LossMask[k] = 1
		}
	}
	return s
}
