package hf

import (
	"fmt"
	"strings"

	"github.com/gomegatron/gomegatron/layers"
	"github.com/gomegatron/gomegatron/tensor"
)

// kind says how a Megatron tensor is made from Hugging Face tensors.
type kind int

const (
	copyAs     kind = iota // same layout
	transpose              // GPT-2 Conv1D stores [in, out]
	qkvSplit               // separate q, k, v projections (Llama family)
	qkvConcat              // one [q | k | v] matrix, heads contiguous in each part
	qkvConcatT             // qkvConcat stored as a Conv1D [in, out] (GPT-2)
	gateUp                 // SwiGLU fc1 = [gate; up]
)

// rule maps one Megatron parameter to its Hugging Face sources.
type rule struct {
	megatron string
	kind     kind
	hf       []string
}

// rules lists, for every parameter of the model, where it comes from in the family's
// Hugging Face state dict. Mixtral is Mistral with each layer's MLP replaced by the MoE
// block's router and experts (moeRules). The fused QKV of BLOOM, Falcon and StarCoder-MQA is already
// Megatron's per-group [q… | k | v] layout, so it is a plain copy.
func (m *Model) rules() ([]rule, error) {
	c := &m.Config
	var r []rule
	add := func(meg string, k kind, hf ...string) { r = append(r, rule{meg, k, hf}) }
	lnPair := func(meg, hf string) {
		add(meg+".weight", copyAs, hf+".weight")
		if c.Normalization == "LayerNorm" {
			add(meg+".bias", copyAs, hf+".bias")
		}
	}
	linear := func(meg string, k kind, bias bool, hf ...string) {
		add(meg+".weight", k, suffix(hf, ".weight")...)
		if bias {
			bk := k
			if k == transpose {
				bk = copyAs
			}
			if k == qkvConcatT {
				bk = qkvConcat
			}
			add(meg+".bias", bk, suffix(hf, ".bias")...)
		}
	}
	switch {
	case m.Family.HasExperts() && c.NumExperts < 1:
		return nil, fmt.Errorf("a %s model needs experts; the configuration's MLP is dense (num_experts %d)", m.Family, c.NumExperts)
	case !m.Family.HasExperts() && c.NumExperts > 0:
		return nil, fmt.Errorf("a %s model has no experts; a mixture-of-experts model (%d experts) maps as mixtral", m.Family, c.NumExperts)
	case c.MultiLatentAttention != m.Family.latent():
		return nil, fmt.Errorf("multi-latent attention (%v) is deepseek_v2's and deepseek_v3's, not %s's", c.MultiLatentAttention, m.Family)
	case m.Family.latent() && !c.QKLayernorm:
		return nil, fmt.Errorf("a %s model's latent norms (q_a_layernorm, kv_a_layernorm) are Megatron's --qk-layernorm, which the configuration lacks", m.Family)
	case c.MoERouterEnableExpertBias && m.Family != DeepseekV3:
		return nil, fmt.Errorf("the router's expert bias (--moe-router-enable-expert-bias) is deepseek_v3's e_score_correction_bias, not %s's", m.Family)
	}
	bias := c.AddBiasLinear()
	for i := 0; i < c.NumLayers; i++ {
		L := fmt.Sprintf("decoder.layers.%d.", i)
		switch m.Family {
		case Llama, Mistral, Qwen2, Qwen3, Mixtral, Qwen3MoE, Qwen2MoE, Deepseek, DeepseekV2, DeepseekV3, Baichuan, Starcoder2, GLM, Phi3:
			h := fmt.Sprintf("model.layers.%d.", i)
			lnPair(L+"input_layernorm", h+"input_layernorm")
			switch m.Family {
			case DeepseekV2, DeepseekV3:
				mlaRules(add, c, L, h)
			case Baichuan:
				add(L+"self_attention.linear_qkv.weight", qkvConcat, h+"self_attn.W_pack.weight")
			case Phi3:
				add(L+"self_attention.linear_qkv.weight", qkvConcat, h+"self_attn.qkv_proj.weight")
			default:
				linear(L+"self_attention.linear_qkv", qkvSplit, bias || c.AddQKVBias, h+"self_attn.q_proj", h+"self_attn.k_proj", h+"self_attn.v_proj")
			}
			if !m.Family.latent() {
				linear(L+"self_attention.linear_proj", copyAs, bias, h+"self_attn.o_proj")
			}
			if c.QKLayernorm && !m.Family.latent() {
				lnPair(L+"self_attention.q_layernorm", h+"self_attn.q_norm")
				lnPair(L+"self_attention.k_layernorm", h+"self_attn.k_norm")
			}
			lnPair(L+"pre_mlp_layernorm", h+"post_attention_layernorm")
			switch {
			case m.Family.HasExperts() && c.IsMoELayer(i):
				moeRules(add, L, h, c.NumExperts, m.Family, c.MoESharedExpertIntermediateSize > 0, c.MoERouterEnableExpertBias)
			case m.Family == GLM || m.Family == Phi3: // gate_up_proj is [gate; up]
				add(L+"mlp.linear_fc1.weight", copyAs, h+"mlp.gate_up_proj.weight")
				add(L+"mlp.linear_fc2.weight", copyAs, h+"mlp.down_proj.weight")
			case m.Family == Starcoder2: // a GeLU MLP: c_fc → act → c_proj, with biases
				linear(L+"mlp.linear_fc1", copyAs, bias, h+"mlp.c_fc")
				linear(L+"mlp.linear_fc2", copyAs, bias, h+"mlp.c_proj")
			default:
				add(L+"mlp.linear_fc1.weight", gateUp, h+"mlp.gate_proj.weight", h+"mlp.up_proj.weight")
				add(L+"mlp.linear_fc2.weight", copyAs, h+"mlp.down_proj.weight")
			}
		case ChatGLM:
			h := fmt.Sprintf("transformer.encoder.layers.%d.", i)
			lnPair(L+"input_layernorm", h+"input_layernorm")
			linear(L+"self_attention.linear_qkv", qkvConcat, bias || c.AddQKVBias, h+"self_attention.query_key_value")
			linear(L+"self_attention.linear_proj", copyAs, bias, h+"self_attention.dense")
			lnPair(L+"pre_mlp_layernorm", h+"post_attention_layernorm")
			linear(L+"mlp.linear_fc1", copyAs, bias, h+"mlp.dense_h_to_4h") // [gate; up], SwiGLU's chunk(2)
			linear(L+"mlp.linear_fc2", copyAs, bias, h+"mlp.dense_4h_to_h")
		case Internlm2:
			h := fmt.Sprintf("model.layers.%d.", i)
			lnPair(L+"input_layernorm", h+"attention_norm")
			// wqkv is [q_{g·r} … q_{g·r+r−1}, k_g, v_g] per KV group g (its rearrange of
			// "(h gs d)"): Megatron's own layout.
			add(L+"self_attention.linear_qkv.weight", copyAs, h+"attention.wqkv.weight")
			add(L+"self_attention.linear_proj.weight", copyAs, h+"attention.wo.weight")
			lnPair(L+"pre_mlp_layernorm", h+"ffn_norm")
			add(L+"mlp.linear_fc1.weight", gateUp, h+"feed_forward.w1.weight", h+"feed_forward.w3.weight")
			add(L+"mlp.linear_fc2.weight", copyAs, h+"feed_forward.w2.weight")
		case Qwen: // a2 = w2(x) is SwiGLU's gate: a1·silu(a2)
			h := fmt.Sprintf("transformer.h.%d.", i)
			lnPair(L+"input_layernorm", h+"ln_1")
			linear(L+"self_attention.linear_qkv", qkvConcat, true, h+"attn.c_attn")
			linear(L+"self_attention.linear_proj", copyAs, bias, h+"attn.c_proj")
			lnPair(L+"pre_mlp_layernorm", h+"ln_2")
			add(L+"mlp.linear_fc1.weight", gateUp, h+"mlp.w2.weight", h+"mlp.w1.weight")
			if bias {
				add(L+"mlp.linear_fc1.bias", gateUp, h+"mlp.w2.bias", h+"mlp.w1.bias")
			}
			linear(L+"mlp.linear_fc2", copyAs, bias, h+"mlp.c_proj")
		case GPT2, BigCode:
			h := fmt.Sprintf("transformer.h.%d.", i)
			lin, qkv := copyAs, qkvConcat
			if m.Family == GPT2 {
				lin, qkv = transpose, qkvConcatT
			}
			if c.NumQueryGroups == 1 && m.Family == BigCode {
				qkv = copyAs // [q (H) | k | v] is already the single-group layout
			}
			lnPair(L+"input_layernorm", h+"ln_1")
			linear(L+"self_attention.linear_qkv", qkv, bias, h+"attn.c_attn")
			linear(L+"self_attention.linear_proj", lin, bias, h+"attn.c_proj")
			lnPair(L+"pre_mlp_layernorm", h+"ln_2")
			linear(L+"mlp.linear_fc1", lin, bias, h+"mlp.c_fc")
			linear(L+"mlp.linear_fc2", lin, bias, h+"mlp.c_proj")
		case Bloom:
			h := fmt.Sprintf("transformer.h.%d.", i)
			lnPair(L+"input_layernorm", h+"input_layernorm")
			linear(L+"self_attention.linear_qkv", copyAs, bias, h+"self_attention.query_key_value")
			linear(L+"self_attention.linear_proj", copyAs, bias, h+"self_attention.dense")
			lnPair(L+"pre_mlp_layernorm", h+"post_attention_layernorm")
			linear(L+"mlp.linear_fc1", copyAs, bias, h+"mlp.dense_h_to_4h")
			linear(L+"mlp.linear_fc2", copyAs, bias, h+"mlp.dense_4h_to_h")
		case Falcon:
			h := fmt.Sprintf("transformer.h.%d.", i)
			if c.ParallelMLPNorm { // new_decoder_architecture: ln_attn and ln_mlp
				lnPair(L+"input_layernorm", h+"ln_attn")
				lnPair(L+"pre_mlp_layernorm", h+"ln_mlp")
			} else {
				lnPair(L+"input_layernorm", h+"input_layernorm")
			}
			linear(L+"self_attention.linear_qkv", copyAs, bias, h+"self_attention.query_key_value")
			linear(L+"self_attention.linear_proj", copyAs, bias, h+"self_attention.dense")
			if !c.ParallelAttention {
				lnPair(L+"pre_mlp_layernorm", h+"post_attention_layernorm")
			}
			linear(L+"mlp.linear_fc1", copyAs, bias, h+"mlp.dense_h_to_4h")
			linear(L+"mlp.linear_fc2", copyAs, bias, h+"mlp.dense_4h_to_h")
		default:
			return nil, fmt.Errorf("no weight mapping for family %q", m.Family)
		}
	}
	llamaLike := m.Family == Llama || m.Family == Mistral || m.Family == Qwen2 || m.Family == Qwen3 || m.Family == Mixtral ||
		m.Family == Qwen3MoE || m.Family == Qwen2MoE || m.Family == Deepseek || m.Family.latent() || m.Family == Baichuan || m.Family == Starcoder2 || m.Family == GLM ||
		m.Family == Phi3
	switch {
	case llamaLike:
		add("embedding.word_embeddings.weight", copyAs, "model.embed_tokens.weight")
		lnPair("decoder.final_layernorm", "model.norm")
		if c.UntieEmbeddingsAndOutputWeights {
			add("output_layer.weight", copyAs, "lm_head.weight")
		}
	case m.Family == GPT2 || m.Family == BigCode:
		add("embedding.word_embeddings.weight", copyAs, "transformer.wte.weight")
		add("embedding.position_embeddings.weight", copyAs, "transformer.wpe.weight")
		lnPair("decoder.final_layernorm", "transformer.ln_f")
	case m.Family == Bloom:
		add("embedding.word_embeddings.weight", copyAs, "transformer.word_embeddings.weight")
		lnPair("embedding.word_embeddings_layernorm", "transformer.word_embeddings_layernorm")
		lnPair("decoder.final_layernorm", "transformer.ln_f")
	case m.Family == Falcon:
		add("embedding.word_embeddings.weight", copyAs, "transformer.word_embeddings.weight")
		lnPair("decoder.final_layernorm", "transformer.ln_f")
	case m.Family == Qwen:
		add("embedding.word_embeddings.weight", copyAs, "transformer.wte.weight")
		lnPair("decoder.final_layernorm", "transformer.ln_f")
	case m.Family == ChatGLM:
		add("embedding.word_embeddings.weight", copyAs, "transformer.embedding.word_embeddings.weight")
		lnPair("decoder.final_layernorm", "transformer.encoder.final_layernorm")
		add("output_layer.weight", copyAs, "transformer.output_layer.weight")
	case m.Family == Internlm2:
		add("embedding.word_embeddings.weight", copyAs, "model.tok_embeddings.weight")
		lnPair("decoder.final_layernorm", "model.norm")
		if c.UntieEmbeddingsAndOutputWeights {
			add("output_layer.weight", copyAs, "output.weight")
		}
	}
	if c.UntieEmbeddingsAndOutputWeights && !llamaLike && m.Family != Internlm2 && m.Family != ChatGLM {
		add("output_layer.weight", copyAs, "lm_head.weight")
	}
	return r, nil
}

