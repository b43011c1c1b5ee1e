package hf

import (
	"fmt"
	"strings"

	"github.com/gomegatron/gomegatron/tensor"
)

// Rule says which Hugging Face tensors make one full (unsharded) Megatron tensor, named
// with global layer numbers as in layers.Param.InitKey.
type Rule struct {
	Megatron string
	HF       []string
	rule     rule
}

// Rules lists every Megatron tensor of the model with its Hugging Face sources, in the
// order the mapping defines them.
func (m *Model) Rules() ([]Rule, error) {
	rs, err := m.rules()
	if err != nil {
		return nil, err
	}
	out := make([]Rule, len(rs))
	for i, r := range rs {
		out[i] = Rule{Megatron: r.megatron, HF: r.hf, rule: r}
	}
	return out, nil
}

// ToHF splits a full Megatron tensor of the given shape back into the rule's Hugging Face
// tensors (float32), the exact inverse of Reader.Full.
func (m *Model) ToHF(r Rule, v []float32, shape []int) ([]*tensor.Tensor, error) {
	v = hfWeight(m.Config.ApplyLayernorm1p, r.rule, v)
	shapes := hfShapes(&m.Config, r.rule, shape)
	parts, err := toHF(&m.Config, r.rule, v, shapes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", r.Megatron, err)
	}
	out := make([]*tensor.Tensor, len(parts))
	for i, p := range parts {
		out[i] = tensor.FromF32(p, shapes[i]...)
	}
	return out, nil
}

// HFShapes gives the Hugging Face shapes of r's tensors from the full Megatron shape: the
// q/k/v projections of a fused QKV, the halves of a SwiGLU fc1 (gate_proj/up_proj, or an
// expert's w1/w3), GPT-2's transposed Conv1D weights, else the same shape.
func (m *Model) HFShapes(r Rule, shape []int) [][]int { return hfShapes(&m.Config, r.rule, shape) }

// hfWeight is a Megatron weight as Hugging Face holds it: with --apply-layernorm-1p
// (onePlus) the LayerNorm weights store γ − 1, and Hugging Face's LayerNorm takes γ.
func hfWeight(onePlus bool, r rule, v []float32) []float32 {
	if !onePlus || !strings.HasSuffix(r.megatron, "layernorm.weight") {
		return v
	}
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = x + 1
	}
	return out
}
