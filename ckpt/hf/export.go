package hf

import (
	"fmt"

	"github.com/gomegatron/gomegatron/kernels"
	"github.com/gomegatron/gomegatron/layers"
	"github.com/gomegatron/gomegatron/tensor"
)

// hfShapes gives the Hugging Face shapes of a rule's tensors from the Megatron shape.
func hfShapes(c *layers.Config, r rule, ours []int) [][]int {
	rest := ours[1:]
	with := func(rows int) []int { return append([]int{rows}, rest...) }
	switch r.kind {
	case transpose, qkvConcatT:
		if len(ours) == 2 {
			return [][]int{{ours[1], ours[0]}}
		}
	case gateUp:
		return [][]int{with(ours[0] / 2), with(ours[0] / 2)}
	case qkvSplit:
		hn := c.KVChannels
		return [][]int{with(c.NumAttentionHeads * hn), with(c.NumQueryGroups * hn), with(c.NumQueryGroups * hn)}
	}
	return [][]int{append([]int(nil), ours...)}
}

// Export converts the model's parameters (or, with grads, their gradients) into Hugging
// Face tensors under the family's state-dict names.
func (m *Model) Export(be kernels.Backend, gm *layers.GPTModel, grads bool) (map[string]*tensor.Tensor, error) {
	out := map[string]*tensor.Tensor{}
	err := m.export(be, gm, grads, func(_, name string, v []float32, shape []int) error {
		out[name] = tensor.FromF32(v, shape...)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// export calls emit with every Hugging Face tensor made from the model's parameters (or
// gradients), in the mapping's order: the Megatron parameter it comes from, its name, its
// float32 values and its shape.
func (m *Model) export(be kernels.Backend, gm *layers.GPTModel, grads bool, emit func(megatron, name string, v []float32, shape []int) error) error {
	rules, err := m.rules()
	if err != nil {
		return err
	}
	for _, r := range rules {
		p, part := gm.Params.Find(r.megatron)
		if p == nil {
			return fmt.Errorf("model has no parameter %s", r.megatron)
		}
		src := p.Data
		if grads {
			if p.Grad == nil {
				return fmt.Errorf("parameter %s has no gradient buffer", r.megatron)
			}
			src = p.Grad
		}
		if part >= 0 { // an expert of a GroupedMLP weight: its block, transposed back
			src = p.ExpertBlock(src, part)
		}
		host := tensor.New(tensor.F32, src.Shape()...)
		be.Download(host, src)
		vals := host.F32()
		if part >= 0 {
			vals, src = p.ExpertShard(vals, part), src.View(p.Experts[part].Shape...)
		}
		if !grads { // the gradient of 1 + w is w's
			vals = hfWeight(gm.Cfg.ApplyLayernorm1p, r, vals)
		}
		shapes := hfShapes(&m.Config, r, src.Shape())
		parts, err := toHF(&m.Config, r, vals, shapes)
		if err != nil {
			return fmt.Errorf("%s: %w", r.megatron, err)
		}
		for i, name := range r.hf {
			if err := emit(r.megatron, name, parts[i], shapes[i]); err != nil {
				return err
			}
		}
	}
	return nil
}
