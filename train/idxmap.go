package train

import (
	"fmt"
	"math"
	"strings"

	"github.com/gomegatron/gomegatron/data/gpt"
	"github.com/gomegatron/gomegatron/data/indexed"
)

// paiIdxmap reports whether pretraining reads Pai-Megatron-Patch's LLamaIdxMapDataset, as
// pretrain_megatron_llama.py does for a --train-data-path prefix with a "-Pretrain"
// --dataset (whatever --data-path says, which it does not read): the legacy pipeline's
// split of that one prefix (--split carves train, valid and test out of it), samples of
// --max-padding-length + 1 tokens, the legacy BlendableDataset for a weighted list, and no
// loss where the input token is padding. Megatron-Core's runs (--use-mcore-models, which
// read --data-path) and plain Megatron flags keep GPTDataset.
func (a *Args) paiIdxmap() bool {
	return !a.UseMcoreModels && len(a.TrainDataPath) > 0 && strings.Contains(a.Dataset, "-Pretrain") && !a.rawJSON()
}

// paiIdxmapSplits builds the three splits of a Pai idxmap run.
func (a *Args) paiIdxmapSplits(sizes [3]int, cfg gpt.BuildConfig, pad int64) ([3]samples, error) {
	var out [3]samples
	prefixes, weights, err := parseBlend("--train-data-path", a.TrainDataPath)
	if err != nil {
		return out, err
	}
	cfg.LegacySplit = true
	var comps [][3]*gpt.Dataset
	var blendSizes [3]int
	if len(prefixes) > 1 {
		if weights == nil {
			return out, fmt.Errorf("--train-data-path: a list of prefixes needs a weight before each (w1 p1 w2 p2 …)")
		}
		// get_datasets_weights_and_num_samples: weights over their plain sum, and each
		// dataset built with ceil(n·w·1.005) samples of every split; the blend is their sum.
		sum := 0.0
		for _, w := range weights {
			sum += w
		}
		if !(sum > 0) {
			return out, fmt.Errorf("--train-data-path: the weights %v must have a positive sum", weights)
		}
		for i := range weights {
			weights[i] /= sum
		}
	}
	for i, p := range prefixes {
		low, err := indexed.Open(p)
		if err != nil {
			return out, fmt.Errorf("--train-data-path: %w", err)
		}
		c := cfg
		c.DataPath = p
		if weights != nil {
			for s, n := range sizes {
				c.Sizes[s] = int(math.Ceil(float64(n) * weights[i] * 1.005))
				blendSizes[s] += c.Sizes[s]
			}
		}
		sp, err := gpt.BuildSplits(low, c)
		if err != nil {
			return out, err
		}
		comps = append(comps, sp)
	}
	for s := range out {
		if len(comps) == 1 {
			if comps[0][s] != nil {
				out[s] = inputPadMask{comps[0][s], pad}
			}
			continue
		}
		var ds []*gpt.Dataset
		for _, c := range comps {
			if c[s] != nil { // BlendableDataset blends the datasets this split has
				ds = append(ds, c[s])
			}
		}
		if len(ds) == 0 {
			continue
		}
		if len(ds) != len(comps) {
			return out, fmt.Errorf("--train-data-path: the %s split is empty in %d of %d datasets (--split %q)", gpt.Split(s), len(comps)-len(ds), len(comps), a.Split)
		}
		b, err := gpt.NewBlendedDataset(ds, weights, blendSizes[s])
		if err != nil {
			return out, err
		}
		out[s] = inputPadMask{blended{b}, pad}
	}
	return out, nil
}

// inputPadMask is pretrain_megatron_llama.py's loss mask: get_ltor_masks_and_position_ids
// on the input tokens with the pad id as its end-of-document token, so the loss skips
// positions whose input is padding (and nothing else).
type inputPadMask struct {
	samples
	pad int64
}

func (m inputPadMask) Get(i int) (*gpt.Sample, error) {
	s, err := m.samples.Get(i)
	if err != nil {
		return nil, err
	}
	mask := make([]float32, len(s.Tokens))
	for k, t := range s.Tokens {
		if t != m.pad {
			mask[k] = 1
		}
	}
	s.LossMask = mask
	return s, nil
}
