package megatron

import (
	"fmt"

	"github.com/gomegatron/gomegatron/kernels"
	"github.com/gomegatron/gomegatron/layers"
	"github.com/gomegatron/gomegatron/tensor"
)

// LoadModel reads a Megatron checkpoint of any TP/PP layout into a whole model (TP = PP = 1)
// on the backend, with the architecture from the checkpoint's args; every parameter comes
// from the joined shards. For evaluation and generation.
func LoadModel(be kernels.Backend, path string) (*layers.GPTModel, ArgsInfo, error) {
	c, err := Open(path)
	if err != nil {
		return nil, ArgsInfo{}, err
	}
	defer c.Close()
	cfg := c.Config
	cfg.TensorModelParallelSize = 1
	m, err := layers.NewGPTModel(be, cfg, 0)
	if err != nil {
		return nil, ArgsInfo{}, fmt.Errorf("megatron: %s: %w", path, err)
	}
	for _, p := range m.Params {
		vals, err := p.LocalFrom(func(q *layers.Param) ([]float32, error) {
			vals, shape, err := c.Full(q.InitKey)
			if err != nil {
				return nil, fmt.Errorf("megatron: %s: %w", path, err)
			}
			if !tensor.SameShape(shape, q.FullShape) {
				return nil, fmt.Errorf("megatron: %s: %s has shape %v, the args describe %v", path, q.InitKey, shape, q.FullShape)
			}
			return vals, nil
		}, 0, 1)
		if err != nil {
			return nil, ArgsInfo{}, err
		}
		be.Upload(p.Data, tensor.FromF32(vals, p.Shape...))
	}
	return m, c.Info, nil
}
