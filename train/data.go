package train

import (
	"fmt"
	"strconv"

	"github.com/gomegatron/gomegatron/comm"
	"github.com/gomegatron/gomegatron/data/gpt"
	"github.com/gomegatron/gomegatron/data/indexed"
	"github.com/gomegatron/gomegatron/data/sampler"
	"github.com/gomegatron/gomegatron/layers"
)

// samples is a dataset split as training reads it.
type samples interface {
	Len() int
	Get(i int) (*gpt.Sample, error)
}

type blended struct{ *gpt.BlendedDataset }

func (b blended) Get(i int) (*gpt.Sample, error) {
	_, s, err := b.BlendedDataset.Get(i)
	return s, err
}

// mockSamples are deterministic random tokens (Megatron's --mock-data).
type mockSamples struct {
	n, seq, vocab int
	seed          uint64
}

func (m mockSamples) Len() int { return m.n }

func (m mockSamples) Get(i int) (*gpt.Sample, error) {
	x := m.seed ^ uint64(i)*0x9E3779B97F4A7C15
	text := make([]int64, m.seq+1)
	for j := range text {
		x = x*6364136223846793005 + 1442695040888963407
		text[j] = int64(x>>33) % int64(m.vocab)
	}
	s := &gpt.Sample{Tokens: text[:m.seq], Labels: text[1:], LossMask: make([]float32, m.seq)}
	for j := range s.LossMask {
		s.LossMask[j] = 1
	}
	return s, nil
}

// splitSizes are Megatron's get_train_valid_test_num_samples.
func (a *Args) splitSizes(trainIters int) [3]int {
	train := a.TrainSamples
	if train == 0 {
		train = trainIters * a.GlobalBatchSize
	}
	valid := (trainIters/a.EvalInterval + 1) * a.EvalIters * a.GlobalBatchSize
	return [3]int{train, valid, a.EvalIters * a.GlobalBatchSize}
}

// parseBlend reads a data path flag's "p" or "w1 p1 w2 p2 …" (nil weights when unweighted).
func parseBlend(flag string, paths []string) (prefixes []string, weights []float64, err error) {
	if len(paths) == 1 {
		return paths, nil, nil
	}
	if _, err := strconv.ParseFloat(paths[0], 64); err != nil {
		return paths, nil, nil
	}
	if len(paths)%2 != 0 {
		return nil, nil, fmt.Errorf("%s: weights and prefixes must alternate, got %d words", flag, len(paths))
	}
	for i := 0; i < len(paths); i += 2 {
		w, err := strconv.ParseFloat(paths[i], 64)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %q is not a weight", flag, paths[i])
		}
		weights = append(weights, w)
		prefixes = append(prefixes, paths[i+1])
	}
	return prefixes, weights, nil
}

// buildSplits opens the data and builds Megatron's train/valid/test datasets.
func (a *Args) buildSplits(sizes [3]int, ds gpt.DatasetConfig) ([3]samples, error) {
	var out [3]samples
	if a.MockData {
		for i, n := range sizes {
			out[i] = mockSamples{n: n, seq: a.SeqLength, vocab: a.VocabSize, seed: uint64(a.Seed) + uint64(i)<<32}
		}
		return out, nil
	}
	cfg := gpt.BuildConfig{Split: a.Split, Sizes: sizes, RandomSeed: uint32(a.Seed), SequenceLength: a.SeqLength,
		AddExtraToken: true, DropLastPartialValidationSequence: true, CacheDir: a.DataCachePath, Dataset: ds}
	if a.paiIdxmap() {
		return a.paiIdxmapSplits(sizes, cfg, a.tokPad)
	}
	if len(a.DataPath) > 0 {
		prefixes, weights, err := parseBlend("--data-path", a.DataPath)
		if err != nil {
			return out, err
		}
		if len(prefixes) == 1 {
			low, err := indexed.Open(prefixes[0])
			if err != nil {
				return out, fmt.Errorf("--data-path: %w", err)
			}
			cfg.DataPath = prefixes[0]
			sp, err := gpt.BuildSplits(low, cfg)
			if err != nil {
				return out, err
			}
			for i, d := range sp {
				if d != nil {
					out[i] = d
				}
			}
			return out, nil
		}
		src, err := openBlend("--data-path", prefixes)
		if err != nil {
			return out, err
		}
		sp, err := gpt.BuildBlendedSplits(src, weights, cfg)
		if err != nil {
			return out, err
		}
		for i, d := range sp {
			if d != nil {
				out[i] = blended{d}
			}
		}
		return out, nil
	}
	// --train-data-path / --valid-data-path / --test-data-path: each is a whole split, one
	// prefix or a blend of its own (Megatron's blend_per_split).
	for i, paths := range [][]string{a.TrainDataPath, a.ValidDataPath, a.TestDataPath} {
		if len(paths) == 0 {
			continue
		}
		flag := [3]string{"--train-data-path", "--valid-data-path", "--test-data-path"}[i]
		prefixes, weights, err := parseBlend(flag, paths)
		if err != nil {
			return out, err
		}
		c := cfg
		if len(prefixes) == 1 {
			low, err := indexed.Open(prefixes[0])
			if err != nil {
				return out, fmt.Errorf("%s: %w", flag, err)
			}
			c.DataPath, c.Split = prefixes[0], "1,0,0"
			c.Sizes = [3]int{sizes[i], -1, -1}
			sp, err := gpt.BuildSplits(low, c)
			if err != nil {
				return out, err
			}
			out[i] = sp[0]
			continue
		}
		if sizes[i] <= 0 {
			continue // nothing is read from this split
		}
		// Every component is whole: the split is spoofed to give it all to split i.
		c.Split = [3]string{"1,0,0", "0,1,0", "0,0,1"}[i]
		c.Sizes = [3]int{}
		c.Sizes[i] = sizes[i]
		src, err := openBlend(flag, prefixes)
		if err != nil {
			return out, err
		}
		sp, err := gpt.BuildBlendedSplits(src, weights, c)
		if err != nil {
			return out, fmt.Errorf("%s: %w", flag, err)
		}
		out[i] = blended{sp[i]}
	}
	return out, nil
}

