package main

import (
	"fmt"

	"github.com/gomegatron/gomegatron/ckpt/megatron"
	"github.com/gomegatron/gomegatron/ckpt/torchpickle"
	"github.com/gomegatron/gomegatron/tensor"
)

// paiArgsFixer completes the args of checkpoints written by Pai's legacy convertor, whose
// types.SimpleNamespace holds only orig_vocab_size, hidden_size, num_layers,
// num_attention_heads, the parallel sizes, params_dtype and padded_vocab_size. When
// --model_name names a Llama-family model (Pai's convertor handles only those), the Llama
// architecture is assumed — RMSNorm, SwiGLU, RoPE, untied output, no biases — and the FFN
// width and the query groups are read from the first layer's shapes. Checkpoints with
// full Megatron args (ffn_hidden_size present) are left alone.
func paiArgsFixer(modelName string) megatron.ArgsFixer {
	return func(ns *torchpickle.Namespace, ts map[string]*tensor.Tensor, tp, pp int) error {
		if v, ok := ns.Get("ffn_hidden_size"); ok && v != nil {
			return nil
		}
		fam, _ := familyOfModelName(modelName)
		if fam != "llama" && fam != "mistral" && fam != "qwen2" {
			return fmt.Errorf("args lack ffn_hidden_size and the architecture (a Pai-converted checkpoint?); pass --model_name with the Llama model it holds (llama2-7b, …) to assume the Llama architecture")
		}
		setDefault := func(k string, v any) {
			if old, ok := ns.Get(k); !ok || old == nil {
				ns.Set(k, v)
			}
		}
		setDefault("normalization", "RMSNorm")
		setDefault("swiglu", true)
		setDefault("position_embedding_type", "rope")
		setDefault("untie_embeddings_and_output_weights", true)
		setDefault("add_bias_linear", false)
		hidden, _ := torchpickle.AsInt64(get(ns, "hidden_size"))
		heads, _ := torchpickle.AsInt64(get(ns, "num_attention_heads"))
		fc1, ok1 := ts["decoder.layers.0.mlp.linear_fc1.weight"]
		qkv, ok2 := ts["decoder.layers.0.self_attention.linear_qkv.weight"]
		if !ok1 || !ok2 || hidden <= 0 || heads <= 0 || hidden%heads != 0 {
			return fmt.Errorf("cannot infer the FFN width and query groups: args hidden_size %d, num_attention_heads %d, first-layer tensors present: %v/%v", hidden, heads, ok1, ok2)
		}
		ns.Set("ffn_hidden_size", fc1.Dim(0)*tp/2)
		hn := int(hidden / heads)
		if rows := qkv.Dim(0) * tp; rows%hn == 0 {
			groups := (rows/hn - int(heads)) / 2
			if groups > 0 && groups != int(heads) {
				setDefault("group_query_attention", true)
				setDefault("num_query_groups", groups)
			}
		}
		if modelName != "" {
			setDefault("hf_model_type", fam)
		}
		return nil
	}
}

func get(ns *torchpickle.Namespace, k string) any {
	v, _ := ns.Get(k)
	return v
}
