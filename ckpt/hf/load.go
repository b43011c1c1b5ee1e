package hf

import (
	"fmt"

	"github.com/gomegatron/gomegatron/ckpt/safetensors"
	"github.com/gomegatron/gomegatron/kernels"
	"github.com/gomegatron/gomegatron/layers"
	"github.com/gomegatron/gomegatron/tensor"
)

// Load reads a Hugging Face model directory (config.json and model.safetensors, sharded or
// not) into a new GPT model on the backend. Every weight of the state dict must be used
// and every model parameter filled; errors name the tensor and the shapes.
func Load(be kernels.Backend, dir string) (*Model, *layers.GPTModel, error) {
	m, err := ReadConfig(dir)
	if err != nil {
		return nil, nil, err
	}
	set, err := safetensors.OpenDir(dir)
	if err != nil {
		return nil, nil, err
	}
	defer set.Close()
	gm, err := layers.NewGPTModel(be, m.Config, 0)
	if err != nil {
		return nil, nil, err
	}
	rules, err := m.rules()
	if err != nil {
		return nil, nil, err
	}
	used := map[string]bool{}
	for _, r := range rules {
		p := gm.Params.ByName(r.megatron)
		if p == nil {
			return nil, nil, fmt.Errorf("internal: mapping names %s, which the model lacks", r.megatron)
		}
		src := make([][]float32, len(r.hf))
		shapes := make([][]int, len(r.hf))
		want := hfShapes(&m.Config, r, p.Data.Shape())
		for i, name := range r.hf {
			t, err := set.Tensor(name)
			if err != nil {
				return nil, nil, fmt.Errorf("%s: %w (needed for %s)", dir, err, r.megatron)
			}
			if !tensor.SameShape(t.Shape(), want[i]) {
				return nil, nil, fmt.Errorf("%s: %s has shape %v, want %v for %s", dir, name, t.Shape(), want[i], r.megatron)
			}
			src[i], shapes[i] = t.ToF32(), t.Shape()
			used[name] = true
		}
		vals, err := toMegatron(&m.Config, r, src, shapes)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %s: %w", dir, r.megatron, err)
		}
		if len(vals) != p.Numel() {
			return nil, nil, fmt.Errorf("%s: %v of shapes %v give %d values, but %s has shape %v", dir, r.hf, shapes, len(vals), r.megatron, p.Data.Shape())
		}
		be.Upload(p.Data, tensor.FromF32(vals, p.Data.Shape()...))
	}
	for _, name := range set.Names() {
		if !used[name] && !ignoredHF(name) && !(name == "lm_head.weight" && !m.Config.UntieEmbeddingsAndOutputWeights) {
			return nil, nil, fmt.Errorf("%s: tensor %s is not used by the %s mapping", dir, name, m.Family)
		}
	}
	return m, gm, nil
}