// openBlend opens the prefixes of a blend.
func openBlend(flag string, prefixes []string) ([]gpt.BlendSource, error) {
	var src []gpt.BlendSource
	for _, p := range prefixes {
		low, err := indexed.Open(p)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", flag, err)
		}
		src = append(src, gpt.BlendSource{Dataset: low, DataPath: p})
	}
	return src, nil
}

// documents is how a batch treats end-of-document tokens: Megatron's --reset-position-ids
// and --reset-attention-mask, with the tokenizer's EOD (−1: none).
type documents struct {
	eod                 int64
	resetPos, resetAttn bool
}

// toBatch stacks samples into one microbatch [b, s], with each token's position and
// document start where docs resets them at every EOD (as get_ltor_masks_and_position_ids).
func toBatch(ss []*gpt.Sample, docs documents) layers.Batch {
	var bt layers.Batch
	for _, s := range ss {
		bt.Tokens = append(bt.Tokens, s.Tokens...)
		bt.Labels = append(bt.Labels, s.Labels...)
		bt.LossMask = append(bt.LossMask, s.LossMask...)
		if docs.resetPos || docs.resetAttn {
			starts := gpt.DocStarts(s.Tokens, docs.eod)
			for i, d := range starts {
				if docs.resetPos {
					bt.Positions = append(bt.Positions, int64(i)-int64(d))
				}
				if docs.resetAttn {
					bt.DocStart = append(bt.DocStart, d)
				}
			}
		}
	}
	return bt
}

// loader reads one split's micro-batches for this rank in the order of Megatron's data
// loader (--dataloader-type), from the consumed-samples count of the checkpoint.
type loader struct {
	split    samples
	cfg      sampler.Config
	kind     string
	sharding bool
	numMicro int
	docs     documents
	s        sampler.Sampler // made on first use: a finished run never reads
}

func (a *Args) newLoader(split samples, consumed int64, ps *comm.ParallelState, docs documents) *loader {
	l := &loader{split: split, kind: a.DataloaderType, sharding: !a.NoDataSharding, docs: docs,
		numMicro: a.GlobalBatchSize / (a.MicroBatchSize * ps.DPSize),
		cfg:      sampler.Config{MicroBatchSize: a.MicroBatchSize, DPSize: ps.DPSize, DPRank: ps.Coords.DP, Consumed: consumed}}
	if split != nil {
		l.cfg.Total = split.Len()
	}
	return l
}

// next is one global batch's micro-batches on this rank.
func (l *loader) next() ([]layers.Batch, error) { return l.nextN(l.numMicro) }

// nextN is the next n micro-batches on this rank (a ramped-up global batch).
func (l *loader) nextN(n int) ([]layers.Batch, error) {
	if l.s == nil {
		s, err := sampler.New(l.kind, l.cfg, l.sharding)
		if err != nil {
			return nil, err
		}
		l.s = s
	}
	micro := make([]layers.Batch, n)
	for j := range micro {
		idx, err := l.s.Next()
		if err != nil {
			return nil, err
		}
		ss := make([]*gpt.Sample, len(idx))
		for k, i := range idx {
			if ss[k], err = l.split.Get(i); err != nil {
				return nil, err
			}
		}
		micro[j] = toBatch(ss, l.docs)
	}
	return micro, nil
}
