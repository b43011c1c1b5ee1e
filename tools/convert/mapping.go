package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/gomegatron/gomegatron/ckpt/hf"
	"github.com/gomegatron/gomegatron/layers"
	"github.com/gomegatron/gomegatron/tensor"
)

// hfModel is a Hugging Face folder's architecture and weight mapping onto Megatron names:
// one of ckpt/hf's dense families, or Mixtral (mixtral.go), whose attention, norms and
// embeddings are mapped by ckpt/hf's Mistral rules and whose block_sparse_moe blocks are
// mapped here.
type hfModel struct {
	Dir    string
	Family string        // Hugging Face model_type
	Config layers.Config // the architecture, experts included
	// dense maps everything but the MoE blocks: the family itself, or for Mixtral the
	// Mistral model of the same shape without experts.
	dense *hf.Model
}

// hfRule says which Hugging Face tensors make one full Megatron tensor (global layer
// numbers, as layers.Param.InitKey): a ckpt/hf rule, or one of an MoE block's.
type hfRule struct {
	Megatron string
	HF       []string
	dense    hf.Rule
	moe      moeKind
}

// moeKind says how an MoE block's Megatron tensor is made from Mixtral's.
type moeKind int

const (
	notMoE    moeKind = iota // a ckpt/hf rule
	moeCopy                  // router.weight = gate.weight, linear_fc2.weight = w2.weight
	moeGateUp                // linear_fc1.weight = [w1; w3] (SwiGLU gate, then up)
)

// mixtral is Hugging Face's model_type for Mixtral (MixtralForCausalLM).
const mixtral = "mixtral"

// readHFModel reads dir/config.json: Mixtral here, every other family through ckpt/hf.
func readHFModel(dir string) (*hfModel, error) {
	b, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		return nil, fmt.Errorf("reading Hugging Face config: %w", err)
	}
	var head struct {
		ModelType string `json:"model_type"`
	}
	if err := json.Unmarshal(b, &head); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, "config.json"), err)
	}
	if head.ModelType == mixtral {
		return readMixtral(dir, b)
	}
	m, err := hf.ReadConfig(dir)
	if err != nil {
		return nil, err
	}
	return &hfModel{Dir: dir, Family: string(m.Family), Config: m.Config, dense: m}, nil
}

var denseMLPRe = regexp.MustCompile(`^decoder\.layers\.(\d+)\.mlp\.linear_fc([12])\.weight$`)

// rules lists every Megatron tensor with its Hugging Face sources. For Mixtral the dense
// MLP's two rules of each layer give way to the MoE block's: the router, then per expert
// linear_fc1 and linear_fc2 (Specs' order).
func (m *hfModel) rules() ([]hfRule, error) {
	rs, err := m.dense.Rules()
	if err != nil {
		return nil, err
	}
	out := make([]hfRule, 0, len(rs))
	for _, r := range rs {
		if mm := denseMLPRe.FindStringSubmatch(r.Megatron); mm != nil && m.Config.NumExperts > 0 {
			if mm[2] == "1" {
				out = append(out, moeRules(mm[1], m.Config.NumExperts)...)
			}
			continue
		}
		out = append(out, hfRule{Megatron: r.Megatron, HF: r.HF, dense: r})
	}
	return out, nil
}

// moeRules maps layer L's MoE block onto Mixtral's block_sparse_moe:
//
//	decoder.layers.L.mlp.router.weight                          ← model.layers.L.block_sparse_moe.gate.weight
//	decoder.layers.L.mlp.experts.local_experts.e.linear_fc1.weight ← [experts.e.w1.weight; experts.e.w3.weight]
//	decoder.layers.L.mlp.experts.local_experts.e.linear_fc2.weight ← experts.e.w2.weight
func moeRules(layer string, experts int) []hfRule {
	meg := "decoder.layers." + layer + ".mlp."
	h := "model.layers." + layer + ".block_sparse_moe."
	out := []hfRule{{Megatron: meg + "router.weight", HF: []string{h + "gate.weight"}, moe: moeCopy}}
	for e := 0; e < experts; e++ {
		me := fmt.Sprintf("%sexperts.local_experts.%d.", meg, e)
		he := fmt.Sprintf("%sexperts.%d.", h, e)
		out = append(out,
			hfRule{Megatron: me + "linear_fc1.weight", HF: []string{he + "w1.weight", he + "w3.weight"}, moe: moeGateUp},
			hfRule{Megatron: me + "linear_fc2.weight", HF: []string{he + "w2.weight"}, moe: moeCopy})
	}
	return out
}

// toMegatron builds the full Megatron tensor of r from its Hugging Face tensors (values
// widened to float32 exactly).
func (m *hfModel) toMegatron(r hfRule, src []*tensor.Tensor) ([]float32, error) {
	if len(src) != len(r.HF) {
		return nil, fmt.Errorf("%s needs %d tensors, got %d", r.Megatron, len(r.HF), len(src))
	}
	switch r.moe {
	case moeCopy:
		return src[0].ToF32(), nil
	case moeGateUp:
		if !tensor.SameShape(src[0].Shape(), src[1].Shape()) {
			return nil, fmt.Errorf("%s %v and %s %v must have the same shape", r.HF[0], src[0].Shape(), r.HF[1], src[1].Shape())
		}
		return append(src[0].ToF32(), src[1].ToF32()...), nil
	}
	return m.dense.ToMegatron(r.dense, src)
}

// toHF splits a full Megatron tensor back into the rule's Hugging Face tensors (float32),
// the exact inverse of toMegatron.
func (m *hfModel) toHF(r hfRule, v []float32, shape []int) ([]*tensor.Tensor, error) {
	switch r.moe {
	case moeCopy:
		return []*tensor.Tensor{tensor.FromF32(v, shape...)}, nil
	case moeGateUp:
		half := m.hfShape(r, 0, shape)
		n := numel(half)
		if 2*n != len(v) {
			return nil, fmt.Errorf("%s: %d values do not split into [w1; w3] of shape %v", r.Megatron, len(v), half)
		}
		return []*tensor.Tensor{tensor.FromF32(v[:n], half...), tensor.FromF32(v[n:], half...)}, nil
	}
	return m.dense.ToHF(r.dense, v, shape)
}

// hfShape is the Hugging Face shape of part i of a rule, from the Megatron shape: the
// q/k/v projections of a fused QKV, the halves of a SwiGLU fc1 (gate_proj/up_proj, or an
// expert's w1/w3), GPT-2's transposed Conv1D weights, else the same shape. The produced
// tensors are checked against it.
func (m *hfModel) hfShape(r hfRule, i int, ours []int) []int {
	c := &m.Config
	rest := ours[1:]
	with := func(rows int) []int { return append([]int{rows}, rest...) }
	switch len(r.HF) {
	case 3:
		if i == 0 {
			return with(c.NumAttentionHeads * c.KVChannels)
		}
		return with(c.NumQueryGroups * c.KVChannels)
	case 2:
		return with(ours[0] / 2)
	}
	if m.dense.Family == hf.GPT2 && len(ours) == 2 && strings.HasSuffix(r.HF[0], ".weight") &&
		(strings.Contains(r.HF[0], ".attn.") || strings.Contains(r.HF[0], ".mlp.")) {
		return []int{ours[1], ours[0]}
	}
	return append([]int(nil), ours...)
}