func suffix(names []string, s string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = n + s
	}
	return out
}

// ignoredHF are Hugging Face keys that are buffers, not weights (GPT-2's causal masks,
// RoPE caches).
func ignoredHF(name string) bool {
	return strings.HasSuffix(name, ".attn.bias") || strings.HasSuffix(name, ".attn.masked_bias") ||
		strings.HasSuffix(name, "rotary_emb.inv_freq") || name == "transformer.rotary_pos_emb.inv_freq" // ChatGLM's
}

// toMegatron assembles one Megatron tensor (row-major values) from its Hugging Face sources.
// src[i] holds the values of rule.hf[i] and shapes[i] its shape.
func toMegatron(c *layers.Config, r rule, src [][]float32, shapes [][]int) ([]float32, error) {
	switch r.kind {
	case copyAs:
		return src[0], nil
	case transpose:
		if len(shapes[0]) != 2 {
			return nil, fmt.Errorf("%s: want a matrix to transpose, have shape %v", r.hf[0], shapes[0])
		}
		return transposed(src[0], shapes[0][0], shapes[0][1]), nil
	case gateUp:
		if !tensor.SameShape(shapes[0], shapes[1]) {
			return nil, fmt.Errorf("%s %v and %s %v must have the same shape", r.hf[0], shapes[0], r.hf[1], shapes[1])
		}
		return append(append([]float32(nil), src[0]...), src[1]...), nil
	case qkvSplit:
		return groupQKV(c, src[0], src[1], src[2])
	case qkvConcat, qkvConcatT:
		v := src[0]
		if r.kind == qkvConcatT {
			v = transposed(v, shapes[0][0], shapes[0][1])
		}
		hn := c.KVChannels
		q := c.NumAttentionHeads * hn
		kv := c.NumQueryGroups * hn
		cols := len(v) / (q + 2*kv)
		return groupQKV(c, v[:q*cols], v[q*cols:(q+kv)*cols], v[(q+kv)*cols:])
	}
	return nil, fmt.Errorf("unknown mapping kind %d", r.kind)
}

