package train

import (
	"fmt"

	"github.com/gomegatron/gomegatron/data/gpt"
	"github.com/gomegatron/gomegatron/data/tokenizer"
)

// FinetuneArgs are `golaunch finetune`'s flags beyond pretraining's: Pai-Megatron-Patch's
// supervised fine-tuning on instruction data (data/sft).
type FinetuneArgs struct {
	Args
	Epochs   int  `name:"epochs" default:"1" help:"Passes over the training set (unless --train-iters or --train-samples sets the length)."`
	KeepLast bool `name:"keep-last" help:"Keep the last partial batch of an epoch (filled from the epoch's start); default drops it."`
}

// sftSamples serves raw JSON samples epoch after epoch, each epoch in its own deterministic
// shuffled order (seeded by --seed and the epoch), with per-epoch length perEpoch (the kept
// batches' samples; a kept partial batch wraps around to the epoch's first samples).
type sftSamples struct {
	d        rawSamples
	epochs   int
	perEpoch int
	seed     uint64
	perms    [][]int
}

func (s *sftSamples) Len() int { return s.epochs * s.perEpoch }

func (s *sftSamples) Get(i int) (*gpt.Sample, error) {
	if i < 0 || i >= s.Len() {
		return nil, fmt.Errorf("SFT sample %d out of range [0, %d)", i, s.Len())
	}
	e, k := i/s.perEpoch, i%s.perEpoch
	for len(s.perms) <= e {
		s.perms = append(s.perms, permutation(s.d.Len(), s.seed+uint64(len(s.perms))))
	}
	return s.d.Get(s.perms[e][k%s.d.Len()])
}

// permutation is a Fisher–Yates shuffle of 0..n-1 driven by SplitMix64.
func permutation(n int, seed uint64) []int {
	p := make([]int, n)
	for i := range p {
		p[i] = i
	}
	x := seed
	for i := n - 1; i > 0; i-- {
		x += 0x9E3779B97F4A7C15
		z := (x ^ x>>30) * 0xBF58476D1CE4E5B9
		z = (z ^ z>>27) * 0x94D049BB133111EB
		z ^= z >> 31
		j := int(z % uint64(i+1))
		p[i], p[j] = p[j], p[i]
	}
	return p
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
		batch := a.MicroBatchSize * dp
		per := train.Len() / batch * batch
		if f.KeepLast {
			per = (train.Len() + batch - 1) / batch * batch
		}
		if per == 0 {
			return out, fmt.Errorf("%s: %d samples do not fill one batch of %d (micro-batch × data-parallel); pass --keep-last", a.TrainDataPath[0], train.Len(), batch)
		}
		out[0] = &sftSamples{d: train, epochs: f.Epochs, perEpoch: per, seed: uint64(a.Seed)}
		a.TrainIters = f.Epochs * per / a.GlobalBatchSize
		if len(a.ValidDataPath) == 1 {
			valid, err := a.loadRaw(a.ValidDataPath[0], tok, loss)
			if err != nil {
				return out, err
			}
			if valid.Len() >= batch {
				// Validation walks the whole set in order, once per evaluation.
				vs := &sftSamples{d: valid, epochs: 1 << 20, perEpoch: valid.Len() / batch * batch, seed: uint64(a.Seed) + 1<<40}
				out[1] = vs
				a.EvalIters = min(a.EvalIters, vs.perEpoch/a.GlobalBatchSize)
			}
		}
		return out, nil
	}
}
