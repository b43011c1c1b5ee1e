package train

import (
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/gomegatron/gomegatron/ckpt/hf"
	"github.com/gomegatron/gomegatron/ckpt/megatron"
	"github.com/gomegatron/gomegatron/comm"
	"github.com/gomegatron/gomegatron/data/gpt"
	"github.com/gomegatron/gomegatron/data/sampler"
	"github.com/gomegatron/gomegatron/data/tokenizer"
	"github.com/gomegatron/gomegatron/layers"
	"github.com/gomegatron/gomegatron/tensor"
)

// EvaluateRaw is Pai-Megatron-Patch's evaluate_megatron_llama.py and evaluate_mcore_llama.py
// (and, when --load is a Hugging Face folder, evaluate_huggingface_llama.py, whose model is
// the folder's): the checkpoint's loss on the raw JSON --valid-data-path (LLamaRawDataset) in one
// pass. Each data-parallel rank takes its share in the order of Pai's data loader (a torch
// DistributedSampler at epoch 0, padded to a multiple of DP) in micro-batches, the last one
// smaller (drop_last=False), and each micro-batch's loss is Σ(loss·mask)/Σmask with the
// mask from the labels (labels[1:] ≠ pad), logged per rank as Pai prints it.
func EvaluateRaw(a *Args, world comm.Comm, out io.Writer) error {
	if len(a.ValidDataPath) != 1 {
		return fmt.Errorf("evaluation reads one raw JSON --valid-data-path (Pai's LLamaRawDataset), got %d paths", len(a.ValidDataPath))
	}
	if st, err := os.Stat(a.ValidDataPath[0]); err != nil || !st.Mode().IsRegular() {
		return fmt.Errorf("--valid-data-path %s: evaluation reads a raw JSON file (a list or jsonl of {instruction, input, output})", a.ValidDataPath[0])
	}
	if a.ContextParallelSize > 1 {
		return fmt.Errorf("evaluation with --context-parallel-size %d is not supported (Pai's evaluation scripts have no context parallelism)", a.ContextParallelSize)
	}
	if a.VirtualStages() > 1 {
		return fmt.Errorf("Interleaved pipeline schedule is not yet supported for text generation: evaluation takes no --num-layers-per-virtual-pipeline-stage (as Pai's)")
	}
	if err := a.rawSeqLength("evaluation"); err != nil {
		return err
	}
	if a.TransformerType == "huggingface" && !a.hfFolder() {
		return fmt.Errorf("--transformer-type huggingface needs --load to be a Hugging Face model folder (config.json), got %q", a.Load)
	}
	if a.hfFolder() {
		// Pai's evaluate_huggingface_llama.py: transformers builds the model from the
		// folder's config.json; the Megatron flags give only the layout and precision.
		r, err := hf.Open(a.Load)
		if err != nil {
			return err
		}
		r.Close()
		c := r.Config
		c.SeqLength, c.TensorModelParallelSize = a.SeqLength, a.Config.TensorModelParallelSize
		c.PaddedVocabSize = max(c.PaddedVocabSize, c.VocabSize) // the folder's embedding rows
		a.Config, a.hfModel = c, true
	}
	// load_checkpoint(model, None, None): the weights only, and no training.
	a.evaluateRaw, a.NoLoadOptim, a.NoLoadRNG = true, true, true
	a.TrainIters = max(a.TrainIters, 1) // the (unused) schedule's length
	return run(a, world, out, func(tok tokenizer.Tokenizer, _ int) ([3]samples, error) {
		valid, err := a.loadRaw(a.ValidDataPath[0], tok, lossOnLabels)
		return [3]samples{nil, valid, nil}, err
	})
}

// evaluateSplit runs EvaluateRaw's pass over valid once the model is loaded.
func (a *Args) evaluateSplit(tr *Trainer, valid samples, ps *comm.ParallelState, docs documents, logf func(string, ...any)) error {
	mbs, dp := a.MicroBatchSize, ps.DPSize
	order := sampler.DistributedIndices(valid.Len(), dp, ps.Coords.DP, 0)
	iters := (len(order) + mbs - 1) / mbs
	last := tr.last().Par.Last()
	gathered := tensor.New(tensor.F64, dp, 2) // (Σ loss, Σ tokens) of each DP rank's micro-batch
	var total float64
	for j := 0; j < iters; j++ {
		if j%max(a.LogInterval, 1) == 0 {
			logf("> working on iteration: %d", j)
		}
		rows := order[j*mbs : min((j+1)*mbs, len(order))]
		ss := make([]*gpt.Sample, mbs)
		for k := range ss {
			s, err := valid.Get(rows[min(k, len(rows)-1)])
			if err != nil {
				return fmt.Errorf("evaluation iteration %d: %w", j, err)
			}
			if k >= len(rows) { // past a smaller last batch: a row that adds no loss
				c := *s
				c.LossMask = make([]float32, len(s.LossMask))
				s = &c
			}
			ss[k] = s
		}
		sum, n, err := tr.EvaluateLocal([]layers.Batch{toBatch(ss, docs)}, uint64(a.Seed), 0)
		if err != nil {
			return fmt.Errorf("evaluation iteration %d: %w", j, err)
		}
		if !last {
			continue
		}
		if err := ps.DP.AllGather(gathered, tensor.FromF64([]float64{sum, n}, 1, 2)); err != nil {
			return fmt.Errorf("evaluation iteration %d: gathering the data-parallel ranks' losses: %w", j, err)
		}
		v := gathered.F64()
		losses := make([]string, dp)
		for r := range losses {
			l := v[2*r] / v[2*r+1]
			total += l
			losses[r] = fmt.Sprintf("%E", l)
		}
		logf(" iteration %8d/%8d | lm loss (per data-parallel rank): %s |", j+1, iters, strings.Join(losses, " "))
	}
	if last && iters > 0 {
		mean := total / float64(iters*dp)
		logf(" evaluation of %d samples (%d iterations × %d data-parallel ranks) | mean lm loss: %E | lm loss PPL: %E |",
			valid.Len(), iters, dp, mean, math.Exp(math.Min(20, mean)))
	}
	logf("done :-)")
	return nil
}

// hfFolder reports a --load that is a Hugging Face model folder (config.json, no Megatron
// tracker file).
func (a *Args) hfFolder() bool {
	if !a.LoadingCheckpoint() {
		return false
	}
	_, errCfg := os.Stat(filepath.Join(a.Load, "config.json"))
	_, errMeg := megatron.Resolve(a.Load)
	return errCfg == nil && errMeg != nil
}