func transposed(v []float32, rows, cols int) []float32 {
	out := make([]float32, len(v))
	for i := 0; i < rows; i++ {
		for j := 0; j < cols; j++ {
			out[j*rows+i] = v[i*cols+j]
		}
	}
	return out
}

// groupQKV interleaves separate q [np·hn, cols], k and v [ng·hn, cols] into Megatron's
// linear_qkv layout [ng, (np/ng)·hn q | hn k | hn v, cols]: query head h belongs to group
// h / (np/ng), the contiguous grouping of Hugging Face's repeat_kv.
func groupQKV(c *layers.Config, q, k, v []float32) ([]float32, error) {
	hn, ng := c.KVChannels, c.NumQueryGroups
	r := c.NumAttentionHeads / ng
	cols := len(k) / (ng * hn)
	if len(q) != c.NumAttentionHeads*hn*cols || len(v) != len(k) || cols == 0 {
		return nil, fmt.Errorf("q/k/v sizes %d/%d/%d do not fit %d heads, %d groups of %d channels", len(q), len(k), len(v), c.NumAttentionHeads, ng, hn)
	}
	out := make([]float32, 0, len(q)+2*len(k))
	blk := hn * cols
	for g := 0; g < ng; g++ {
		out = append(out, q[g*r*blk:(g+1)*r*blk]...)
		out = append(out, k[g*blk:(g+1)*blk]...)
		out = append(out, v[g*blk:(g+1)*blk]...)
	}
	return out, nil
}

