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
		return [][]int{ours}
	case gateUp:
		return [][]int{with(ours[0] / 2), with(ours[0] / 2)}
	case qkvSplit:
		hn := c.KVChannels
		return [][]int{with(c.NumAttentionHeads * hn), with(c.NumQueryGroups * hn), with(c.NumQueryGroups * hn)}
	}
	return [][]int{ours}
}

// Export converts the model's parameters (or, with grads, their gradients) into Hugging
// Face tensors under the family's state-dict names.
func (m *Model) Export(be kernels.Backend, gm *layers.GPTModel, grads bool) (map[string]*tensor.Tensor, error) {
	rules, err := m.rules()
	if err != nil {
		return nil, err
	}
	out := map[string]*tensor.Tensor{}
	for _, r := range rules {
		p := gm.Params.ByName(r.megatron)
		if p == nil {
			return nil, fmt.Errorf("model has no parameter %s", r.megatron)
		}
		src := p.Data
		if grads {
			if p.Grad == nil {
				return nil, fmt.Errorf("parameter %s has no gradient buffer", r.megatron)
			}
			src = p.Grad
		}
		host := tensor.New(tensor.F32, src.Shape()...)
		be.Download(host, src)
		shapes := hfShapes(&m.Config, r, src.Shape())
		parts, err := toHF(&m.Config, r, host.F32(), shapes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", r.megatron, err)
		}
		for i, name := range r.hf {
			out[name] = tensor.FromF32(parts[i], shapes[i]...)
		}
	}
	return out, nil
}
