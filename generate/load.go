package generate

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/gomegatron/gomegatron/ckpt/hf"
	"github.com/gomegatron/gomegatron/ckpt/megatron"
	"github.com/gomegatron/gomegatron/kernels"
	"github.com/gomegatron/gomegatron/layers"
	"github.com/gomegatron/gomegatron/tensor"
)

// Source says what Load read.
type Source struct {
	Kind   string // "hf" or "megatron"
	Family string // Hugging Face family, "" for Megatron checkpoints
	Config layers.Config
}

// Load builds this rank's tensor-parallel shard of the model stored at path: a Megatron
// checkpoint (tracker file, release/ or iter_ folder; any TP it was saved with) or a
// Hugging Face directory (config.json). The checkpoint's architecture is used; dropout is
// off. When the padded vocabulary is not divisible by the TP size it is padded further
// with zero rows (their logits are never sampled). The model is whole (PP = 1) and in eval
// mode (GPTModel.Eval).
func Load(be kernels.Backend, path string, par layers.Parallel) (*layers.GPTModel, Source, error) {
	m, src, err := load(be, path, par)
	if err == nil {
		m.Eval() // for good: inference
	}
	return m, src, err
}

func load(be kernels.Backend, path string, par layers.Parallel) (*layers.GPTModel, Source, error) {
	par.PPRank, par.PPSize = 0, 1
	if _, err := megatron.Resolve(path); err == nil {
		c, err := megatron.Open(path)
		if err != nil {
			return nil, Source{}, err
		}
		defer c.Close()
		m, err := shardInto(be, c.Config, par, path, c.Full)
		return m, Source{Kind: "megatron", Config: c.Config}, err
	}
	if _, err := os.Stat(filepath.Join(path, "config.json")); err != nil {
		return nil, Source{}, fmt.Errorf("--load %s is neither a Megatron checkpoint (no %s, not a release/ or iter_XXXXXXX folder) nor a Hugging Face directory (no config.json)", path, megatron.TrackerFile)
	}
	if par.TP == nil || par.TP.Size() == 1 {
		hm, full, err := hf.Load(be, path)
		if err != nil {
			return nil, Source{}, err
		}
		return full, Source{Kind: "hf", Family: string(hm.Family), Config: full.Cfg}, nil
	}
	// Each rank reads one full tensor at a time and keeps its shard.
	r, err := hf.Open(path)
	if err != nil {
		return nil, Source{}, err
	}
	defer r.Close()
	m, err := shardInto(be, r.Config, par, path, r.Full)
	return m, Source{Kind: "hf", Family: string(r.Family), Config: r.Config}, err
}

// shardInto builds the parallel model for cfg and fills every parameter with its shard of
// the full tensor full(InitKey) returns.
func shardInto(be kernels.Backend, cfg layers.Config, par layers.Parallel, path string, full func(string) ([]float32, []int, error)) (*layers.GPTModel, error) {
	tp := 1
	if par.TP != nil {
		tp = par.TP.Size()
	}
	cfg.AttentionDropout, cfg.HiddenDropout = 0, 0
	stored := cfg.PaddedVocabSize
	cfg.PaddedVocabSize = layers.PaddedVocab(stored, 1, tp) // stored rounded up to a multiple of TP
	m, err := layers.NewParallelGPTModel(be, cfg, par, 0)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	rank := 0
	if par.TP != nil {
		rank = par.TP.Rank()
	}
	for _, p := range m.Params {
		local, err := p.LocalFrom(func(q *layers.Param) ([]float32, error) {
			vals, shape, err := full(q.InitKey)
			if err != nil {
				return nil, err
			}
			if len(shape) != len(q.FullShape) || (len(shape) == 2 && shape[1] != q.FullShape[1]) || shape[0] > q.FullShape[0] {
				return nil, fmt.Errorf("%s: %s has shape %v, the model needs %v", path, q.InitKey, shape, q.FullShape)
			}
			if shape[0] < q.FullShape[0] { // vocabulary rows padded for TP
				if q.GLU || q.PartitionDim > 0 {
					return nil, fmt.Errorf("%s: %s has shape %v, the model needs %v", path, q.InitKey, shape, q.FullShape)
				}
				padded := make([]float32, tensor.ShapeNumel(q.FullShape))
				copy(padded, vals)
				vals = padded
			}
			return vals, nil
		}, rank, tp)
		if err != nil {
			return nil, err
		}
		be.Upload(p.Data, tensor.FromF32(local, p.Data.Shape()...))
	}
	return m, nil
}