// toHF is the inverse of toMegatron: it splits one Megatron tensor back into the Hugging
// Face tensors of the rule, with shapes hfShapes.
func toHF(c *layers.Config, r rule, v []float32, hfShapes [][]int) ([][]float32, error) {
	switch r.kind {
	case copyAs:
		return [][]float32{v}, nil
	case transpose:
		s := hfShapes[0] // HF [in, out]; ours [out, in]
		return [][]float32{transposed(v, s[1], s[0])}, nil
	case gateUp:
		h := len(v) / 2
		return [][]float32{v[:h], v[h:]}, nil
	case qkvSplit:
		q, k, vv := ungroupQKV(c, v)
		return [][]float32{q, k, vv}, nil
	case qkvConcat, qkvConcatT:
		q, k, vv := ungroupQKV(c, v)
		out := append(append(append(make([]float32, 0, len(v)), q...), k...), vv...)
		if r.kind == qkvConcatT {
			s := hfShapes[0]
			out = transposed(out, s[1], s[0])
		}
		return [][]float32{out}, nil
	}
	return nil, fmt.Errorf("unknown mapping kind %d", r.kind)
}

// ungroupQKV is the inverse of groupQKV.
func ungroupQKV(c *layers.Config, fused []float32) (q, k, v []float32) {
	hn, ng := c.KVChannels, c.NumQueryGroups
	r := c.NumAttentionHeads / ng
	cols := len(fused) / ((c.NumAttentionHeads + 2*ng) * hn)
	blk := hn * cols
	for g := 0; g < ng; g++ {
		base := g * (r + 2) * blk
		q = append(q, fused[base:base+r*blk]...)
		k = append(k, fused[base+r*blk:base+(r+1)*blk]...)
		v = append(v, fused[base+(r+1)*blk:base+(r+2)*blk]...)
	}
	return q, k, v
}
