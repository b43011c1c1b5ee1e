package train

import (
	"fmt"

	"github.com/gomegatron/gomegatron/data/gpt"
	"github.com/gomegatron/gomegatron/data/sampler"
	"github.com/gomegatron/gomegatron/data/tokenizer"
)

// FinetuneArgs are `golaunch finetune`'s flags beyond pretraining's: Pai-Megatron-Patch's
// supervised fine-tuning on instruction data (data/sft).
type FinetuneArgs struct {
	Args
	Epochs   int  `name:"epochs" default:"1" help:"Passes over the training set (unless --train-iters or --train-samples sets the length)."`
	KeepLast bool `name:"keep-last" help:"Keep the last partial micro-batch of an epoch (filled from the rank's first samples, where Pai runs it smaller); default drops it."`
}

// sftSamples serves raw JSON samples in the order of Pai's fine-tuning data loaders
// (finetune_utils.build_data_loader): each epoch a torch DistributedSampler over the
// data-parallel ranks (torch.randperm seeded by seed(epoch), padded to a multiple of DP),
// cut into micro-batches per rank. Index i of the single sampler's order (iteration-major,
// rank, then row) maps to rank r's row j·mbs+k of epoch e. A kept partial last batch
// (--keep-last) is filled from the rank's first samples: Pai runs it smaller.
type sftSamples struct {
	d           rawSamples
	n           int // samples in d
	epochs      int
	mbs, dp     int
	iters       int                    // micro-batches per rank per epoch
	seed        func(epoch int) uint64 // the sampler's seed + epoch
	ranks       [][]int                // epoch's per-rank orders, cached
	rankedEpoch int
}

func newSFTSamples(d rawSamples, epochs, mbs, dp int, keepLast bool, seed func(int) uint64) *sftSamples {
	s := &sftSamples{d: d, n: d.Len(), epochs: epochs, mbs: mbs, dp: dp, seed: seed, rankedEpoch: -1}
	s.setIters(keepLast)
	return s
}

// setIters sets the micro-batches per rank per epoch: len(DataLoader) over the rank's
// ceil(n/dp) indices.
func (s *sftSamples) setIters(keepLast bool) {
	perRank := (s.n + s.dp - 1) / s.dp
	s.iters = perRank / s.mbs
	if keepLast {
		s.iters = (perRank + s.mbs - 1) / s.mbs
	}
}

// perEpoch is the samples of one epoch over all ranks.
func (s *sftSamples) perEpoch() int { return s.iters * s.mbs * s.dp }

func (s *sftSamples) Len() int { return s.epochs * s.perEpoch() }

func (s *sftSamples) Get(i int) (*gpt.Sample, error) {
	if i < 0 || i >= s.Len() {
		return nil, fmt.Errorf("SFT sample %d out of range [0, %d)", i, s.Len())
	}
	return s.d.Get(s.index(i))
}

// index is the dataset index of sample i.
func (s *sftSamples) index(i int) int {
	e, w := i/s.perEpoch(), i%s.perEpoch()
	if e != s.rankedEpoch {
		s.ranks = make([][]int, s.dp)
		for r := range s.ranks {
			s.ranks[r] = sampler.DistributedIndices(s.n, s.dp, r, s.seed(e))
		}
		s.rankedEpoch = e
	}
	j, r, k := w/(s.mbs*s.dp), w%(s.mbs*s.dp)/s.mbs, w%s.mbs
	order := s.ranks[r]
	return order[(j*s.mbs+k)%len(order)]
}

// sftSplits loads the training and validation sets and sets the run length: epochs ×
// (samples per DP rank per epoch / micro-batch), Pai's len(train_dataloader) per epoch.
func (f *FinetuneArgs) sftSplits(loss rawLoss) dataHook {
	return func(tok tokenizer.Tokenizer, dp int) ([3]samples, error) {
		var out [3]samples
		a := &f.Args
		if len(a.TrainDataPath) != 1 {
			return out, fmt.Errorf("finetune needs exactly one --train-data-path (a JSON list or jsonl of {instruction, input, output})")
		}
		train, err := a.loadRaw(a.TrainDataPath[0], tok, loss)
		if err != nil {
			return out, err
		}
		// set_epoch(--seed + epoch) on a sampler of seed 0.
		ts := newSFTSamples(train, f.Epochs, a.MicroBatchSize, dp, f.KeepLast, func(e int) uint64 { return uint64(a.Seed) + uint64(e) })
		if ts.iters == 0 {
			return out, fmt.Errorf("%s: %d samples over %d data-parallel ranks do not fill one micro-batch of %d; pass --keep-last", a.TrainDataPath[0], train.Len(), dp, a.MicroBatchSize)
		}
		out[0] = ts
		a.TrainIters = f.Epochs * ts.perEpoch() / a.GlobalBatchSize
		if len(a.ValidDataPath) == 1 {
			valid, err := a.loadRaw(a.ValidDataPath[0], tok, loss)
			if err != nil {
				return out, err
			}
			// Pai loops over the validation loader, whose sampler stays at epoch 0.
			vs := newSFTSamples(valid, 1<<20, a.MicroBatchSize, dp, f.KeepLast, func(int) uint64 { return 0 })
			if vs.iters > 0 {
				out[1] = vs
				a.EvalIters = min(a.EvalIters, vs.perEpoch()/a.GlobalBatchSize)
			}
		}
		return out, nil
	}
}
